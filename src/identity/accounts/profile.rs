//! Changing the profile fields a user edits: each field given is cleaned by its rule
//! (`identity::profile`), stored, and the user's cached identities are refreshed so the app
//! sees the change on the next request.

use super::{AccountError, Accounts};
use crate::identity::profile::{self, InvalidProfile};
use crate::model::User;
use crate::store::StoreError;

/// The fields to change: `None` leaves a field alone, an empty string clears it.
#[derive(Debug, Default)]
pub struct ProfileChanges {
    /// Display name.
    pub name: Option<String>,
    /// Unique username.
    pub username: Option<String>,
    /// BCP 47 locale.
    pub locale: Option<String>,
    /// An https avatar URL.
    pub avatar_url: Option<String>,
}

impl Accounts {
    /// Applies `changes` to `user` and returns the user as stored.
    ///
    /// # Errors
    /// [`AccountError::InvalidProfile`] naming the field, [`AccountError::UsernameTaken`], or
    /// the store fails.
    pub async fn update_profile(
        &self,
        mut user: User,
        changes: ProfileChanges,
    ) -> Result<User, AccountError> {
        type Clean = fn(&str) -> Result<Option<String>, InvalidProfile>;
        let field =
            |value: Option<String>, clean: Clean| value.map(|value| clean(&value)).transpose();
        if let Some(name) = field(changes.name, profile::clean_name)? {
            user.name = name;
        }
        if let Some(username) = field(changes.username, profile::clean_username)? {
            user.username = username;
        }
        if let Some(locale) = field(changes.locale, profile::clean_locale)? {
            user.locale = locale;
        }
        if let Some(avatar_url) = field(changes.avatar_url, profile::clean_avatar_url)? {
            user.avatar_url = avatar_url;
        }
        let now = self.clock.now();
        self.users.update_profile(&user, now).await.map_err(|error| match error {
            StoreError::Conflict(_) => AccountError::UsernameTaken,
            other => other.into(),
        })?;
        user.updated_at = now;
        self.sessions.refresh_user(user.id);
        Ok(user)
    }
}
