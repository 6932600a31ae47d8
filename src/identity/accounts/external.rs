//! Which account a provider sign-in belongs to: the user already linked to that provider
//! identity; else an existing user with the same email, only when the provider says the email
//! is verified and the account's own address was verified too (anything else would let a
//! provider account take over ours, or hand someone's unverified sign-up with its password to
//! the address's real owner); else a new user, when sign-up is open and the email's domain is
//! allowed (with a domain allow-list, only for an address the provider verified).

use uuid::Uuid;

use super::AccountError;
use crate::clock::Timestamp;
use crate::identity::{Email, User};
use crate::store::StoreError;
use crate::store::linked::LinkStore;
use crate::store::users::{NewUser, UserStore};

/// What a provider says about the user, after its answer was verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalUser {
    /// Subject at the provider.
    pub subject: String,
    /// Email, if given.
    pub email: Option<String>,
    /// Whether the provider asserts the email is verified.
    pub email_verified: bool,
    /// Display name.
    pub name: Option<String>,
    /// Values of the roles claim, when one is configured.
    pub roles: Option<Vec<String>>,
    /// Picture (OIDC `picture`, GitHub avatar, Steam avatar), kept when it is an https URL.
    pub avatar_url: Option<String>,
}

/// Who may sign up through a provider.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SignupRules<'a> {
    /// `auth.signup`.
    pub open: bool,
    /// `auth.allowed_email_domains` (empty: any).
    pub domains: &'a [String],
    /// The provider's `allowed_email_domains` (empty: any).
    pub provider_domains: &'a [String],
}

/// Finds or creates the user for a provider sign-in.
///
/// # Errors
/// See [`AccountError`].
pub(crate) async fn sign_in(
    users: &UserStore,
    links: &LinkStore,
    provider: &str,
    external: ExternalUser,
    rules: SignupRules<'_>,
    now: Timestamp,
) -> Result<User, AccountError> {
    if let Some(user_id) = links.user_of(provider, &external.subject).await? {
        return enabled(users, user_id).await;
    }
    let email = external.email.as_deref().and_then(|email| Email::parse(email).ok());
    let existing = match (&email, external.email_verified) {
        (Some(email), true) => users.find_by_email(email).await?.map(|(user, _)| user),
        _ => None,
    };
    if let (Some(existing), Some(email)) = (existing, &email) {
        if !domain_allowed(&rules, email.domain()) {
            return Err(AccountError::DomainNotAllowed);
        }
        if existing.email_verified_at.is_none() {
            return Err(AccountError::AccountUnverified);
        }
        let user_id = existing.id;
        links.link(provider, &external.subject, user_id, Some(email.as_str()), now).await?;
        return enabled(users, user_id).await;
    }
    if !rules.open {
        return Err(AccountError::SignupClosed);
    }
    let email = email.ok_or(AccountError::NoEmail)?;
    if !domain_allowed(&rules, email.domain()) {
        return Err(AccountError::DomainNotAllowed);
    }
    let restricted = !rules.domains.is_empty() || !rules.provider_domains.is_empty();
    if restricted && !external.email_verified {
        return Err(AccountError::EmailUnverified);
    }
    let name = external
        .name
        .as_deref()
        .and_then(|name| crate::identity::profile::clean_name(name).ok().flatten());
    let new = NewUser { email: email.clone(), name, password_hash: None, roles: Vec::new() };
    let user = users.create(new, now).await.map_err(|error| match error {
        // An unverified email that an account already uses: never merged.
        StoreError::Conflict(_) => AccountError::EmailTaken,
        other => other.into(),
    })?;
    if external.email_verified {
        users.mark_email_verified(user.id, now).await?;
    }
    let avatar = external
        .avatar_url
        .as_deref()
        .and_then(|url| crate::identity::profile::clean_avatar_url(url).ok().flatten());
    if let Some(avatar_url) = avatar {
        users.update_profile(&User { avatar_url: Some(avatar_url), ..user.clone() }, now).await?;
    }
    if let Err(error) =
        links.link(provider, &external.subject, user.id, Some(email.as_str()), now).await
    {
        // A concurrent sign-in linked this identity first: drop the account made here.
        users.delete(user.id).await?;
        return Err(match error {
            StoreError::Conflict(_) => AccountError::LinkedElsewhere,
            other => other.into(),
        });
    }
    enabled(users, user.id).await
}

/// Links a provider identity to a signed-in user.
///
/// # Errors
/// [`AccountError::LinkedElsewhere`] or [`AccountError::AlreadyLinked`], or the store fails.
pub(crate) async fn link(
    links: &LinkStore,
    user_id: Uuid,
    provider: &str,
    external: ExternalUser,
    now: Timestamp,
) -> Result<(), AccountError> {
    match links.user_of(provider, &external.subject).await? {
        Some(owner) if owner == user_id => return Ok(()),
        Some(_) => return Err(AccountError::LinkedElsewhere),
        None => {}
    }
    links.link(provider, &external.subject, user_id, external.email.as_deref(), now).await.map_err(
        |error| match error {
            StoreError::Conflict(_) => AccountError::AlreadyLinked,
            other => other.into(),
        },
    )
}

fn domain_allowed(rules: &SignupRules<'_>, domain: &str) -> bool {
    crate::model::email::domain_allowed(rules.domains, domain)
        && crate::model::email::domain_allowed(rules.provider_domains, domain)
}

async fn enabled(users: &UserStore, user_id: Uuid) -> Result<User, AccountError> {
    users.find_enabled(user_id).await?.ok_or(AccountError::Disabled)
}
