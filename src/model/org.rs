//! Organizations: what one is, the role names a deployment uses, and who may change whose
//! membership. Pure rules; storage is `store/orgs.rs` and the API `auth/orgs/`.

use serde::Serialize;
use uuid::Uuid;

use super::{InvalidRole, validate_role};
use crate::clock::Timestamp;

/// The role whose holders may do everything, including naming other owners.
pub(crate) const OWNER: &str = "owner";
/// The role whose holders manage members other than owners.
pub(crate) const ADMIN: &str = "admin";
/// The role invites get when they name none (if the deployment has it).
pub(crate) const MEMBER: &str = "member";

/// Most organizations one user belongs to: every cached identity carries its memberships, so
/// they stay few.
pub(crate) const MAX_MEMBERSHIPS: usize = 100;

/// Longest organization name, in characters.
const MAX_NAME: usize = 100;

/// An organization, with the role of the user it was looked up for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Membership {
    /// Organization id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Unique URL-safe handle.
    pub slug: String,
    /// The user's role in it.
    pub role: String,
    /// When the user joined.
    pub joined_at: Timestamp,
}

/// A member as listed (`GET /auth/orgs/{id}/members`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Member {
    /// User id.
    pub user_id: Uuid,
    /// Primary email.
    pub email: String,
    /// Display name.
    pub name: Option<String>,
    /// Role in the organization.
    pub role: String,
    /// When they joined.
    pub joined_at: Timestamp,
}

/// The organization role names of a deployment (`[orgs] roles`), `owner` and `admin` always
/// among them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgRoles(Vec<String>);

impl OrgRoles {
    /// The configured names plus the built-in `owner` and `admin`.
    ///
    /// # Errors
    /// A name that is not a valid role name.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, InvalidRole> {
        let mut roles = vec![OWNER.to_owned(), ADMIN.to_owned()];
        for name in names {
            validate_role(name)?;
            if !roles.iter().any(|known| known == name) {
                roles.push(name.to_owned());
            }
        }
        Ok(Self(roles))
    }

    /// Whether `role` is one of them.
    pub fn contains(&self, role: &str) -> bool {
        self.0.iter().any(|known| known == role)
    }

    /// The role an invite gets when it names none: `member` when configured.
    pub fn default_invite_role(&self) -> Option<&str> {
        self.contains(MEMBER).then_some(MEMBER)
    }

    /// The names, built-ins first.
    pub fn names(&self) -> &[String] {
        &self.0
    }
}

impl Default for OrgRoles {
    fn default() -> Self {
        Self(vec![OWNER.into(), ADMIN.into(), MEMBER.into()])
    }
}

/// A change to someone's membership, as asked by a member of the organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change<'a> {
    /// Give the member (currently `from`) the role `to`.
    SetRole {
        /// The member's current role.
        from: &'a str,
        /// The new role.
        to: &'a str,
    },
    /// Remove the member, whose role is `role`.
    Remove {
        /// The member's current role.
        role: &'a str,
    },
    /// Invite someone with `role`.
    Invite {
        /// The role the invite grants.
        role: &'a str,
    },
}

/// Whether a member with role `actor` may make `change` (`to_self`: to their own membership).
///
/// Owners may do anything. Admins manage everyone but owners, and cannot make owners. Anyone
/// may leave. Whether the organization keeps an owner is checked by the store, atomically.
pub(crate) fn may(actor: &str, change: Change<'_>, to_self: bool) -> bool {
    if actor == OWNER {
        return true;
    }
    match change {
        Change::Remove { .. } if to_self => true,
        Change::SetRole { from, to } => actor == ADMIN && from != OWNER && to != OWNER,
        Change::Remove { role } => actor == ADMIN && role != OWNER,
        Change::Invite { role } => actor == ADMIN && role != OWNER,
    }
}

/// Whether a member with role `role` may see the member list, invite and manage.
pub(crate) fn manages(role: &str) -> bool {
    role == OWNER || role == ADMIN
}

