//! Magic links and one-time codes: one email holds a single-use link (256 random bits) and a
//! 6-digit code, both for the same grant, valid `email.link_ttl`.
//!
//! A grant belongs to an address *and the client that asked for it* (its IP address, or IPv6
//! /64): asking again from the same client replaces that client's grant, while a stranger's
//! requests for someone else's address make grants of the stranger's own, which neither
//! replace the owner's pending link nor, by five wrong codes, burn it. A code is redeemed
//! against the grant of the client that types it (the "check your email" page of the browser
//! that asked). Only hashes are stored; grants are keyed by the hash of address and client,
//! links by the token's.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Email;
use super::single_use::{self, SingleUse, TokenShape};
use crate::clock::Clock;
use crate::crypto;
use crate::store::StoreError;
use crate::store::ephemeral::{EphemeralStore, decode, encode};

/// Wrong codes allowed before the grant is burnt.
pub(crate) const MAX_CODE_ATTEMPTS: u64 = 5;

/// A new grant: what goes into the email.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The link's token.
    pub token: String,
    /// The 6-digit code.
    pub code: String,
}

/// What a used grant signs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redeemed {
    /// The email it was sent to.
    pub email: Email,
    /// Where to go afterwards (validated when the link was asked for).
    pub redirect: String,
    /// The account to create, when the grant finishes a sign-up.
    pub signup: Option<PendingSignup>,
}

/// A password sign-up waiting for its address to be proven: the account is made, with this
/// password and name, only when the grant is redeemed, so the sign-up answer says nothing about
/// whether the address was taken, and nobody can plant a password on someone else's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSignup {
    /// The argon2 hash of the chosen password.
    pub password_hash: String,
    /// The display name given at sign-up.
    pub name: Option<String>,
    /// SHA-256 (hex) of the browser binding of whoever submitted the sign-up: the password
    /// and name count only when the grant is redeemed from that browser, so a stranger's
    /// sign-up confirmed by the address's owner makes an account without the stranger's
    /// password.
    #[serde(default)]
    pub browser: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Grant {
    email: String,
    /// The client that asked for it.
    #[serde(default)]
    requester: String,
    token_hash: String,
    code_hash: String,
    redirect: String,
    expires_at: i64,
    #[serde(default)]
    signup: Option<PendingSignup>,
}

/// Whose grant a link's token opens: the address and the client that asked.
#[derive(Debug, Serialize, Deserialize)]
struct Holder {
    email: String,
    requester: String,
}

/// Issues and redeems grants.
#[derive(Debug, Clone)]
pub struct MagicLinks {
    store: Arc<dyn EphemeralStore>,
    links: SingleUse<Holder>,
    clock: Arc<dyn Clock>,
    ttl: Duration,
}

impl MagicLinks {
    /// Grants kept in `store`, living `ttl`.
    pub fn new(store: Arc<dyn EphemeralStore>, clock: Arc<dyn Clock>, ttl: Duration) -> Self {
        let links = SingleUse::new(Arc::clone(&store), "magic_token", TokenShape::Random, ttl);
        Self { store, links, clock, ttl }
    }

    /// How long a grant lives.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new grant for `email` asked by `requester` (the client's address), replacing that
    /// client's earlier one.
    ///
    /// # Errors
    /// The store fails.
    pub async fn issue(
        &self,
        email: &Email,
        redirect: &str,
        requester: &str,
    ) -> Result<Issued, StoreError> {
        self.issue_grant(email, redirect, requester, None).await
    }

    /// A new grant that, when redeemed, finishes `signup` for `email` (as [`Self::issue`]
    /// otherwise).
    ///
    /// # Errors
    /// The store fails.
    pub async fn issue_signup(
        &self,
        email: &Email,
        redirect: &str,
        requester: &str,
        signup: PendingSignup,
    ) -> Result<Issued, StoreError> {
        self.issue_grant(email, redirect, requester, Some(signup)).await
    }

