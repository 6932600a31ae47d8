//! Tests of `users`.
use super::*;

async fn store() -> (UserStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("users.db").display());
    (UserStore::new(Database::connect(&url, 2).await.unwrap()), dir)
}

fn new_user(email: &str) -> NewUser {
    NewUser {
        email: Email::parse(email).unwrap(),
        name: Some("Ada".into()),
        password_hash: Some("$argon2id$fake".into()),
        roles: vec!["b".into(), "a".into(), "a".into()],
    }
}

#[tokio::test]
async fn create_find_and_change_users() {
    let (users, _dir) = store().await;
    let now = Timestamp::from_millis(1_000);
    let created = users.create(new_user("ada@example.com"), now).await.unwrap();
    assert_eq!(created.roles, ["a", "b"]);

    let (found, hash) = users.find_by_email(&created.email).await.unwrap().unwrap();
    assert_eq!(found, created);
    assert_eq!(hash.as_deref(), Some("$argon2id$fake"));
    assert_eq!(users.find(created.id).await.unwrap(), Some(created.clone()));

    assert!(users.set_roles(created.id, &["admin".into()], now).await.unwrap());
    assert!(users.set_disabled(created.id, true, now).await.unwrap());
    let changed = users.find(created.id).await.unwrap().unwrap();
    assert_eq!(changed.roles, ["admin"]);
    assert_eq!(changed.disabled_at, Some(now));
    assert!(!users.set_roles(Uuid::now_v7(), &[], now).await.unwrap());
}

/// What an identity is built from, read in one query, on both backends: operator and
/// provider roles merged (sorted, no repeats, a comma inside a role kept), organizations the
/// most recently active first, nothing for a disabled user.
async fn reads_a_member_in_one_query(db: Database) {
    use crate::store::orgs::OrgStore;
    let (users, orgs) = (UserStore::new(db.clone()), OrgStore::new(db));
    let t = Timestamp::from_millis;
    let ada = users.create(new_user("ada@example.com"), t(1)).await.unwrap();
    let lone = users.create(NewUser { roles: Vec::new(), ..new_user("bo@example.com") }, t(1));
    let lone = lone.await.unwrap();
    users.set_provider_roles(ada.id, "github", &["a".into(), "c,d".into()]).await.unwrap();
    let acme = orgs.create("Acme", "acme", ada.id, t(10)).await.unwrap();
    let beta = orgs.create("Beta", "beta", ada.id, t(12)).await.unwrap();
    orgs.mark_active(acme.id, ada.id, t(13)).await.unwrap();

    let (user, member_of) = users.find_member(ada.id).await.unwrap().unwrap();
    assert_eq!(user.roles, ["a", "b", "c,d"]);
    assert_eq!(user.email, ada.email);
    let ids: Vec<Uuid> = member_of.iter().map(|org| org.org_id).collect();
    assert_eq!(ids, [acme.id, beta.id]);
    assert!(member_of.iter().all(|org| org.role == "owner"), "{member_of:?}");
    assert_eq!(users.find(ada.id).await.unwrap().unwrap().roles, ["a", "b", "c,d"]);

    let (user, member_of) = users.find_member(lone.id).await.unwrap().unwrap();
    assert!(user.roles.is_empty() && member_of.is_empty());
    assert!(users.set_disabled(ada.id, true, t(20)).await.unwrap());
    assert!(users.find_member(ada.id).await.unwrap().is_none());
    assert!(users.find_member(Uuid::now_v7()).await.unwrap().is_none());
}

#[tokio::test]
async fn sqlite_reads_a_member_in_one_query() {
    reads_a_member_in_one_query(Database::connect("sqlite::memory:", 1).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_reads_a_member_in_one_query() {
    let database = crate::store::testing::TestDatabase::create().await;
    reads_a_member_in_one_query(Database::connect(&database.url, 4).await.unwrap()).await;
}

/// Pooled connections are not pinged before use: one that died while idle (here, killed by
/// an operator) is found by the read itself, which is then tried again on a new one.
#[tokio::test]
async fn a_read_survives_connections_killed_while_idle() {
    let database = crate::store::testing::TestDatabase::create().await;
    let db = Database::connect(&database.url, 2).await.unwrap();
    let users = UserStore::new(db.clone());
    let ada = users.create(new_user("ada@example.com"), Timestamp::from_millis(1)).await;
    let ada = ada.unwrap();
    let name = database.url.rsplit('/').next().unwrap().to_owned();
    let admin = sqlx::AnyPool::connect(&database.url.replace(&name, "test")).await.unwrap();
    let killed = sqlx::query(
        "SELECT COUNT(pg_terminate_backend(pid)) AS n FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&name)
    .fetch_one(&admin)
    .await
    .unwrap()
    .get::<i64, _>("n");
    assert!(killed >= 1, "the pool had a connection to kill");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    for _ in 0..3 {
        let (user, _) = users.find_member(ada.id).await.unwrap().unwrap();
        assert_eq!(user.id, ada.id);
    }
}

#[tokio::test]
async fn a_duplicate_email_is_a_conflict_and_writes_nothing() {
    let (users, _dir) = store().await;
    let now = Timestamp::from_millis(1);
    users.create(new_user("ada@example.com"), now).await.unwrap();
    let error = users.create(new_user("ada@example.com"), now).await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    let count: i64 = sqlx::query("SELECT COUNT(*) AS n FROM users")
        .fetch_one(users.db.pool())
        .await
        .unwrap()
        .get("n");
    assert_eq!(count, 1);
}
