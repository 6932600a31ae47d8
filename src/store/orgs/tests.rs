use super::*;
use crate::model::Email;
use crate::model::credential::CredentialHash;
use crate::store::invites::{Invite, InviteStore};
use crate::store::testing::TestDatabase;
use crate::store::users::{NewUser, UserStore};

async fn user(users: &UserStore, email: &str) -> Uuid {
    let new = NewUser {
        email: Email::parse(email).unwrap(),
        name: None,
        password_hash: None,
        roles: Vec::new(),
    };
    users.create(new, Timestamp::from_millis(1)).await.unwrap().id
}

/// The last-owner rule and membership order, on both backends.
async fn keeps_an_owner(db: Database) {
    let (users, orgs) = (UserStore::new(db.clone()), OrgStore::new(db));
    let (ada, bob) = (user(&users, "ada@example.com").await, user(&users, "bob@example.com").await);
    let t = Timestamp::from_millis;
    let acme = orgs.create("Acme", "acme", ada, t(10)).await.unwrap();
    assert!(matches!(orgs.create("Other", "acme", bob, t(11)).await, Err(StoreError::Conflict(_))));
    let beta = orgs.create("Beta", "beta", ada, t(12)).await.unwrap();
    let ids: Vec<Uuid> = orgs.memberships(ada).await.unwrap().iter().map(|m| m.id).collect();
    assert_eq!(ids, [beta.id, acme.id], "the newest active first");
    orgs.mark_active(acme.id, ada, t(13)).await.unwrap();
    assert_eq!(orgs.roles_of(ada).await.unwrap()[0].org_id, acme.id);

    assert_eq!(orgs.set_role(acme.id, ada, "member", t(14)).await.unwrap(), Outcome::LastOwner);
    assert_eq!(orgs.remove(acme.id, ada, t(14)).await.unwrap(), Outcome::LastOwner);
    assert_eq!(orgs.set_role(acme.id, ada, "owner", t(14)).await.unwrap(), Outcome::Done);
    assert_eq!(orgs.remove(acme.id, bob, t(14)).await.unwrap(), Outcome::NotMember);

    assert!(orgs.add_member(acme.id, bob, "member", t(15)).await.unwrap());
    assert!(!orgs.add_member(acme.id, bob, "admin", t(15)).await.unwrap(), "keeps the role");
    assert_eq!(orgs.membership(acme.id, bob).await.unwrap().unwrap().role, "member");
    assert_eq!(orgs.set_role(acme.id, bob, "owner", t(16)).await.unwrap(), Outcome::Done);
    assert_eq!(orgs.remove(acme.id, ada, t(17)).await.unwrap(), Outcome::Done, "bob owns it");
    let members = orgs.members(acme.id).await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!((members[0].user_id, members[0].role.as_str()), (bob, "owner"));
    assert!(orgs.membership(acme.id, ada).await.unwrap().is_none());
}

/// Invites: only the latest works, once, and not after expiry.
async fn invites_are_single_use(db: Database) {
    let (users, orgs, invites) =
        (UserStore::new(db.clone()), OrgStore::new(db.clone()), InviteStore::new(db));
    let ada = user(&users, "ada@example.com").await;
    let t = Timestamp::from_millis;
    let acme = orgs.create("Acme", "acme", ada, t(10)).await.unwrap();
    let invite = |id| Invite {
        id,
        org_id: acme.id,
        email: "new@example.com".into(),
        role: "member".into(),
        invited_by: Some(ada),
        created_at: t(20),
        expires_at: t(100),
    };
    let (first, second) =
        (CredentialHash::from_bytes([1; 32]), CredentialHash::from_bytes([2; 32]));
    invites.insert(&invite(Uuid::now_v7()), &first).await.unwrap();
    invites.insert(&invite(Uuid::now_v7()), &second).await.unwrap();
    assert!(invites.find_pending(&first, t(30)).await.unwrap().is_none(), "replaced");
    assert!(invites.find_pending(&second, t(100)).await.unwrap().is_none(), "expired");
    assert_eq!(invites.find_pending(&second, t(30)).await.unwrap().unwrap().role, "member");
    assert!(invites.consume(&second, ada, t(31)).await.unwrap().is_some());
    assert!(invites.consume(&second, ada, t(32)).await.unwrap().is_none(), "used");
    invites.sweep(t(40)).await.unwrap();
}

#[tokio::test]
async fn sqlite_keeps_an_owner() {
    keeps_an_owner(Database::connect("sqlite::memory:", 1).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_keeps_an_owner() {
    let database = TestDatabase::create().await;
    keeps_an_owner(Database::connect(&database.url, 4).await.unwrap()).await;
}

#[tokio::test]
async fn sqlite_invites_are_single_use() {
    invites_are_single_use(Database::connect("sqlite::memory:", 1).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_invites_are_single_use() {
    let database = TestDatabase::create().await;
    invites_are_single_use(Database::connect(&database.url, 4).await.unwrap()).await;
}

/// Two owners demoting each other at once: one of them stays owner.
#[tokio::test]
async fn postgres_concurrent_demotions_leave_an_owner() {
    let database = TestDatabase::create().await;
    let db = Database::connect(&database.url, 4).await.unwrap();
    let (users, orgs) = (UserStore::new(db.clone()), OrgStore::new(db));
    let (ada, bob) = (user(&users, "ada@example.com").await, user(&users, "bob@example.com").await);
    let now = Timestamp::from_millis(10);
    let acme = orgs.create("Acme", "acme", ada, now).await.unwrap();
    orgs.add_member(acme.id, bob, OWNER, now).await.unwrap();
    for _ in 0..5 {
        let (a, b) = tokio::join!(
            orgs.set_role(acme.id, ada, "member", now),
            orgs.set_role(acme.id, bob, "member", now)
        );
        let outcomes = [a.unwrap(), b.unwrap()];
        assert!(outcomes.contains(&Outcome::LastOwner), "{outcomes:?}");
        let owners = orgs.members(acme.id).await.unwrap();
        assert_eq!(owners.iter().filter(|m| m.role == OWNER).count(), 1);
        for member in [ada, bob] {
            orgs.set_role(acme.id, member, OWNER, now).await.unwrap();
        }
    }
}