    async fn issue_grant(
        &self,
        email: &Email,
        redirect: &str,
        requester: &str,
        signup: Option<PendingSignup>,
    ) -> Result<Issued, StoreError> {
        let holder = Holder { email: email.as_str().to_owned(), requester: requester.to_owned() };
        let token = self.links.mint(&holder).await?;
        let code = random_code();
        let grant = Grant {
            email: email.as_str().to_owned(),
            requester: requester.to_owned(),
            token_hash: single_use::token_hash(&token),
            code_hash: code_hash(email, &code),
            redirect: redirect.to_owned(),
            expires_at: self.clock.now().plus(self.ttl).as_millis(),
            signup,
        };
        let bytes = encode(&grant)?;
        self.store.delete(&attempts_key(email, requester)).await?;
        self.store.put(&grant_key(email, requester), &bytes, self.ttl).await?;
        Ok(Issued { token, code })
    }

    /// The address a link's token signs in, and whether it finishes a sign-up, without using
    /// it up: the confirmation page shows them, so that a mail scanner following the link
    /// burns nothing. `None` as for [`Self::redeem_link`].
    ///
    /// # Errors
    /// The store fails.
    pub async fn peek_link(&self, token: &str) -> Result<Option<(Email, bool)>, StoreError> {
        let found = self.find_link(token, false).await?;
        Ok(found.map(|(email, grant)| (email, grant.signup.is_some())))
    }

    /// Redeems a link's token. `None` when it is unknown, used, expired, or replaced by a newer
    /// grant.
    ///
    /// # Errors
    /// The store fails.
    pub async fn redeem_link(&self, token: &str) -> Result<Option<Redeemed>, StoreError> {
        match self.find_link(token, true).await? {
            Some((email, grant)) => self.finish(&email, grant).await,
            None => Ok(None),
        }
    }

    /// The live grant behind a link's token; `use_up` takes the token's entry (of two
    /// concurrent redemptions one wins), otherwise it is only read.
    async fn find_link(
        &self,
        token: &str,
        use_up: bool,
    ) -> Result<Option<(Email, Grant)>, StoreError> {
        let holder =
            if use_up { self.links.take(token).await } else { self.links.peek(token).await };
        let holder = match holder {
            Ok(Some(holder)) => holder,
            // A link mailed by an older version, whose holder was plain text: ask again.
            Ok(None) | Err(StoreError::Corrupt(_)) => return Ok(None),
            Err(error) => return Err(error),
        };
        let Ok(email) = Email::parse(&holder.email) else { return Ok(None) };
        let Some(grant) = self.load(&email, &holder.requester).await? else { return Ok(None) };
        let token_hash = single_use::token_hash(token);
        if !crypto::constant_time_eq(grant.token_hash.as_bytes(), token_hash.as_bytes()) {
            return Ok(None);
        }
        Ok(Some((email, grant)))
    }

    /// Redeems a code typed for `email` by `requester`, against that client's grant. `None`
    /// for a wrong code, no grant, or a grant burnt after too many wrong codes.
    ///
    /// # Errors
    /// The store fails.
    pub async fn redeem_code(
        &self,
        email: &Email,
        code: &str,
        requester: &str,
    ) -> Result<Option<Redeemed>, StoreError> {
        let Some(grant) = self.load(email, requester).await? else { return Ok(None) };
        // Counted before comparing, atomically, so parallel guesses cannot exceed the budget.
        let attempts = self.store.incr(&attempts_key(email, requester), self.ttl).await?;
        if attempts > MAX_CODE_ATTEMPTS {
            self.burn(email, &grant).await?;
            return Ok(None);
        }
        let valid = code.len() == 6
            && code.bytes().all(|b| b.is_ascii_digit())
            && crypto::constant_time_eq(
                grant.code_hash.as_bytes(),
                code_hash(email, code).as_bytes(),
            );
        if !valid {
            if attempts == MAX_CODE_ATTEMPTS {
                self.burn(email, &grant).await?;
            }
            return Ok(None);
        }
        self.finish(email, grant).await
    }

