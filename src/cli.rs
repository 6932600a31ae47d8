//! The command implementations behind `main.rs`.

use std::io::BufRead;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;
use portcullis::app::{App, Stores};
use portcullis::auth::password_policy;
use portcullis::clock::{Clock, SystemClock};
use portcullis::config::{Config, LogFormat, load};
use portcullis::crypto::password::PasswordHasherPool;
use portcullis::identity::{Email, validate_role};
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

/// `portcullis user …`.
pub(crate) async fn user(config: Config, command: UserCommand) -> ExitCode {
    match run_user(config, command).await {
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

async fn run_user(config: Config, command: UserCommand) -> Result<String, String> {
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
    match command {
        UserCommand::Create { email, name, roles, password_stdin } => {
            let email = Email::parse(&email).map_err(|error| error.to_string())?;
            check_roles(&roles)?;
            let password_hash = if password_stdin {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line).map_err(|error| error.to_string())?;
                let password = line.trim_end_matches(['\r', '\n']).to_owned();
                password_policy::check(&password, &email, name.as_deref())
                    .map_err(|weak| weak.to_string())?;
                let hasher = PasswordHasherPool::new(1).map_err(|error| error.to_string())?;
                Some(hasher.hash(password).await.map_err(|error| error.to_string())?)
            } else {
                None
            };
            let new = NewUser { email, name, password_hash, roles };
            let user =
                stores.users.create(new, clock.now()).await.map_err(|error| error.to_string())?;
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
            Ok(format!("disabled {} and ended {ended} session(s)", user.email))
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

fn check_roles(roles: &[String]) -> Result<(), String> {
    roles.iter().try_for_each(|role| validate_role(role))
}