/// An organization's name or slug that breaks its rule; the message names the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidOrgField {
    /// The name is empty or too long.
    #[error("name: must be 1-{max} characters", max = MAX_NAME)]
    NameLength,
    /// The name holds control characters.
    #[error("name: must not contain control characters")]
    NameControl,
    /// The slug breaks the slug rule.
    #[error("slug: must be 2-48 of a-z, 0-9 and -, not starting or ending with -")]
    Slug,
}

/// Trims an organization name and checks it: 1–100 characters, no control characters.
///
/// # Errors
/// [`InvalidOrgField::NameLength`], [`InvalidOrgField::NameControl`].
pub(crate) fn clean_name(name: &str) -> Result<String, InvalidOrgField> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(InvalidOrgField::NameLength);
    }
    if name.chars().any(char::is_control) {
        return Err(InvalidOrgField::NameControl);
    }
    Ok(name.to_owned())
}

/// Checks a slug: 2–48 of `[a-z0-9-]`, not starting or ending with `-`, and not a UUID (so a
/// slug can never be mistaken for an organization id in a path).
///
/// # Errors
/// [`InvalidOrgField::Slug`].
pub(crate) fn check_slug(slug: &str) -> Result<(), InvalidOrgField> {
    let valid = (2..=48).contains(&slug.len())
        && slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-')
        && Uuid::parse_str(slug).is_err();
    if valid { Ok(()) } else { Err(InvalidOrgField::Slug) }
}

/// A slug made from a name: ASCII letters and digits kept (lower case), every other run of
/// characters one `-`. `None` when too little is left (a name in another script), so the
/// caller picks a random one.
pub(crate) fn slugify(name: &str) -> Option<String> {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
        if slug.len() >= 40 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-').to_owned();
    check_slug(&slug).is_ok().then_some(slug)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_and_admin_are_always_roles() {
        let roles = OrgRoles::new(["viewer", "admin"]).unwrap();
        assert_eq!(roles.names(), ["owner", "admin", "viewer"]);
        assert_eq!(roles.default_invite_role(), None);
        assert_eq!(OrgRoles::default().default_invite_role(), Some("member"));
        assert!(OrgRoles::new(["Bad Role"]).is_err());
    }

    #[test]
    fn admins_manage_everyone_but_owners() {
        let set = |from, to| Change::SetRole { from, to };
        assert!(may("owner", set("member", "owner"), false));
        assert!(may("owner", Change::Remove { role: "owner" }, false));
        assert!(may("admin", set("member", "admin"), false));
        assert!(!may("admin", set("member", "owner"), false));
        assert!(!may("admin", set("owner", "member"), false));
        assert!(!may("admin", Change::Remove { role: "owner" }, false));
        assert!(may("admin", Change::Remove { role: "member" }, false));
        assert!(!may("admin", Change::Invite { role: "owner" }, false));
        assert!(may("admin", Change::Invite { role: "member" }, false));
        assert!(!may("member", Change::Invite { role: "member" }, false));
        assert!(!may("member", set("member", "admin"), true), "no self-promotion");
        assert!(!may("member", Change::Remove { role: "member" }, false));
        assert!(may("member", Change::Remove { role: "member" }, true), "anyone may leave");
    }

    #[test]
    fn slugs_are_url_safe_and_never_ids() {
        assert_eq!(slugify("Acme, Inc.").as_deref(), Some("acme-inc"));
        assert_eq!(slugify("  Ops -- Team 7 ").as_deref(), Some("ops-team-7"));
        assert_eq!(slugify("日本"), None);
        assert!(check_slug("acme").is_ok());
        assert!(check_slug("-acme").is_err());
        assert!(check_slug("Acme").is_err());
        assert!(check_slug("a").is_err());
        assert!(check_slug(&Uuid::now_v7().to_string()).is_err());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(clean_name("  Acme ").unwrap(), "Acme");
        assert!(clean_name("   ").is_err());
        assert!(clean_name("a\u{7}b").is_err());
        assert!(clean_name(&"x".repeat(101)).is_err());
    }
}