    /// Takes the grant (single use: of two concurrent redemptions, one wins).
    async fn finish(&self, email: &Email, grant: Grant) -> Result<Option<Redeemed>, StoreError> {
        if self.store.take(&grant_key(email, &grant.requester)).await?.is_none() {
            return Ok(None);
        }
        // The link's entry, if the code was typed instead, opens nothing now and expires.
        self.store.delete(&attempts_key(email, &grant.requester)).await?;
        Ok(Some(Redeemed { email: email.clone(), redirect: grant.redirect, signup: grant.signup }))
    }

    /// Ends the grant: its link and code open nothing from now on.
    async fn burn(&self, email: &Email, grant: &Grant) -> Result<(), StoreError> {
        self.store.delete(&grant_key(email, &grant.requester)).await
    }

    async fn load(&self, email: &Email, requester: &str) -> Result<Option<Grant>, StoreError> {
        let Some(bytes) = self.store.get(&grant_key(email, requester)).await? else {
            return Ok(None);
        };
        let grant: Grant = decode(&bytes, "magic link")?;
        let live = grant.expires_at > self.clock.now().as_millis() && grant.email == email.as_str();
        Ok(live.then_some(grant))
    }
}

/// Six uniformly random digits.
fn random_code() -> String {
    loop {
        let bytes = crypto::random_bytes();
        let value = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        // Reject the top sliver of the range so that every code is equally likely.
        if value < u32::MAX - u32::MAX % 1_000_000 {
            return format!("{:06}", value % 1_000_000);
        }
    }
}

/// A code is only a million values: hashing it with the email at least makes a stored hash
/// useless for any other address.
fn code_hash(email: &Email, code: &str) -> String {
    crypto::hex(&crypto::sha256(format!("{}\n{code}", email.as_str()).as_bytes()))
}

fn holder_hash(email: &Email, requester: &str) -> String {
    crypto::hex(&crypto::sha256(format!("{}\n{requester}", email.as_str()).as_bytes()))
}

fn grant_key(email: &Email, requester: &str) -> String {
    format!("magic:{}", holder_hash(email, requester))
}

