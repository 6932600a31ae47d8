//! Keyed tags on the credentials Portcullis issues (session tokens, API keys, refresh tokens,
//! WebSocket tickets), so that a forgery is refused without a store lookup.
//!
//! A tagged credential is 256 random bits followed by the first 64 bits of
//! HMAC-SHA256(key, kind ‖ random part). The key is generated once and kept in the database
//! (sealed like the other stored secrets), so every replica shares it; it is independent of
//! `auth.secret`, so rotating that ends no session and breaks no API key. The tag is a filter,
//! not the credential: a valid tag still needs the stored hash to match, and the gateway checks
//! it only on a cache miss, so the hot path never computes it.
//!
//! Credentials made before tags existed (untagged) are still accepted while they can be live:
//! sessions, refresh tokens and tickets for their lifetime plus a day (a rolling upgrade) after
//! the first start that tagged, and API keys while the database holds a live untagged key. A
//! fresh installation never accepts them.

use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;

use crate::clock::Timestamp;

/// Characters of a tag in base64url (64 bits).
pub(crate) const TAG_LEN: usize = 11;
/// Characters of a tagged base64url credential: the random part and its tag.
pub(crate) const TAGGED_LEN: usize = 43 + TAG_LEN;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// What a credential is: part of the tagged input, so a tag of one kind is worthless as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind {
    /// A session cookie.
    Session,
    /// An API key.
    ApiKey,
    /// A refresh token.
    Refresh,
    /// A WebSocket ticket.
    Ticket,
}

impl TagKind {
    fn byte(self) -> u8 {
        match self {
            Self::Session => 1,
            Self::ApiKey => 2,
            Self::Refresh => 3,
            Self::Ticket => 4,
        }
    }
}

/// Until when credentials without a tag (made by an earlier version) may still be live.
#[derive(Debug)]
pub struct Untagged {
    /// Untagged session tokens are looked up until then.
    pub sessions_until: Timestamp,
    /// Untagged refresh tokens, likewise.
    pub refresh_until: Timestamp,
    /// Untagged tickets, likewise.
    pub tickets_until: Timestamp,
    /// Until then replicas of the earlier version may still be running and making untagged
    /// API keys, so untagged keys are looked up whatever [`Self::api_keys`] says.
    pub upgrade_until: Timestamp,
    /// Whether the database held a live untagged API key when last checked (API keys can
    /// live for years).
    pub api_keys: AtomicBool,
}

impl Untagged {
    /// None accepted: a fresh installation, or tests.
    pub fn none() -> Self {
        let never = Timestamp::from_millis(0);
        Self {
            sessions_until: never,
            refresh_until: never,
            tickets_until: never,
            upgrade_until: never,
            api_keys: AtomicBool::new(false),
        }
    }
}

/// Makes and checks credential tags.
pub struct TokenTags {
    key: hmac::Key,
    untagged: Untagged,
}

impl TokenTags {
    /// Tags under `key`, accepting the untagged credentials `untagged` describes.
    pub fn new(key: &[u8], untagged: Untagged) -> Self {
        Self { key: hmac::Key::new(hmac::HMAC_SHA256, key), untagged }
    }

    /// Tags under a random key that accept nothing untagged (tests).
    pub fn random() -> Self {
        Self::new(&super::random_bytes(), Untagged::none())
    }

    /// The 64-bit tag of `body` as a credential of `kind`.
    pub fn tag(&self, kind: TagKind, body: &str) -> [u8; 8] {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(&[kind.byte()]);
        context.update(body.as_bytes());
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&context.sign().as_ref()[..8]);
        tag
    }

    /// A new base64url credential of `kind`: 43 random characters and an 11-character tag.
    pub fn mint(&self, kind: TagKind) -> String {
        let mut token = super::random_token();
        let tag = self.tag(kind, &token);
        URL_SAFE_NO_PAD.encode_string(tag, &mut token);
        token
    }

    /// Whether a base64url credential of `kind` may be looked up at `now`: a tagged one whose
    /// tag is right, or an untagged one (43 characters) while those can be live.
    pub fn admits(&self, kind: TagKind, token: &str, now: Timestamp) -> bool {
        if token.len() == TAGGED_LEN && is_base64url(token) {
            let (body, tag) = token.split_at(43);
            let expected = URL_SAFE_NO_PAD.encode(self.tag(kind, body));
            return super::constant_time_eq(expected.as_bytes(), tag.as_bytes());
        }
        super::is_random_token(token) && self.untagged_admitted(kind, now)
    }

    /// Whether untagged credentials of `kind` may still be live at `now`.
    pub fn untagged_admitted(&self, kind: TagKind, now: Timestamp) -> bool {
        match kind {
            TagKind::Session => now < self.untagged.sessions_until,
            TagKind::Refresh => now < self.untagged.refresh_until,
            TagKind::Ticket => now < self.untagged.tickets_until,
            TagKind::ApiKey => {
                now < self.untagged.upgrade_until || self.untagged.api_keys.load(Ordering::Relaxed)
            }
        }
    }

    /// Whether the database must be asked again whether it holds live untagged API keys: while
    /// it did, or while replicas of the earlier version may be making them.
    pub fn untagged_api_keys_unsettled(&self, now: Timestamp) -> bool {
        now < self.untagged.upgrade_until || self.untagged.api_keys.load(Ordering::Relaxed)
    }

    /// Records whether a live untagged API key is left (if not, and the upgrade is over, they
    /// are refused unread).
    pub fn set_untagged_api_keys(&self, live: bool) {
        self.untagged.api_keys.store(live, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for TokenTags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenTags").field("untagged", &self.untagged).finish_non_exhaustive()
    }
}

