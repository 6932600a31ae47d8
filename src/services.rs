//! The stores and the domain services over them, opened once from the configuration: the
//! server's state and the admin CLI are built on the same [`Services`], so a flow the CLI runs
//! is the server's own code. Also the pieces every start needs once: the revocation fan-out's
//! channel, the wait for stores that start after us, and the credential tag key.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;

use crate::clock::{Clock, Timestamp};
use crate::config::{Config, EphemeralKind};
use crate::crypto;
use crate::crypto::password::{PasswordHashError, PasswordHasherPool};
use crate::crypto::tags::{TokenTags, Untagged};
use crate::identity::accounts::{AccountParts, Accounts};
use crate::identity::api_key::ApiKeyService;
use crate::identity::cache::IdentityCache;
use crate::identity::orgs::{OrgSettings, Organizations};
use crate::identity::revocation::{Channel, Fanout};
use crate::identity::session::{SessionLifetimes, SessionService};
use crate::store::StoreError;
use crate::store::api_keys::ApiKeyStore;
use crate::store::ephemeral::{
    DatabaseStore, EphemeralStore, MemoryStore, RedisSource, RedisStore,
};
use crate::store::sql::{Backend, Database};
use crate::store::tokens::FamilyStore;
use crate::store::users::UserStore;

/// Most identities held in the cache; at a few hundred bytes each, about 100 MiB at most.
const CACHE_CAPACITY: u64 = 250_000;

/// Why the services cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    /// A store cannot be reached, migrated or read.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// argon2 does not work on this machine.
    #[error("password hashing: {0}")]
    Hasher(#[from] PasswordHashError),
}

/// The stores and the domain services over them.
#[derive(Debug, Clone)]
pub struct Services {
    /// The SQL database.
    pub db: Database,
    /// Users.
    pub users: UserStore,
    /// The ephemeral store.
    pub ephemeral: Arc<dyn EphemeralStore>,
    /// The identity cache every credential kind shares.
    pub cache: IdentityCache,
    /// Sessions.
    pub sessions: SessionService,
    /// API keys.
    pub api_keys: ApiKeyService,
    /// Refresh-token families.
    pub families: FamilyStore,
    /// Tags on the credentials this installation issues.
    pub tags: Arc<TokenTags>,
    /// Password hashing off the async workers.
    pub hasher: PasswordHasherPool,
    /// Account flows (sign-up, disable, roles, ending sign-ins).
    pub accounts: Accounts,
    /// Organizations, members and invites.
    pub orgs: Organizations,
    /// The revocation fan-out, while it runs.
    fanout: Arc<parking_lot::Mutex<Option<Fanout>>>,
}

impl Services {
    /// Connects to the database (running migrations) and the ephemeral store, waiting for them
    /// up to `storage.startup_wait`, builds the services and starts the revocation fan-out when
    /// several replicas can share the stores (Redis, or PostgreSQL).
    ///
    /// # Errors
    /// The stores cannot be reached in time, the database cannot be migrated, or argon2 does
    /// not work here.
    pub async fn open(config: &Config, clock: Arc<dyn Clock>) -> Result<Self, ServicesError> {
        let storage = &config.storage;
        let db = with_startup_retry("the database", storage.startup_wait, || async {
            let db = Database::open(&storage.database_url, storage.max_connections).await?;
            if storage.migrate_on_start {
                db.migrate_through(&storage.database_url, &storage.direct_url).await?;
            } else {
                db.check_migrated().await?;
            }
            Ok(db)
        })
        .await?
        .with_sealer(storage.sealer.clone());
        let users = UserStore::new(db.clone());
        let redis = match &storage.ephemeral {
            EphemeralKind::Redis { url, ca_pem, topology } => {
                Some(RedisSource::new(url, ca_pem.as_deref(), topology)?)
            }
            _ => None,
        };
        let ephemeral: Arc<dyn EphemeralStore> = match &redis {
            None if storage.ephemeral == EphemeralKind::Memory => {
                Arc::new(MemoryStore::new(Arc::clone(&clock)))
            }
            None => Arc::new(DatabaseStore::new(db.clone(), Arc::clone(&clock))),
            Some(source) => {
                let store = with_startup_retry("Redis", storage.startup_wait, || {
                    RedisStore::connect(source.clone(), &storage.redis_prefix, Arc::clone(&clock))
                })
                .await?;
                Arc::new(store)
            }
        };
        let cache =
            IdentityCache::new(config.session.cache_ttl, CACHE_CAPACITY, Arc::clone(&clock));
        let fanout =
            fanout_channel(config, &db, redis).map(|channel| Fanout::start(channel, &cache));
        let lifetimes =
            SessionLifetimes { ttl: config.session.ttl, idle_timeout: config.session.idle_timeout };
        let header_names = Arc::new(config.headers.clone());
        let tags = Arc::new(open_token_tags(&db, &users, config, clock.now()).await?);
        let sessions = SessionService::new(
            Arc::clone(&ephemeral),
            users.clone(),
            cache.clone(),
            Arc::clone(&clock),
            lifetimes,
            Arc::clone(&header_names),
            Arc::clone(&tags),
        );
        let api_keys = ApiKeyService::new(
            ApiKeyStore::new(db.clone()),
            users.clone(),
            cache.clone(),
            Arc::clone(&clock),
            header_names,
            Arc::clone(&tags),
        );
        let families = FamilyStore::new(db.clone());
        // Half the cores at most: a login storm must leave the proxy CPU to work with.
        let hashers =
            std::thread::available_parallelism().map_or(1, |cores| cores.get().div_ceil(2));
        let hasher = PasswordHasherPool::new(hashers)?;
        let accounts = Accounts::new(AccountParts {
            users: users.clone(),
            sessions: sessions.clone(),
            api_keys: api_keys.clone(),
            families: families.clone(),
            cache: cache.clone(),
            hasher: hasher.clone(),
            clock: Arc::clone(&clock),
        });
        let orgs = Organizations::new(
            db.clone(),
            sessions.clone(),
            accounts.clone(),
            OrgSettings {
                roles: config.orgs.roles.clone(),
                invite_ttl: config.orgs.invite_ttl,
                allowed_email_domains: config.auth.allowed_email_domains.clone(),
            },
            clock,
        );
        Ok(Self {
            db,
            users,
            ephemeral,
            cache,
            sessions,
            api_keys,
            families,
            tags,
            hasher,
            accounts,
            orgs,
            fanout: Arc::new(parking_lot::Mutex::new(fanout)),
        })
    }

