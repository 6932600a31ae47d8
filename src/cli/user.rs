//! `portcullis user …`: make an account, set its roles, disable or enable it, and print a
//! single-use sign-in link, through the same account flows as the API.

use std::io::BufRead;

use crate::app::expected_public_url;
use crate::config::{Config, EphemeralKind};
use crate::identity::Email;
use crate::identity::accounts::NewAccount;
use crate::identity::one_time::{self, OneTimeLink};
use clap::Subcommand;

use super::{CliError, find_user, with_services};

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

/// `portcullis user …`.
pub(crate) async fn run_user(config: Config, command: UserCommand) -> Result<String, CliError> {
    let config = &config;
    with_services(config, |services, _| async move {
        let accounts = &services.accounts;
        match command {
            UserCommand::Create { email, name, roles, password_stdin } => {
                let email = Email::parse(&email)?;
                let password = if password_stdin { Some(read_password()?) } else { None };
                let user = accounts.create(NewAccount { email, name, password, roles }).await?;
                Ok(format!("created user {} <{}>", user.id, user.email))
            }
            UserCommand::SetRoles { email, roles } => {
                let user = find_user(&services, &email).await?;
                // Running servers drop the user's cached identities (at once with the
                // revocation fan-out, else within the cache TTL) and see the new roles.
                accounts.set_roles(user.id, &roles).await?;
                Ok(format!("roles of {} set to [{}]", user.email, roles.join(", ")))
            }
            UserCommand::Disable { email } => {
                let user = find_user(&services, &email).await?;
                let ended = accounts.disable(user.id).await?;
                Ok(format!(
                    "disabled {} and ended {} session(s) and {} token sign-in(s)",
                    user.email, ended.sessions, ended.token_families
                ))
            }
            UserCommand::Enable { email } => {
                let user = find_user(&services, &email).await?;
                accounts.enable(user.id).await?;
                Ok(format!("enabled {}", user.email))
            }
            UserCommand::SignInLink { email, ttl, redirect } => {
                if config.storage.ephemeral == EphemeralKind::Memory {
                    return Err(CliError::Refused(
                        "sign-in links need a shared store: storage.ephemeral = \"database\" or \
                         \"redis\""
                            .into(),
                    ));
                }
                let ttl = humantime::parse_duration(&ttl).map_err(|error| CliError::Argument {
                    arg: "--ttl",
                    reason: error.to_string(),
                })?;
                if ttl.is_zero() || ttl > one_time::MAX_TTL {
                    return Err(CliError::Argument {
                        arg: "--ttl",
                        reason: "between 1s and 7d".into(),
                    });
                }
                let redirect = config.auth.redirects.check(&redirect).map_err(|reason| {
                    CliError::Argument { arg: "--redirect", reason: reason.into() }
                })?;
                let base = expected_public_url(config)?;
                let user = find_user(&services, &email).await?;
                if user.disabled_at.is_some() {
                    return Err(CliError::Refused(format!("{} is disabled", user.email)));
                }
                let link = OneTimeLink { user_id: user.id, redirect: redirect.as_str().to_owned() };
                let token =
                    one_time::links(services.ephemeral.clone()).mint_for(&link, ttl).await?;
                Ok(format!(
                    "{}{}/one-time?token={token}\n(single use; works for {})",
                    base.as_str().trim_end_matches('/'),
                    config.auth.base_path,
                    humantime::format_duration(ttl)
                ))
            }
        }
    })
    .await
}

/// The first line of standard input, without its line ending.
fn read_password() -> Result<String, CliError> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(CliError::Stdin)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
