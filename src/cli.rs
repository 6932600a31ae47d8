//! The command implementations behind `main.rs`.

use std::io::BufRead;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;
use portcullis::app::{App, Stores, expected_public_url, key_publish_time};
use portcullis::auth::password_policy;
use portcullis::clock::{Clock, SystemClock};
use portcullis::config::{Config, EphemeralKind, LogFormat, load};
use portcullis::crypto::password::PasswordHasherPool;
use portcullis::crypto::signing::KeyRing;
use portcullis::identity::api_key::KeyRequest;
use portcullis::identity::one_time::{OneTimeLink, OneTimeLinks};
use portcullis::identity::{Email, Scopes, validate_role};
use portcullis::store::StoreError;
use portcullis::store::sql::Database;
use portcullis::store::users::NewUser;
use tracing_subscriber::EnvFilter;

/// `portcullis user …`
#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Create a user.
    Create {
        /// Email address.
        email: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// Global roles, comma-separated.
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        /// Read the password from the first line of standard input (never from the command
        /// line, where other users could see it).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Replace a user's global roles (none clears them).
    SetRoles {
        /// Email address.
        email: String,
        /// Roles.
        roles: Vec<String>,
    },
    /// Disable a user and end all their sessions.
    Disable {
        /// Email address.
        email: String,
    },
    /// Enable a disabled user.
    Enable {
        /// Email address.
        email: String,
    },
    /// Print a single-use link that signs the user in (for support, or a first sign-in).
    SignInLink {
        /// Email address.
        email: String,
        /// How long the link works.
        #[arg(long, default_value = "15m")]
        ttl: String,
        /// Where to go after signing in: a relative path or an allowed origin.
        #[arg(long, default_value = "/")]
        redirect: String,
    },
}

/// `portcullis api-key …`
#[derive(Debug, Subcommand)]
pub(crate) enum ApiKeyCommand {
    /// Create a key for a user and print it (it is shown only this once).
    Create {
        /// The owner's email.
        email: String,
        /// A name to recognise the key by.
        #[arg(long)]
        name: String,
        /// Scopes, comma-separated (none: the key passes only routes without `scopes`).
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Days until the key expires (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
        /// The organization the key acts in (`X-Auth-Org-Id`); the user must be a member.
        #[arg(long)]
        org: Option<uuid::Uuid>,
    },
    /// List a user's keys.
    List {
        /// The owner's email.
        email: String,
    },
    /// Revoke a key by id.
    Revoke {
        /// The owner's email.
        email: String,
        /// Key id (from `list`).
        id: uuid::Uuid,
    },
}

/// `portcullis keys …`
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Make a new signing key current. Tokens signed by the previous key stay valid until they
    /// expire; running servers switch within a minute.
    Rotate,
    /// List the signing keys.
    List,
}