    /// Publishes revocations still queued and closes the database (the CLI calls this before it
    /// exits, so its revocations reach running servers).
    pub async fn close(&self) {
        let fanout = self.fanout.lock().take();
        if let Some(fanout) = fanout {
            fanout.close().await;
        }
        self.db.close().await;
    }
}

/// Where revocations travel between replicas: Redis when it is the ephemeral store, else
/// PostgreSQL; a SQLite deployment is one replica and needs none.
fn fanout_channel(config: &Config, db: &Database, redis: Option<RedisSource>) -> Option<Channel> {
    match redis {
        Some(source) => Some(Channel::Redis {
            source,
            stream: format!("{}revocations", config.storage.redis_prefix),
        }),
        None if db.backend() == Backend::Postgres => Some(Channel::Postgres {
            db: db.clone(),
            url: config.storage.direct_url.clone(),
            channel: "portcullis_revocations".into(),
        }),
        None => None,
    }
}

/// Runs `connect` until it succeeds, fails for a reason other than unavailability, or `wait`
/// has passed: a sidecar often starts before its database is ready.
async fn with_startup_retry<T, F, Fut>(
    what: &str,
    wait: Duration,
    mut connect: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let deadline = std::time::Instant::now() + wait;
    let mut delay = Duration::from_millis(250);
    loop {
        match connect().await {
            Err(StoreError::Unavailable(error)) if std::time::Instant::now() + delay < deadline => {
                tracing::warn!(
                    %error,
                    "waiting for {what} (retrying for up to {})",
                    humantime::format_duration(wait)
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// How long after the first start that tags credentials older replicas of a rolling upgrade
/// may still issue untagged ones.
const UPGRADE_WINDOW: Duration = Duration::from_secs(86_400);

/// The credential tags: the key (generated once and kept in the database, sealed when
/// `storage.secrets_key` is set, shared by every replica), and which untagged credentials
/// from before tags existed can still be live.
async fn open_token_tags(
    db: &Database,
    users: &UserStore,
    config: &Config,
    now: Timestamp,
) -> Result<TokenTags, StoreError> {
    let key = db
        .secret_setting_or_insert("token_tag_key", || {
            base64::engine::general_purpose::STANDARD.encode(crypto::random_bytes())
        })
        .await?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| StoreError::Corrupt("the token tag key".into()))?;
    // Untagged credentials exist only if someone could have signed in before: a new database
    // has none, and never accepts them.
    let had_users = users.any().await?;
    let since = db
        .setting_or_insert("tagged_tokens_since_ms", || {
            if had_users { now.as_millis() } else { 0 }.to_string()
        })
        .await?;
    let since = since
        .parse()
        .map(Timestamp::from_millis)
        .map_err(|_| StoreError::Corrupt("the setting tagged_tokens_since_ms".into()))?;
    if since.as_millis() == 0 {
        return Ok(TokenTags::new(&key, Untagged::none()));
    }
    let until = |lifetime: Duration| since.plus(lifetime + UPGRADE_WINDOW);
    let api_keys = ApiKeyStore::new(db.clone()).any_live_untagged(now).await?;
    if api_keys {
        tracing::warn!(
            "API keys made before credential tags are live: keys of that format are looked up \
             until none is left (revoke or replace them to close this)"
        );
    }
    let untagged = Untagged {
        sessions_until: until(config.session.ttl),
        refresh_until: until(config.tokens.refresh_ttl),
        tickets_until: until(crate::identity::ticket::TICKET_TTL),
        upgrade_until: since.plus(UPGRADE_WINDOW),
        api_keys: api_keys.into(),
    };
    Ok(TokenTags::new(&key, untagged))
}