fn attempts_key(email: &Email, requester: &str) -> String {
    format!("magic_attempts:{}", holder_hash(email, requester))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::ephemeral::MemoryStore;

    fn links() -> (MagicLinks, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new());
        let store = Arc::new(MemoryStore::new(clock.clone()));
        (MagicLinks::new(store, clock.clone(), Duration::from_secs(900)), clock)
    }

    fn ada() -> Email {
        Email::parse("ada@example.com").unwrap()
    }

    #[test]
    fn codes_are_six_digits() {
        for _ in 0..100 {
            let code = random_code();
            assert_eq!(code.len(), 6);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
    }

    const HOME: &str = "198.51.100.7";
    const STRANGER: &str = "203.0.113.66";

    /// A link mailed by a version that kept its holder as `email\nrequester` text, redeemed
    /// during a rolling upgrade: read as expired (ask again), never a server error.
    #[tokio::test]
    async fn a_link_whose_holder_an_older_version_wrote_reads_as_expired() {
        let (links, _clock) = links();
        let issued = links.issue(&ada(), "/a", HOME).await.unwrap();
        let key = links.links.key(&issued.token);
        let old_holder = format!("{}\n{HOME}", ada().as_str());
        links.store.put(&key, old_holder.as_bytes(), Duration::from_secs(900)).await.unwrap();
        assert_eq!(links.peek_link(&issued.token).await.unwrap(), None);
        assert_eq!(links.redeem_link(&issued.token).await.unwrap(), None);
        // The code of the same grant still works.
        assert!(links.redeem_code(&ada(), &issued.code, HOME).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_link_works_once_and_only_the_latest_grant_counts() {
        let (links, clock) = links();
        let first = links.issue(&ada(), "/a", HOME).await.unwrap();
        let second = links.issue(&ada(), "/b", HOME).await.unwrap();
        assert_eq!(links.redeem_link(&first.token).await.unwrap(), None, "replaced");
        let redeemed = links.redeem_link(&second.token).await.unwrap().unwrap();
        assert_eq!(redeemed.redirect, "/b");
        assert_eq!(links.redeem_link(&second.token).await.unwrap(), None, "used");
        assert_eq!(
            links.redeem_code(&ada(), &second.code, HOME).await.unwrap(),
            None,
            "the code went too"
        );

        let late = links.issue(&ada(), "/", HOME).await.unwrap();
        clock.advance(Duration::from_secs(901));
        assert_eq!(links.redeem_link(&late.token).await.unwrap(), None, "expired");
    }

    #[tokio::test]
    async fn looking_at_a_link_does_not_use_it() {
        let (links, clock) = links();
        let issued = links.issue(&ada(), "/", HOME).await.unwrap();
        for _ in 0..3 {
            assert_eq!(links.peek_link(&issued.token).await.unwrap(), Some((ada(), false)));
        }
        assert!(links.redeem_link(&issued.token).await.unwrap().is_some());
        assert_eq!(links.peek_link(&issued.token).await.unwrap(), None, "used");
        assert_eq!(links.peek_link("not a token").await.unwrap(), None);
        let late = links.issue(&ada(), "/", HOME).await.unwrap();
        clock.advance(Duration::from_secs(901));
        assert_eq!(links.peek_link(&late.token).await.unwrap(), None, "expired");
    }

    #[tokio::test]
    async fn five_wrong_codes_burn_the_grant() {
        let (links, _) = links();
        let issued = links.issue(&ada(), "/", HOME).await.unwrap();
        let wrong = if issued.code == "000000" { "111111" } else { "000000" };
        for _ in 0..MAX_CODE_ATTEMPTS {
            assert_eq!(links.redeem_code(&ada(), wrong, HOME).await.unwrap(), None);
        }
        assert_eq!(links.redeem_code(&ada(), &issued.code, HOME).await.unwrap(), None, "burnt");
        assert_eq!(links.redeem_link(&issued.token).await.unwrap(), None);

        let issued = links.issue(&ada(), "/", HOME).await.unwrap();
        let other = Email::parse("eve@example.com").unwrap();
        assert_eq!(
            links.redeem_code(&other, &issued.code, HOME).await.unwrap(),
            None,
            "another email"
        );
        assert!(links.redeem_code(&ada(), &issued.code, HOME).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_stranger_neither_replaces_nor_burns_the_owners_grant() {
        let (links, _) = links();
        let mine = links.issue(&ada(), "/", HOME).await.unwrap();
        let theirs = links.issue(&ada(), "/", STRANGER).await.unwrap();
        let wrong = if mine.code == "000000" { "111111" } else { "000000" };
        for _ in 0..=MAX_CODE_ATTEMPTS {
            assert_eq!(links.redeem_code(&ada(), wrong, STRANGER).await.unwrap(), None);
        }
        assert_eq!(
            links.redeem_code(&ada(), &mine.code, STRANGER).await.unwrap(),
            None,
            "a code counts only for the client that asked for it"
        );
        assert!(links.redeem_code(&ada(), &mine.code, HOME).await.unwrap().is_some());
        assert_eq!(links.redeem_link(&theirs.token).await.unwrap(), None, "burnt by its guesses");
    }

    #[tokio::test]
    async fn a_sign_up_grant_carries_the_pending_account() {
        let (links, _) = links();
        let pending = PendingSignup {
            password_hash: "h".into(),
            name: Some("Ada".into()),
            browser: "ab".into(),
        };
        let issued = links.issue_signup(&ada(), "/", HOME, pending.clone()).await.unwrap();
        assert_eq!(links.peek_link(&issued.token).await.unwrap(), Some((ada(), true)));
        let redeemed = links.redeem_code(&ada(), &issued.code, HOME).await.unwrap().unwrap();
        assert_eq!(redeemed.signup, Some(pending));
        let plain = links.issue(&ada(), "/", HOME).await.unwrap();
        let redeemed = links.redeem_link(&plain.token).await.unwrap().unwrap();
        assert_eq!(redeemed.signup, None, "a sign-in grant makes no account of its own");
    }
}
