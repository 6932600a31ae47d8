//! The admin commands behind `main.rs`, a file per command family. Each opens the same
//! [`Services`] the server runs on, so a command runs the server's own flow (disable ends
//! sign-ins exactly as the API does), and closes them before exiting so that the revocations
//! it made reach running servers.

mod api_key;
mod keys;
mod server;
mod user;

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;

use portcullis::app::UnknownPublicUrl;
use portcullis::clock::{Clock, SystemClock};
use portcullis::config::Config;
use portcullis::identity::Email;
use portcullis::identity::accounts::AccountError;
use portcullis::identity::api_key::CreateKeyError;
use portcullis::model::email::EmailError;
use portcullis::services::{Services, ServicesError};
use portcullis::store::StoreError;

pub(crate) use self::api_key::{ApiKeyCommand, run_api_key};
pub(crate) use self::keys::{KeysCommand, run_keys};
pub(crate) use self::server::{check_config, healthcheck, init_logging, migrate, openapi, serve};
pub(crate) use self::user::{UserCommand, run_user};

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
async fn find_user(
    services: &Services,
    email: &str,
) -> Result<portcullis::identity::User, CliError> {
    let email = Email::parse(email)?;
    match services.accounts.find_by_email(&email).await {
        Ok(user) => Ok(user),
        Err(AccountError::NotFound) => Err(CliError::NoSuchUser(email)),
        Err(other) => Err(other.into()),
    }
}
