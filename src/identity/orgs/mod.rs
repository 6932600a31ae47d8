//! Organizations as the API and the CLI change them: making one, switching, members' roles,
//! removal, and invites (`invites.rs`). Who may do what is `model::org::may`; this module
//! applies it against the stored memberships and evicts the member's cached identities after
//! every change, so the gateway sees it on the next request on every replica.

mod invites;

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

pub(crate) use self::invites::SentInvite;
use super::accounts::{AccountError, Accounts};
use super::session::SessionService;
use crate::clock::{Clock, Timestamp};
use crate::crypto;
use crate::model::email::EmailError;
use crate::model::org::{self, Change, InvalidOrgField, Member, Membership, OrgRoles};
use crate::store::StoreError;
use crate::store::invites::InviteStore;
use crate::store::orgs::{OrgStore, Outcome};
use crate::store::sql::Database;

/// Why an organization flow did not happen.
#[derive(Debug, thiserror::Error)]
pub enum OrgError {
    /// The organization does not exist, or the actor is not in it (so non-members learn
    /// nothing about it).
    #[error("No such organization")]
    NoSuchOrganization,
    /// The member does not exist (or was removed meanwhile).
    #[error("No such member")]
    NoSuchMember,
    /// Only owners and admins list members and manage invites.
    #[error("Only owners and admins manage the members and invites")]
    NotManager,
    /// The actor's role does not allow the change.
    #[error("Your role in this organization does not allow this")]
    NotAllowed,
    /// Only owners and admins invite, and only owners make owners.
    #[error("Only owners and admins invite, and only owners make owners")]
    MayNotInvite,
    /// The role is not one of `[orgs] roles` (the list is given).
    #[error("role: must be one of {0}")]
    UnknownRole(String),
    /// The change would leave the organization without an owner.
    #[error("The organization needs an owner: make someone else owner first")]
    LastOwner,
    /// The user is in [`org::MAX_MEMBERSHIPS`] organizations already.
    #[error("An account belongs to at most {} organizations", org::MAX_MEMBERSHIPS)]
    TooMany,
    /// The name or slug breaks a rule (the message names it).
    #[error("{0}")]
    Invalid(#[from] InvalidOrgField),
    /// Another organization has this slug.
    #[error("This slug is taken")]
    SlugTaken,
    /// Every slug tried from the name was taken.
    #[error("No free slug: choose one")]
    NoFreeSlug,
    /// The invited person is a member already.
    #[error("This person is already a member")]
    AlreadyMember,
    /// No pending invite has this id.
    #[error("No such pending invite")]
    NoSuchInvite,
    /// The invite token is unknown, expired or used.
    #[error("This invite is invalid, expired or already used")]
    InviteUsedUp,
    /// Whoever sent the invite may no longer make it.
    #[error("This invite was withdrawn: whoever sent it may no longer invite")]
    InviteWithdrawn,
    /// The invited address is not usable.
    #[error("email: {0}")]
    Email(#[from] EmailError),
    /// The invited account cannot be had.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The organization flows.
#[derive(Debug, Clone)]
pub struct Organizations {
    orgs: OrgStore,
    invites: InviteStore,
    sessions: SessionService,
    accounts: Accounts,
    settings: Arc<OrgSettings>,
    clock: Arc<dyn Clock>,
}

/// What the organization flows read from the configuration.
#[derive(Debug)]
pub struct OrgSettings {
    /// `[orgs] roles`.
    pub roles: OrgRoles,
    /// How long an invite works.
    pub invite_ttl: Duration,
    /// `auth.allowed_email_domains` (empty: any): an invite makes an account even when
    /// sign-up is closed, but only at these domains.
    pub allowed_email_domains: Vec<String>,
}

impl Organizations {
    /// The flows over the database, evicting through `sessions`, making invited accounts
    /// through `accounts`.
    pub fn new(
        db: Database,
        sessions: SessionService,
        accounts: Accounts,
        settings: OrgSettings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            orgs: OrgStore::new(db.clone()),
            invites: InviteStore::new(db),
            sessions,
            accounts,
            settings: Arc::new(settings),
            clock,
        }
    }

    /// The role names of `[orgs] roles`.
    pub fn roles(&self) -> &OrgRoles {
        &self.settings.roles
    }

    /// How long an invite works.
    pub fn invite_ttl(&self) -> Duration {
        self.settings.invite_ttl
    }

    /// The user's organizations, the most recently active first.
    ///
    /// # Errors
    /// The store fails.
    pub async fn memberships(&self, user_id: Uuid) -> Result<Vec<Membership>, OrgError> {
        Ok(self.orgs.memberships(user_id).await?)
    }

    /// The user's membership in `org_id`, if any.
    ///
    /// # Errors
    /// The store fails.
    pub async fn membership(
        &self,
        org_id: Uuid,
        user_id: Uuid,
    ) -> Result<Option<Membership>, OrgError> {
        Ok(self.orgs.membership(org_id, user_id).await?)
    }

    /// The user's membership in `org_id`.
    ///
    /// # Errors
    /// [`OrgError::NoSuchOrganization`] for a non-member, or the store fails.
    pub async fn member_of(&self, org_id: Uuid, user_id: Uuid) -> Result<Membership, OrgError> {
        self.membership(org_id, user_id).await?.ok_or(OrgError::NoSuchOrganization)
    }

    /// The user's membership, which must be an owner's or admin's (as the member list and
    /// the invites need).
    ///
    /// # Errors
    /// [`OrgError::NotManager`], [`OrgError::NoSuchOrganization`], or the store fails.
    pub async fn managed_by(&self, org_id: Uuid, user_id: Uuid) -> Result<Membership, OrgError> {
        let membership = self.member_of(org_id, user_id).await?;
        if !org::manages(&membership.role) {
            return Err(OrgError::NotManager);
        }
        Ok(membership)
    }

    /// Makes an organization owned by `owner`, under `slug` or one made from its name.
    ///
    /// # Errors
    /// A bad name or slug, a taken slug, too many memberships, or the store fails.
    pub async fn create(
        &self,
        owner: Uuid,
        name: &str,
        slug: Option<&str>,
    ) -> Result<Membership, OrgError> {
        let name = org::clean_name(name)?;
        self.room_for_one_more(owner).await?;
        let created = match slug {
            Some(slug) => {
                org::check_slug(slug)?;
                self.orgs.create(&name, slug, owner, self.clock.now()).await.map_err(|error| {
                    match error {
                        StoreError::Conflict(_) => OrgError::SlugTaken,
                        other => other.into(),
                    }
                })?
            }
            None => self.create_with_free_slug(&name, owner).await?,
        };
        self.sessions.refresh_user(owner);
        Ok(created)
    }

    /// Creates the organization under a slug made from its name, adding a random suffix while
    /// that slug is taken.
    async fn create_with_free_slug(&self, name: &str, owner: Uuid) -> Result<Membership, OrgError> {
        let base = org::slugify(name);
        for attempt in 0..4 {
            let suffix =
                || crypto::hex(&crypto::sha256(crypto::random_token().as_bytes()))[..6].to_owned();
            let slug = match (&base, attempt) {
                (Some(base), 0) => base.clone(),
                (Some(base), _) => format!("{base}-{}", suffix()),
                (None, _) => format!("org-{}", suffix()),
            };
            match self.orgs.create(name, &slug, owner, self.clock.now()).await {
                Err(StoreError::Conflict(_)) => continue,
                other => return Ok(other?),
            }
        }
        Err(OrgError::NoFreeSlug)
    }

    /// Records that the user acts in `org_id` now (their most recent organization first).
    ///
    /// # Errors
    /// [`OrgError::NoSuchOrganization`] for a non-member, or the store fails.
    pub async fn switch_to(&self, org_id: Uuid, user_id: Uuid) -> Result<(), OrgError> {
        self.member_of(org_id, user_id).await?;
        self.mark_active(org_id, user_id).await
    }

    /// Records that the user acts in `org_id` now; the caller knows they are a member.
    ///
    /// # Errors
    /// The store fails.
    pub async fn mark_active(&self, org_id: Uuid, user_id: Uuid) -> Result<(), OrgError> {
        Ok(self.orgs.mark_active(org_id, user_id, self.clock.now()).await?)
    }

    /// The members, for an owner or admin.
    ///
    /// # Errors
    /// [`OrgError::NotManager`], [`OrgError::NoSuchOrganization`], or the store fails.
    pub async fn members(&self, org_id: Uuid, actor: Uuid) -> Result<Vec<Member>, OrgError> {
        self.managed_by(org_id, actor).await?;
        Ok(self.orgs.members(org_id).await?)
    }

    /// Gives `target` the role `role`, as `actor` may.
    ///
    /// # Errors
    /// An unknown role, a change the actor's role does not allow, the last owner, an unknown
    /// member, or the store fails.
    pub async fn set_role(
        &self,
        org_id: Uuid,
        actor: Uuid,
        target: Uuid,
        role: &str,
    ) -> Result<Member, OrgError> {
        self.known_role(role)?;
        let (acting, current) = self.actor_and_target(org_id, actor, target).await?;
        let change = Change::SetRole { from: &current.role, to: role };
        if !org::may(&acting.role, change, actor == target) {
            return Err(OrgError::NotAllowed);
        }
        let outcome = self.orgs.set_role(org_id, target, role, self.clock.now()).await?;
        self.changed(outcome, target)?;
        let member = self.orgs.members(org_id).await?.into_iter().find(|m| m.user_id == target);
        // Removed by someone else in the meantime.
        member.ok_or(OrgError::NoSuchMember)
    }

    /// Removes `target` from the organization (or `actor` leaves it).
    ///
    /// # Errors
    /// A change the actor's role does not allow, the last owner, an unknown member, or the
    /// store fails.
    pub async fn remove(&self, org_id: Uuid, actor: Uuid, target: Uuid) -> Result<(), OrgError> {
        let (acting, current) = self.actor_and_target(org_id, actor, target).await?;
        let change = Change::Remove { role: &current.role };
        if !org::may(&acting.role, change, actor == target) {
            return Err(OrgError::NotAllowed);
        }
        let outcome = self.orgs.remove(org_id, target, self.clock.now()).await?;
        self.changed(outcome, target)
    }

    /// Forgets invites long expired or used (called periodically).
    ///
    /// # Errors
    /// The store fails.
    pub async fn sweep(&self, now: Timestamp) -> Result<(), StoreError> {
        self.invites.sweep(now).await
    }

    /// Refuses a role that is not one of `[orgs] roles`.
    fn known_role(&self, role: &str) -> Result<(), OrgError> {
        if self.settings.roles.contains(role) {
            Ok(())
        } else {
            Err(OrgError::UnknownRole(self.settings.roles.names().join(", ")))
        }
    }

    /// Refuses when the user already belongs to [`org::MAX_MEMBERSHIPS`] organizations.
    async fn room_for_one_more(&self, user_id: Uuid) -> Result<(), OrgError> {
        if self.orgs.roles_of(user_id).await?.len() >= org::MAX_MEMBERSHIPS {
            return Err(OrgError::TooMany);
        }
        Ok(())
    }

    /// The actor's membership (no such organization for non-members) and the target's (no
    /// such member when there is none).
    async fn actor_and_target(
        &self,
        org_id: Uuid,
        actor: Uuid,
        target: Uuid,
    ) -> Result<(Membership, Membership), OrgError> {
        let acting = self.member_of(org_id, actor).await?;
        let current = self.membership(org_id, target).await?.ok_or(OrgError::NoSuchMember)?;
        Ok((acting, current))
    }

    /// Maps a store outcome, and on success evicts the member's cached identities everywhere
    /// so the change holds from their next request.
    fn changed(&self, outcome: Outcome, user_id: Uuid) -> Result<(), OrgError> {
        match outcome {
            Outcome::Done => {
                self.sessions.refresh_user(user_id);
                Ok(())
            }
            Outcome::NotMember => Err(OrgError::NoSuchMember),
            Outcome::LastOwner => Err(OrgError::LastOwner),
        }
    }
}
