//! Account flows that the HTTP API and the admin CLI share: making an account, disabling and
//! enabling it, setting its roles, ending every sign-in, a password reset and proof of the
//! mailbox. One method per flow, so that the two callers cannot drift apart (the CLI once ended
//! a disabled user's token sign-ins without evicting them from the cache, as the server did).
//!
//! Who may call a flow (CSRF, sign-up rules, single-use links) is the caller's business; what a
//! flow changes, and in which order, is decided here.

mod external;
mod profile;

use std::sync::Arc;

use uuid::Uuid;

pub(crate) use self::external::{ExternalUser, SignupRules, link, sign_in};
pub(crate) use self::profile::ProfileChanges;
use super::api_key::ApiKeyService;
use super::cache::IdentityCache;
use super::magic_link::PendingSignup;
use super::password_policy::{self, WeakPassword};
use super::profile::{InvalidProfile, clean_name};
use super::session::SessionService;
use super::{Email, User, validate_role};
use crate::clock::Clock;
use crate::crypto::password::{PasswordHashError, PasswordHasherPool};
use crate::model::InvalidRole;
use crate::model::email::EmailError;
use crate::store::StoreError;
use crate::store::tokens::FamilyStore;
use crate::store::users::{NewUser, UserStore};

/// Why an account flow did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Unknown identity and sign-up is closed.
    #[error("There is no account for this sign-in, and sign-up is closed")]
    SignupClosed,
    /// The email's domain is not allowed.
    #[error("Accounts with this email domain are not allowed")]
    DomainNotAllowed,
    /// The provider gave no usable email for a new account.
    #[error("The provider did not share an email address")]
    NoEmail,
    /// An account already uses the (unverified) email: it is never merged on the provider's
    /// word; its owner can sign in and link the provider.
    #[error("An account with this email already exists: sign in to it, then link this provider")]
    EmailTaken,
    /// An account uses the email but never verified it: whoever made it may not own the
    /// address, so it is not joined on the provider's word.
    #[error(
        "An account with this email exists but its address was never verified: sign in to it \
         (or reset its password), then link this provider"
    )]
    AccountUnverified,
    /// A domain allow-list is set and the provider did not verify the address.
    #[error("The provider did not verify this email address")]
    EmailUnverified,
    /// The provider identity belongs to another user (linking).
    #[error("This sign-in is already linked to another account")]
    LinkedElsewhere,
    /// The user already has another identity at this provider (linking).
    #[error("Your account is already linked to this provider")]
    AlreadyLinked,
    /// The account is disabled.
    #[error("This account is disabled")]
    Disabled,
    /// A proof of the mailbox names no account, and none may be made for it.
    #[error("Sign-up is closed")]
    MailboxSignupClosed,
    /// A new account's email is already taken.
    #[error("An account with this email already exists")]
    Exists,
    /// No account has this id or email.
    #[error("There is no such account")]
    NotFound,
    /// The email address is not usable.
    #[error("email: {0}")]
    InvalidEmail(#[from] EmailError),
    /// The display name is not usable (the message names the rule).
    #[error("{0}")]
    InvalidName(InvalidProfile),
    /// A profile field is not usable (the message names the field).
    #[error("{0}")]
    InvalidProfile(#[from] InvalidProfile),
    /// Another user has the username.
    #[error("This username is taken")]
    UsernameTaken,
    /// A role name is not usable (the message names the role).
    #[error("{0}")]
    InvalidRole(InvalidRole),
    /// The password breaks a rule.
    #[error("password: {0}")]
    WeakPassword(#[from] WeakPassword),
    /// argon2 failed.
    #[error("password hashing: {0}")]
    Hashing(#[from] PasswordHashError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An account to make.
#[derive(Debug)]
pub struct NewAccount {
    /// Its email address.
    pub email: Email,
    /// Display name, as typed (cleaned here).
    pub name: Option<String>,
    /// A password (the rules apply), or none for an account that signs in otherwise.
    pub password: Option<String>,
    /// Global roles.
    pub roles: Vec<String>,
}

/// How the owner of a mailbox proved it, for [`Accounts::by_mailbox`].
#[derive(Debug)]
pub struct MailboxProof {
    /// Whether an account may be made for the address when it has none.
    pub may_sign_up: bool,
    /// The password and name of a pending sign-up that this proof finishes.
    pub pending: Option<PendingSignup>,
    /// What the proof was (`magic link`, `invite`), for the log.
    pub label: &'static str,
}

/// How many sign-ins a flow ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ended {
    /// Browser sessions.
    pub sessions: usize,
    /// Token sign-ins (refresh-token families).
    pub token_families: usize,
}

impl Ended {
    /// Sessions and token sign-ins together.
    pub fn total(self) -> usize {
        self.sessions + self.token_families
    }
}

/// The account flows, over the user store and the credential services.
#[derive(Debug, Clone)]
pub struct Accounts {
    users: UserStore,
    sessions: SessionService,
    api_keys: ApiKeyService,
    families: FamilyStore,
    cache: IdentityCache,
    hasher: PasswordHasherPool,
    clock: Arc<dyn Clock>,
}

/// What [`Accounts::new`] works with.
#[derive(Debug)]
pub struct AccountParts {
    /// Users.
    pub users: UserStore,
    /// Browser sessions.
    pub sessions: SessionService,
    /// API keys.
    pub api_keys: ApiKeyService,
    /// Refresh-token families.
    pub families: FamilyStore,
    /// The identity cache, evicted when a flow ends sign-ins or changes what they carry.
    pub cache: IdentityCache,
    /// Password hashing off the async workers.
    pub hasher: PasswordHasherPool,
    /// Time.
    pub clock: Arc<dyn Clock>,
}

impl Accounts {
    /// The flows over `parts`.
    pub fn new(parts: AccountParts) -> Self {
        let AccountParts { users, sessions, api_keys, families, cache, hasher, clock } = parts;
        Self { users, sessions, api_keys, families, cache, hasher, clock }
    }

    /// The user with `email`, enabled or not.
    ///
    /// # Errors
    /// [`AccountError::NotFound`], or the store fails.
    pub async fn find_by_email(&self, email: &Email) -> Result<User, AccountError> {
        let found = self.users.find_by_email(email).await?;
        found.map(|(user, _)| user).ok_or(AccountError::NotFound)
    }

    /// Checks what a new account would be made of before anything is hashed or stored: a
    /// usable name and a password that passes the rules. Returns the cleaned name.
    ///
    /// # Errors
    /// [`AccountError::InvalidName`], [`AccountError::WeakPassword`].
    pub fn check_new(
        email: &Email,
        name: Option<&str>,
        password: Option<&str>,
    ) -> Result<Option<String>, AccountError> {
        let name = match name {
            Some(name) => clean_name(name).map_err(AccountError::InvalidName)?,
            None => None,
        };
        if let Some(password) = password {
            password_policy::check(password, email, name.as_deref())?;
        }
        Ok(name)
    }

    /// Checks a new password for `user` against the rules (before a reset link is used up).
    ///
    /// # Errors
    /// [`AccountError::WeakPassword`].
    pub fn check_password(user: &User, password: &str) -> Result<(), AccountError> {
        Ok(password_policy::check(password, &user.email, user.name.as_deref())?)
    }

    /// The PHC hash of a password, off the async workers.
    ///
    /// # Errors
    /// argon2 fails.
    pub async fn hash_password(&self, password: String) -> Result<String, AccountError> {
        Ok(self.hasher.hash(password).await?)
    }

    /// Makes an account. The password is hashed before the address is looked up, so that a
    /// taken address answers after the same work as a free one.
    ///
    /// # Errors
    /// [`AccountError::Exists`], a bad name, role or password, or the store fails.
    pub async fn create(&self, new: NewAccount) -> Result<User, AccountError> {
        new.roles
            .iter()
            .try_for_each(|role| validate_role(role).map_err(AccountError::InvalidRole))?;
        let name = Self::check_new(&new.email, new.name.as_deref(), new.password.as_deref())?;
        let password_hash = match new.password {
            Some(password) => Some(self.hash_password(password).await?),
            None => None,
        };
        if self.users.find_by_email(&new.email).await?.is_some() {
            return Err(AccountError::Exists);
        }
        let new = NewUser { email: new.email, name, password_hash, roles: new.roles };
        self.users.create(new, self.clock.now()).await.map_err(|error| match error {
            StoreError::Conflict(_) => AccountError::Exists,
            other => other.into(),
        })
    }

    /// Removes an account made a moment ago whose first sign-in could not be stored, so that a
    /// retry can make it again.
    ///
    /// # Errors
    /// The store fails.
    pub async fn undo_create(&self, user_id: Uuid) -> Result<(), AccountError> {
        Ok(self.users.delete(user_id).await?)
    }

    /// Replaces the user's global roles; every replica drops the user's cached identities and
    /// sees the new roles on the next request.
    ///
    /// # Errors
    /// A bad role, [`AccountError::NotFound`], or the store fails.
    pub async fn set_roles(&self, user_id: Uuid, roles: &[String]) -> Result<(), AccountError> {
        roles.iter().try_for_each(|role| validate_role(role).map_err(AccountError::InvalidRole))?;
        let found = self.users.set_roles(user_id, roles, self.clock.now()).await;
        // After the store write, whatever part of it was done.
        self.cache.evict_user(user_id);
        if found? { Ok(()) } else { Err(AccountError::NotFound) }
    }

    /// Disables the account and ends every sign-in it has.
    ///
    /// # Errors
    /// [`AccountError::NotFound`], or the store fails.
    pub async fn disable(&self, user_id: Uuid) -> Result<Ended, AccountError> {
        if !self.users.set_disabled(user_id, true, self.clock.now()).await? {
            return Err(AccountError::NotFound);
        }
        Ok(self.end_all_sign_ins(user_id).await?)
    }

    /// Enables a disabled account.
    ///
    /// # Errors
    /// [`AccountError::NotFound`], or the store fails.
    pub async fn enable(&self, user_id: Uuid) -> Result<(), AccountError> {
        if self.users.set_disabled(user_id, false, self.clock.now()).await? {
            Ok(())
        } else {
            Err(AccountError::NotFound)
        }
    }

    /// Ends every sign-in of the user: browser sessions and token families, on every replica
    /// (sign out everywhere, disable, password reset).
    ///
    /// # Errors
    /// The store fails.
    pub async fn end_all_sign_ins(&self, user_id: Uuid) -> Result<Ended, StoreError> {
        let sessions = self.sessions.end_all(user_id).await?;
        let revoked = self.families.revoke_user(user_id, self.clock.now()).await;
        // Evicted after the store write, whatever part of it was done: a load that read the
        // family before it was revoked finds the mark and is not cached.
        self.cache.evict_user(user_id);
        let revoked = revoked?;
        for family in &revoked {
            self.cache.evict_session(*family);
        }
        Ok(Ended { sessions, token_families: revoked.len() })
    }

    /// Sets a new password after a reset: the address is proven by the reset link, and every
    /// sign-in made with the old password ends. Check the rules with
    /// [`Accounts::check_password`] before using up the link.
    ///
    /// # Errors
    /// The password breaks a rule, argon2 or the store fails.
    pub async fn reset_password(&self, user: &User, password: String) -> Result<(), AccountError> {
        Self::check_password(user, &password)?;
        let hash = self.hash_password(password).await?;
        let now = self.clock.now();
        self.users.set_password(user.id, &hash, now).await?;
        self.users.mark_email_verified(user.id, now).await?;
        self.end_all_sign_ins(user.id).await?;
        Ok(())
    }

    /// Marks the user's email verified on proof of the mailbox (`proof`: a magic link or code,
    /// an invite). An account not verified until now was made, or used, by someone who never
    /// proved the address (an attacker can sign up someone else's address with a password and
    /// wait): its password, sessions, token families and API keys end here, so the mailbox's
    /// owner has the account alone. Said in the log when anything was removed.
    ///
    /// # Errors
    /// The store fails.
    pub async fn verify_by_mailbox(
        &self,
        user: &User,
        proof: &'static str,
    ) -> Result<(), StoreError> {
        if user.email_verified_at.is_some() {
            return Ok(());
        }
        let now = self.clock.now();
        let password = self.users.clear_password(user.id, now).await?;
        let sign_ins = self.end_all_sign_ins(user.id).await?.total();
        let keys = self.api_keys.revoke_all(user.id).await?;
        self.users.mark_email_verified(user.id, now).await?;
        self.cache.evict_user(user.id);
        if password || sign_ins > 0 || keys > 0 {
            tracing::warn!(
                user_id = %user.id,
                proof,
                password_removed = password,
                sign_ins_ended = sign_ins,
                keys_revoked = keys,
                "an unverified account's address was proven: what was set up before the proof \
                 was removed"
            );
        }
        Ok(())
    }

    /// The account behind a proof of the mailbox `email` (a magic link or code, an invite),
    /// made on first use when `proof.may_sign_up` (with the password and name of a pending
    /// sign-up); the address counts as verified from now on, as its owner read the message.
    ///
    /// # Errors
    /// [`AccountError::MailboxSignupClosed`], [`AccountError::Disabled`], or the store fails.
    pub async fn by_mailbox(
        &self,
        email: &Email,
        proof: MailboxProof,
    ) -> Result<User, AccountError> {
        let now = self.clock.now();
        let user = match self.users.find_by_email(email).await? {
            Some((user, _)) => user,
            None if proof.may_sign_up => {
                let new = NewUser {
                    email: email.clone(),
                    name: proof.pending.as_ref().and_then(|pending| pending.name.clone()),
                    password_hash: proof.pending.map(|pending| pending.password_hash),
                    roles: Vec::new(),
                };
                match self.users.create(new, now).await {
                    Ok(user) => {
                        // Made by this proof: verified as it stands, password included.
                        self.users.mark_email_verified(user.id, now).await?;
                        User { email_verified_at: Some(now), ..user }
                    }
                    // Created meanwhile by another request of the same person.
                    Err(StoreError::Conflict(_)) => {
                        self.users.find_by_email(email).await?.ok_or(AccountError::NotFound)?.0
                    }
                    Err(error) => return Err(error.into()),
                }
            }
            None => return Err(AccountError::MailboxSignupClosed),
        };
        if user.disabled_at.is_some() {
            return Err(AccountError::Disabled);
        }
        self.verify_by_mailbox(&user, proof.label).await?;
        Ok(User { email_verified_at: user.email_verified_at.or(Some(now)), ..user })
    }
}

#[cfg(test)]
mod tests;
