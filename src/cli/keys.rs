//! `portcullis keys …`: rotate and list the keys that sign access tokens and assertions.

use crate::config::Config;
use crate::identity::key_ring::KeyRing;
use clap::Subcommand;

use super::{CliError, with_services};

/// `portcullis keys …`
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Make a new signing key current. Tokens signed by the previous key stay valid until they
    /// expire; running servers switch within a minute.
    Rotate,
    /// List the signing keys.
    List,
}

/// `portcullis keys …`.
pub(crate) async fn run_keys(config: Config, command: KeysCommand) -> Result<String, CliError> {
    let config = &config;
    with_services(config, |services, clock| async move {
        match command {
            KeysCommand::Rotate => {
                let tokens = &config.tokens;
                let kid = KeyRing::rotate(
                    &services.db,
                    tokens.algorithm,
                    clock.now(),
                    tokens.key_publish_time(),
                )
                .await?;
                Ok(format!("new signing key {kid}; previous keys verify until their tokens expire"))
            }
            KeysCommand::List => {
                let keys = KeyRing::list(&services.db).await?;
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
    })
    .await
}
