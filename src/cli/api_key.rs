//! `portcullis api-key …`: make, list and revoke a user's API keys.

use crate::config::Config;
use crate::identity::Scopes;
use crate::identity::api_key::KeyRequest;
use crate::store::api_keys::ApiKeyRecord;
use crate::store::orgs::OrgStore;
use clap::Subcommand;

use super::{CliError, find_user, with_services};

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

/// `portcullis api-key …`.
pub(crate) async fn run_api_key(
    config: Config,
    command: ApiKeyCommand,
) -> Result<String, CliError> {
    with_services(&config, |services, _| async move {
        match command {
            ApiKeyCommand::Create { email, name, scopes, expires_in_days, org } => {
                let user = find_user(&services, &email).await?;
                let scopes =
                    Scopes::parse_list(scopes.iter().map(String::as_str)).map_err(|error| {
                        CliError::Argument { arg: "--scopes", reason: error.to_string() }
                    })?;
                if let Some(org) = org {
                    let member =
                        OrgStore::new(services.db.clone()).membership(org, user.id).await?;
                    if member.is_none() {
                        return Err(CliError::Refused(format!(
                            "the user is not a member of {org}"
                        )));
                    }
                }
                let request = KeyRequest { name: &name, scopes, expires_in_days, org_id: org };
                let created = services.api_keys.create(user.id, request).await?;
                Ok(format!(
                    "{}\n(id {}; store the key now, it is not shown again)",
                    created.secret, created.record.id
                ))
            }
            ApiKeyCommand::List { email } => {
                let user = find_user(&services, &email).await?;
                let keys = services.api_keys.list(user.id).await?;
                let lines: Vec<String> = keys.iter().map(line).collect();
                Ok(if lines.is_empty() { "no API keys".into() } else { lines.join("\n") })
            }
            ApiKeyCommand::Revoke { email, id } => {
                let user = find_user(&services, &email).await?;
                if services.api_keys.revoke(user.id, id).await? {
                    Ok(format!(
                        "revoked {id}; servers drop it from their caches within the cache TTL"
                    ))
                } else {
                    Err(CliError::Refused(format!("{} has no live key {id}", user.email)))
                }
            }
        }
    })
    .await
}

/// One key of `list`: never the secret, only its prefix.
fn line(key: &ApiKeyRecord) -> String {
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
}
