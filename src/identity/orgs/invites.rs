//! Invites: a single-use link mailed to an address, joining whoever follows it to the
//! organization (making the account when none exists: the link proves the mailbox).

use uuid::Uuid;

use super::{OrgError, Organizations};
use crate::crypto;
use crate::identity::accounts::{AccountError, MailboxProof};
use crate::model::User;
use crate::model::credential::CredentialHash;
use crate::model::email::{self, Email};
use crate::model::org::{self, Change, Membership};
use crate::store::invites::Invite;

/// An invite checked and ready to be stored once the caller has decided to mail it (after
/// its own send limit).
#[derive(Debug)]
pub struct InviteDraft {
    /// The organization, as the inviter is a member of it.
    pub org: Membership,
    email: Email,
    role: String,
    inviter: Uuid,
}

/// An invite stored, with the token its link carries (only its hash is stored).
#[derive(Debug)]
pub struct SentInvite {
    /// The invite.
    pub invite: Invite,
    /// The link's token.
    pub token: String,
    /// Where to mail it.
    pub email: Email,
}

impl InviteDraft {
    /// The invited address.
    pub fn email(&self) -> &Email {
        &self.email
    }
}

impl Organizations {
    /// Checks that `inviter` may invite `email` into `org_id` with `role` (or the default
    /// invite role).
    ///
    /// # Errors
    /// An unknown role, an inviter who may not, a person already a member, or the store fails.
    pub async fn draft_invite(
        &self,
        org_id: Uuid,
        inviter: Uuid,
        email: Email,
        role: Option<&str>,
    ) -> Result<InviteDraft, OrgError> {
        let role = match role.or(self.settings.roles.default_invite_role()) {
            Some(role) if self.settings.roles.contains(role) => role.to_owned(),
            _ => return Err(OrgError::UnknownRole(self.settings.roles.names().join(", "))),
        };
        let org = self.member_of(org_id, inviter).await?;
        if !org::may(&org.role, Change::Invite { role: &role }, false) {
            return Err(OrgError::MayNotInvite);
        }
        match self.accounts.find_by_email(&email).await {
            Ok(user) if self.orgs.membership(org_id, user.id).await?.is_some() => {
                return Err(OrgError::AlreadyMember);
            }
            Ok(_) | Err(AccountError::NotFound) => {}
            Err(error) => return Err(error.into()),
        }
        Ok(InviteDraft { org, email, role, inviter })
    }

    /// Stores the invite, replacing an earlier one to the same address.
    ///
    /// # Errors
    /// The store fails.
    pub async fn issue_invite(&self, draft: InviteDraft) -> Result<SentInvite, OrgError> {
        let now = self.clock.now();
        let token = crypto::random_token();
        let invite = Invite {
            id: Uuid::now_v7(),
            org_id: draft.org.id,
            email: draft.email.as_str().to_owned(),
            role: draft.role,
            invited_by: Some(draft.inviter),
            created_at: now,
            expires_at: now.plus(self.settings.invite_ttl),
        };
        self.invites.insert(&invite, &CredentialHash::of(&token)).await?;
        Ok(SentInvite { invite, token, email: draft.email })
    }

    /// The invites still waiting, newest first, for an owner or admin.
    ///
    /// # Errors
    /// [`OrgError::NotManager`], [`OrgError::NoSuchOrganization`], or the store fails.
    pub async fn pending_invites(
        &self,
        org_id: Uuid,
        actor: Uuid,
    ) -> Result<Vec<Invite>, OrgError> {
        self.managed_by(org_id, actor).await?;
        Ok(self.invites.pending(org_id, self.clock.now()).await?)
    }

    /// Withdraws a pending invite: its link stops working.
    ///
    /// # Errors
    /// [`OrgError::NoSuchInvite`], not a manager, or the store fails.
    pub async fn revoke_invite(
        &self,
        org_id: Uuid,
        actor: Uuid,
        invite_id: Uuid,
    ) -> Result<(), OrgError> {
        self.managed_by(org_id, actor).await?;
        if !self.invites.revoke(org_id, invite_id).await? {
            return Err(OrgError::NoSuchInvite);
        }
        Ok(())
    }

    /// Uses up the invite behind `token`: the invited account (made now when there is none
    /// and the address's domain may sign up) joins the organization in the invited role and
    /// acts in it. Of two concurrent accepts, only the one that uses the invite up joins.
    ///
    /// # Errors
    /// [`OrgError::InviteUsedUp`], [`OrgError::InviteWithdrawn`], the account cannot be had,
    /// too many memberships, or the store fails.
    pub async fn accept_invite(&self, token: &str) -> Result<(User, Invite), OrgError> {
        if !crypto::is_random_token(token) {
            return Err(OrgError::InviteUsedUp);
        }
        let hash = CredentialHash::of(token);
        let now = self.clock.now();
        let invite = self.invites.find_pending(&hash, now).await?.ok_or(OrgError::InviteUsedUp)?;
        self.still_vouched_for(&invite).await?;
        let email = Email::parse(&invite.email)?;
        // An invite is how a closed deployment adds people; the domain rules still hold.
        let may_sign_up =
            email::domain_allowed(&self.settings.allowed_email_domains, email.domain());
        let proof = MailboxProof { may_sign_up, pending: None, label: "invite" };
        let user = self.accounts.by_mailbox(&email, proof).await?;
        if self.orgs.membership(invite.org_id, user.id).await?.is_none() {
            self.room_for_one_more(user.id).await?;
        }
        let invite =
            self.invites.consume(&hash, user.id, now).await?.ok_or(OrgError::InviteUsedUp)?;
        self.orgs.add_member(invite.org_id, user.id, &invite.role, now).await?;
        self.orgs.mark_active(invite.org_id, user.id, now).await?;
        self.sessions.refresh_user(user.id);
        Ok((user, invite))
    }

    /// An invite counts only while its inviter may still make it: one who left the
    /// organization or lost the role that invites (or that gives the invited role) takes
    /// their pending invites with them.
    async fn still_vouched_for(&self, invite: &Invite) -> Result<(), OrgError> {
        let Some(inviter) = invite.invited_by else { return Ok(()) };
        let membership = self.orgs.membership(invite.org_id, inviter).await?;
        let allowed = membership.is_some_and(|membership| {
            org::may(&membership.role, Change::Invite { role: &invite.role }, false)
        });
        if allowed { Ok(()) } else { Err(OrgError::InviteWithdrawn) }
    }
}
