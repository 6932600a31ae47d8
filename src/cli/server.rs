//! The server's own commands: serve, check the configuration, the container health check,
//! the migrations, and logging.

use std::process::ExitCode;
use std::time::Duration;

use crate::app::App;
use crate::config::{Config, LogFormat, load};
use crate::store::StoreError;
use crate::store::sql::Database;
use tracing_subscriber::EnvFilter;

use super::CliError;

/// `portcullis migrate`: the pending migrations, applied through the direct URL, waiting for
/// the database like a start does.
pub(crate) async fn migrate(config: &Config) -> Result<String, CliError> {
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
            Err(error) => return Err(error.into()),
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

/// `portcullis openapi`: the document, indented, on stdout.
pub(crate) fn openapi(config: &Config) -> ExitCode {
    let document = crate::auth::api_document(config);
    match serde_json::from_slice::<serde_json::Value>(&document)
        .and_then(|value| serde_json::to_string_pretty(&value))
    {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("portcullis: cannot render the OpenAPI document: {error}");
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