/// `portcullis migrate`: the pending migrations, applied through the direct URL, waiting for
/// the database like a start does.
pub(crate) async fn migrate(config: &Config) -> Result<String, String> {
    let storage = &config.storage;
    let deadline = std::time::Instant::now() + storage.startup_wait;
    loop {
        let attempt = async {
            let db = Database::open(&storage.direct_url, 1).await?;
            let version = db.migrate().await;
            db.close().await;
            version
        };
        match attempt.await {
            Ok(version) => return Ok(format!("the database schema is at version {version}")),
            Err(StoreError::Unavailable(error)) if std::time::Instant::now() < deadline => {
                tracing::warn!(%error, "the database does not answer yet; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => return Err(error.to_string()),
        }
    }
}

/// `portcullis healthcheck`: GET `/healthz` on the configured admin listener (its loopback
/// address when it listens on every interface), within two seconds.
pub(crate) fn healthcheck(config: &Config) -> ExitCode {
    use std::io::{Read, Write};
    let Some(mut addr) = config.server.admin_listen else {
        eprintln!("portcullis: the admin listener is off (server.admin_listen)");
        return ExitCode::from(2);
    };
    if addr.ip().is_unspecified() {
        let loopback: std::net::IpAddr = match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        };
        addr.set_ip(loopback);
    }
    let timeout = Duration::from_secs(2);
    let answer = std::net::TcpStream::connect_timeout(&addr, timeout).and_then(|mut stream| {
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head)?;
        Ok(head)
    });
    match answer {
        Ok(head) if head.starts_with(b"HTTP/1.") && head.ends_with(b" 200") => ExitCode::SUCCESS,
        Ok(head) => {
            eprintln!("portcullis: {addr}/healthz answered {}", String::from_utf8_lossy(&head));
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("portcullis: {addr}/healthz: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Sets up logging: `RUST_LOG` (default `info`) in the configured format.
pub(crate) fn init_logging(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// `portcullis check-config`.
pub(crate) fn check_config(config: &Config) -> ExitCode {
    match load::render_masked(&config.raw) {
        Ok(text) => {
            println!("{text}");
            for feature in &config.not_yet_available {
                eprintln!("warning: configured but not available in this version: {feature}");
            }
            eprintln!("configuration is valid");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("portcullis: cannot render the configuration: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `portcullis serve`: runs until SIGTERM or SIGINT, then drains and exits 0.
pub(crate) async fn serve(config: Config) -> ExitCode {
    let running = match App::start(config).await {
        Ok(running) => running,
        Err(error) => {
            tracing::error!("cannot start: {error}");
            eprintln!("portcullis: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    let admin = running
        .admin_addr()
        .map(|addr| format!(" (admin: http://{addr}/metrics)"))
        .unwrap_or_default();
    eprintln!("Portcullis is up: open {}/ in a browser{admin}", running.public_url());
    wait_for_signal().await;
    tracing::info!("shutting down: no new connections, finishing requests in flight");
    running.stop().await;
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Prints a command's result: the message on stdout and exit 0, or the error on stderr and 1.
pub(crate) fn report(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("portcullis: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `portcullis user …`.
pub(crate) async fn run_user(config: Config, command: UserCommand) -> Result<String, String> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let stores =
        Stores::open(&config, Arc::clone(&clock)).await.map_err(|error| error.to_string())?;
    let find = |email: &str| {
        let stores = stores.clone();
        let email = Email::parse(email).map_err(|error| error.to_string());
        async move {
            let email = email?;
            match stores.users.find_by_email(&email).await.map_err(|error| error.to_string())? {
                Some((user, _)) => Ok(user),
                None => Err(format!("no user with email {email}")),
            }
        }
    };
    let result = async {
        match command {
            UserCommand::Create { email, name, roles, password_stdin } => {
                let email = Email::parse(&email).map_err(|error| error.to_string())?;
                check_roles(&roles)?;
                let password_hash = if password_stdin {
                    let mut line = String::new();
                    std::io::stdin()
                        .lock()
                        .read_line(&mut line)
                        .map_err(|error| error.to_string())?;
                    let password = line.trim_end_matches(['\r', '\n']).to_owned();
                    password_policy::check(&password, &email, name.as_deref())
                        .map_err(|weak| weak.to_string())?;
                    let hasher = PasswordHasherPool::new(1).map_err(|error| error.to_string())?;
                    Some(hasher.hash(password).await.map_err(|error| error.to_string())?)
                } else {
                    None
                };
                let new = NewUser { email, name, password_hash, roles };
                let user = stores
                    .users
                    .create(new, clock.now())
                    .await
                    .map_err(|error| error.to_string())?;
                Ok(format!("created user {} <{}>", user.id, user.email))
            }
            UserCommand::SetRoles { email, roles } => {
                check_roles(&roles)?;
                let user = find(&email).await?;
                stores
                    .users
                    .set_roles(user.id, &roles, clock.now())
                    .await
                    .map_err(|error| error.to_string())?;
                // Running servers drop the user's cached identities (at once with the
                // revocation fan-out, else within the cache TTL) and see the new roles.
                stores.cache.evict_user(user.id);
                Ok(format!("roles of {} set to [{}]", user.email, roles.join(", ")))
            }
            UserCommand::Disable { email } => {
                let user = find(&email).await?;
                stores
                    .users
                    .set_disabled(user.id, true, clock.now())
                    .await
                    .map_err(|error| error.to_string())?;
                let ended =
                    stores.sessions.end_all(user.id).await.map_err(|error| error.to_string())?;
                let revoked = stores
                    .families
                    .revoke_user(user.id, clock.now())
                    .await
                    .map_err(|error| error.to_string())?;
                Ok(format!(
                    "disabled {} and ended {ended} session(s) and {} token sign-in(s)",
                    user.email,
                    revoked.len()
                ))
            }
            UserCommand::SignInLink { email, ttl, redirect } => {
                if config.storage.ephemeral == EphemeralKind::Memory {
                    return Err("sign-in links need a shared store: storage.ephemeral = \
                                \"database\" or \"redis\""
                        .into());
                }
                let ttl =
                    humantime::parse_duration(&ttl).map_err(|error| format!("--ttl: {error}"))?;
                if ttl.is_zero() || ttl > Duration::from_secs(7 * 86_400) {
                    return Err("--ttl: between 1s and 7d".into());
                }
                let redirect = config
                    .auth
                    .redirects
                    .check(&redirect)
                    .map_err(|reason| format!("--redirect: {reason}"))?;
                let base = expected_public_url(&config)?;
                let user = find(&email).await?;
                if user.disabled_at.is_some() {
                    return Err(format!("{} is disabled", user.email));
                }
                let link = OneTimeLink { user_id: user.id, redirect: redirect.as_str().to_owned() };
                let token = OneTimeLinks::new(Arc::clone(&stores.ephemeral))
                    .mint(&link, ttl)
                    .await
                    .map_err(|error| error.to_string())?;
                Ok(format!(
                    "{}{}/one-time?token={token}\n(single use; works for {})",
                    base.as_str().trim_end_matches('/'),
                    config.auth.base_path,
                    humantime::format_duration(ttl)
                ))
            }
            UserCommand::Enable { email } => {
                let user = find(&email).await?;
                stores
                    .users
                    .set_disabled(user.id, false, clock.now())
                    .await
                    .map_err(|error| error.to_string())?;
                Ok(format!("enabled {}", user.email))
            }
        }
    }
    .await;
    // Revocations made here must reach the running servers before the process exits.
    stores.close().await;
    result
}

fn check_roles(roles: &[String]) -> Result<(), String> {
    roles.iter().try_for_each(|role| validate_role(role))
}

/// `portcullis api-key …`.
pub(crate) async fn run_api_key(config: Config, command: ApiKeyCommand) -> Result<String, String> {
    let stores = Stores::open(&config, Arc::new(SystemClock)).await.map_err(|e| e.to_string())?;
    let owner = |email: String| {
        let stores = stores.clone();
        async move {
            let email = Email::parse(&email).map_err(|error| error.to_string())?;
            match stores.users.find_by_email(&email).await.map_err(|error| error.to_string())? {
                Some((user, _)) => Ok(user),
                None => Err(format!("no user with email {email}")),
            }
        }
    };
    let result = async {
        match command {
            ApiKeyCommand::Create { email, name, scopes, expires_in_days, org } => {
                let user = owner(email).await?;
                let scopes = Scopes::parse_list(scopes.iter().map(String::as_str))?;
                if let Some(org) = org {
                    let orgs = portcullis::store::orgs::OrgStore::new(stores.db.clone());
                    let member = orgs.membership(org, user.id).await.map_err(|e| e.to_string())?;
                    member.ok_or_else(|| format!("the user is not a member of {org}"))?;
                }
                let request = KeyRequest { name: &name, scopes, expires_in_days, org_id: org };
                let created = stores
                    .api_keys
                    .create(user.id, request)
                    .await
                    .map_err(|error| error.to_string())?;
                Ok(format!(
                    "{}\n(id {}; store the key now, it is not shown again)",
                    created.secret, created.record.id
                ))
            }
            ApiKeyCommand::List { email } => {
                let user = owner(email).await?;
                let keys =
                    stores.api_keys.list(user.id).await.map_err(|error| error.to_string())?;
                let lines: Vec<String> = keys
                    .iter()
                    .map(|key| {
                        format!(
                            "{}  {}…  {}  scopes=[{}]  created={}  last_used={}  expires={}",
                            key.id,
                            key.prefix,
                            key.name,
                            key.scopes.to_claim().unwrap_or_default().replace(' ', ","),
                            key.created_at.to_rfc3339(),
                            key.last_used_at.map_or_else(|| "never".into(), |at| at.to_rfc3339()),
                            key.expires_at.map_or_else(|| "never".into(), |at| at.to_rfc3339()),
                        )
                    })
                    .collect();
                Ok(if lines.is_empty() { "no API keys".into() } else { lines.join("\n") })
            }
            ApiKeyCommand::Revoke { email, id } => {
                let user = owner(email).await?;
                if stores.api_keys.revoke(user.id, id).await.map_err(|error| error.to_string())? {
                    Ok(format!(
                        "revoked {id}; servers drop it from their caches within the cache TTL"
                    ))
                } else {
                    Err(format!("{} has no live key {id}", user.email))
                }
            }
        }
    }
    .await;
    // Revocations made here must reach the running servers before the process exits.
    stores.close().await;
    result
}

/// `portcullis keys …`.
pub(crate) async fn run_keys(config: Config, command: KeysCommand) -> Result<String, String> {
    let stores = Stores::open(&config, Arc::new(SystemClock)).await.map_err(|e| e.to_string())?;
    let result = async {
        match command {
            KeysCommand::Rotate => {
                let kid = KeyRing::rotate(
                    &stores.db,
                    config.tokens.algorithm,
                    SystemClock.now(),
                    key_publish_time(&config),
                )
                .await
                .map_err(|error| error.to_string())?;
                Ok(format!("new signing key {kid}; previous keys verify until their tokens expire"))
            }
            KeysCommand::List => {
                let keys = KeyRing::list(&stores.db).await.map_err(|error| error.to_string())?;
                let lines: Vec<String> = keys
                    .iter()
                    .map(|(kid, algorithm, created, retired)| {
                        let state = retired.map_or_else(
                            || "current".into(),
                            |at| format!("retired {}", at.to_rfc3339()),
                        );
                        format!("{kid}  {algorithm}  created {}  {state}", created.to_rfc3339())
                    })
                    .collect();
                Ok(if lines.is_empty() {
                    "no signing keys yet (made on first start)".into()
                } else {
                    lines.join("\n")
                })
            }
        }
    }
    .await;
    // Revocations made here must reach the running servers before the process exits.
    stores.close().await;
    result
}
