//! The `portcullis` command: serve (the default), check the configuration, and administer
//! users, API keys and signing keys.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: per-thread free lists suit the data plane's threads, which allocate and free each
/// request's buffers on the thread that serves it (measured in `benches/RESULTS.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    User(cli::UserCommand),
    /// Manage a user's API keys.
    #[command(subcommand)]
    ApiKey(cli::ApiKeyCommand),
    /// Manage the keys that sign access tokens and assertions.
    #[command(subcommand)]
    Keys(cli::KeysCommand),
    /// Print the OpenAPI document of the auth API this configuration serves.
    Openapi,
    /// Apply the database migrations this version needs, through `storage.database_direct_url`
    /// when set, and exit (for a release job, with `storage.migrate_on_start = false`).
    Migrate,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match portcullis::config::Config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("portcullis: {error}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Some(Command::CheckConfig) => return cli::check_config(&config),
        Some(Command::Healthcheck) => return cli::healthcheck(&config),
        Some(Command::Openapi) => return cli::openapi(&config),
        _ => {}
    }
    cli::init_logging(config.log);
    // Startup invariant: building the runtime only fails when the OS refuses threads.
    #[allow(clippy::expect_used)]
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the async runtime");
    runtime.block_on(async move {
        match cli.command {
            None | Some(Command::Serve) => cli::serve(config).await,
            Some(Command::User(command)) => cli::report(cli::run_user(config, command).await),
            Some(Command::ApiKey(command)) => cli::report(cli::run_api_key(config, command).await),
            Some(Command::Keys(command)) => cli::report(cli::run_keys(config, command).await),
            Some(Command::Migrate) => cli::report(cli::migrate(&config).await),
            Some(Command::CheckConfig | Command::Healthcheck | Command::Openapi) => {
                unreachable!("handled above")
            }
        }
    })
}