/// Whether `text` is base64url characters only (the shape of a tagged credential).
pub(crate) fn is_base64url(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `tag` as exactly [`TAG_LEN`] base62 digits (62¹¹ > 2⁶⁴), for credentials that stay
/// alphanumeric (API keys select with a double click and match secret scanners).
pub(crate) fn base62_tag(tag: [u8; 8]) -> [u8; TAG_LEN] {
    let mut value = u64::from_be_bytes(tag);
    let mut digits = [b'0'; TAG_LEN];
    for digit in digits.iter_mut().rev() {
        *digit = BASE62[(value % 62) as usize];
        value /= 62;
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_millis(1_000_000)
    }

    #[test]
    fn minted_tokens_are_admitted_and_forgeries_are_not() {
        let tags = TokenTags::random();
        let token = tags.mint(TagKind::Session);
        assert_eq!(token.len(), TAGGED_LEN);
        assert!(is_base64url(&token));
        assert!(tags.admits(TagKind::Session, &token, now()));
        // The same token as another kind, under another key, or with any character changed.
        assert!(!tags.admits(TagKind::Refresh, &token, now()));
        assert!(!TokenTags::random().admits(TagKind::Session, &token, now()));
        for index in [0, 42, 43, TAGGED_LEN - 1] {
            let mut bytes = token.clone().into_bytes();
            bytes[index] = if bytes[index] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(bytes).unwrap();
            assert!(!tags.admits(TagKind::Session, &changed, now()), "{index}");
        }
        assert!(!tags.admits(TagKind::Session, &token[..TAGGED_LEN - 1], now()));
        assert!(!tags.admits(TagKind::Session, &format!("{token}A"), now()));
    }

    #[test]
    fn untagged_tokens_are_admitted_only_while_they_can_be_live() {
        let untagged = Untagged {
            sessions_until: now().plus(std::time::Duration::from_secs(60)),
            refresh_until: now(),
            tickets_until: Timestamp::from_millis(0),
            upgrade_until: now(),
            api_keys: AtomicBool::new(true),
        };
        let tags = TokenTags::new(&[7; 32], untagged);
        let old = crate::crypto::random_token();
        assert!(tags.admits(TagKind::Session, &old, now()));
        assert!(!tags.admits(
            TagKind::Session,
            &old,
            now().plus(std::time::Duration::from_secs(60))
        ));
        assert!(!tags.admits(TagKind::Refresh, &old, now()));
        assert!(!tags.admits(TagKind::Ticket, &old, now()));
        assert!(tags.untagged_admitted(TagKind::ApiKey, now()));
        tags.set_untagged_api_keys(false);
        assert!(!tags.untagged_admitted(TagKind::ApiKey, now()));
        assert!(!tags.untagged_api_keys_unsettled(now()));
        // While older replicas may still run, untagged keys are looked up whatever was found.
        let upgrading = Untagged {
            upgrade_until: now().plus(std::time::Duration::from_secs(1)),
            ..Untagged::none()
        };
        let tags = TokenTags::new(&[7; 32], upgrading);
        assert!(tags.untagged_admitted(TagKind::ApiKey, now()));
        assert!(tags.untagged_api_keys_unsettled(now()));
        assert!(!TokenTags::random().admits(TagKind::Session, &old, now()));
    }

    #[test]
    fn base62_tags_have_a_fixed_width() {
        assert_eq!(&base62_tag([0; 8]), b"00000000000");
        assert_eq!(&base62_tag([0xff; 8]), b"LygHa16AHYF");
        assert!(base62_tag(*b"portcull").iter().all(u8::is_ascii_alphanumeric));
    }
}
