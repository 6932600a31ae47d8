//! The `portcullis` command ([`run`]): serve (the default), check the configuration, and
//! administer users, API keys and signing keys, a file per command family. Each opens the same
//! [`Services`] the server runs on, so a command runs the server's own flow (disable ends
//! sign-ins exactly as the API does), and closes them before exiting so that the revocations
//! it made reach running servers.

mod api_key;
mod keys;
mod server;
mod user;

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::app::UnknownPublicUrl;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::identity::Email;
use crate::identity::accounts::AccountError;
use crate::identity::api_key::CreateKeyError;
use crate::model::email::EmailError;
use crate::services::{Services, ServicesError};
use crate::store::StoreError;

pub(crate) use self::api_key::{ApiKeyCommand, run_api_key};
pub(crate) use self::keys::{KeysCommand, run_keys};
pub(crate) use self::server::{check_config, healthcheck, init_logging, migrate, openapi, serve};
pub(crate) use self::user::{UserCommand, run_user};

/// Portcullis, an authentication sidecar.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML). Without one, the embedded defaults are used.
    #[arg(long, short, global = true, env = "PORTCULLIS_CONFIG")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Serve,
    /// Validate the configuration and print it with secrets masked.
    CheckConfig,
    /// Exit 0 if the running server's admin listener answers `/healthz` (a container
    /// HEALTHCHECK that needs no shell or curl).
    Healthcheck,
    /// Manage users in the configured database.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage a user's API keys.
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
    /// Manage the keys that sign access tokens and assertions.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print the OpenAPI document of the auth API this configuration serves.
    Openapi,
    /// Apply the database migrations this version needs, through `storage.database_direct_url`
    /// when set, and exit (for a release job, with `storage.migrate_on_start = false`).
    Migrate,
}

/// Runs the `portcullis` command with the process's arguments and environment; the exit
/// code says how it went (2: the configuration cannot be read).
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("portcullis: {error}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Some(Command::CheckConfig) => return check_config(&config),
        Some(Command::Healthcheck) => return healthcheck(&config),
        Some(Command::Openapi) => return openapi(&config),
        _ => {}
    }
    init_logging(config.log);
    // Startup invariant: building the runtime only fails when the OS refuses threads.
    #[allow(clippy::expect_used)]
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the async runtime");
    runtime.block_on(async move {
        match cli.command {
            None | Some(Command::Serve) => serve(config).await,
            Some(Command::User(command)) => report(run_user(config, command).await),
            Some(Command::ApiKey(command)) => report(run_api_key(config, command).await),
            Some(Command::Keys(command)) => report(run_keys(config, command).await),
            Some(Command::Migrate) => report(migrate(&config).await),
            Some(Command::CheckConfig | Command::Healthcheck | Command::Openapi) => {
                unreachable!("handled above")
            }
        }
    })
}

/// Why an admin command failed; printed after `portcullis: `.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The stores cannot be opened.
    #[error(transparent)]
    Services(#[from] ServicesError),
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An account flow refused.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// An API key cannot be made.
    #[error(transparent)]
    ApiKey(#[from] CreateKeyError),
    /// An email argument is not an address.
    #[error("email: {0}")]
    Email(#[from] EmailError),
    /// No user has this email.
    #[error("no user with email {0}")]
    NoSuchUser(Email),
    /// An argument is unusable.
    #[error("{arg}: {reason}")]
    Argument {
        /// The argument, as typed on the command line.
        arg: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The command cannot run against this configuration or this account.
    #[error("{0}")]
    Refused(String),
    /// The sign-in link's base URL cannot be known before the server starts.
    #[error(transparent)]
    PublicUrl(#[from] UnknownPublicUrl),
    /// Standard input cannot be read.
    #[error("cannot read standard input: {0}")]
    Stdin(#[source] std::io::Error),
}

/// Prints a command's result: the message on stdout and exit 0, or the error on stderr and 1.
pub(crate) fn report(result: Result<String, CliError>) -> ExitCode {
    match result {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("portcullis: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `command` on the services opened from `config`, then closes them: revocations the
/// command made are published before the process exits.
async fn with_services<F, Fut>(config: &Config, command: F) -> Result<String, CliError>
where
    F: FnOnce(Services, Arc<dyn Clock>) -> Fut,
    Fut: Future<Output = Result<String, CliError>>,
{
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let services = Services::open(config, Arc::clone(&clock)).await?;
    let result = command(services.clone(), clock).await;
    services.close().await;
    result
}

/// The user with `email`.
async fn find_user(services: &Services, email: &str) -> Result<crate::identity::User, CliError> {
    let email = Email::parse(email)?;
    match services.accounts.find_by_email(&email).await {
        Ok(user) => Ok(user),
        Err(AccountError::NotFound) => Err(CliError::NoSuchUser(email)),
        Err(other) => Err(other.into()),
    }
}
