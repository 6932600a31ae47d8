//! What runs beside the listeners: the minute sweep of expired state, and the drain at
//! shutdown.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::listeners::Serving;
use crate::auth::state::AppState;
use crate::store::sql::Backend;

/// How often expired ephemeral entries and idle rate-limit state are dropped.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Drops expired ephemeral entries, stale cached identities and idle rate-limit state every
/// minute.
pub(super) async fn sweep(state: AppState, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => return,
        }
        // Every replica: in memory the store is this process's own, in Redis this does
        // nothing, in the database it is three deletes by indexed expiry.
        if let Err(error) = state.services.ephemeral.sweep().await {
            tracing::warn!(%error, "ephemeral store sweep failed");
        }
        match state.services.db.claim_sweep(state.clock.now(), SWEEP_INTERVAL).await {
            Ok(true) => sweep_shared(&state).await,
            Ok(false) => tracing::debug!("another replica swept the shared tables lately"),
            Err(error) => tracing::warn!(%error, "cannot claim the sweep of the shared tables"),
        }
        // Keys rotated by the CLI or made by another replica start signing here.
        if let Err(error) = state.tokens.keys().reload().await {
            tracing::warn!(%error, "cannot reload signing keys");
        }
        if let Err(error) = state.services.api_keys.recheck_untagged().await {
            tracing::warn!(%error, "cannot check for untagged API keys");
        }
        state.ip_limiter.shrink();
        state.gateway.shrink_limits();
        state.services.sessions.sweep_cache();
    }
}

/// Deletes what expired from the token, invite and revocation-log tables (one replica per
/// interval).
async fn sweep_shared(state: &AppState) {
    if let Err(error) = state.tokens.sweep().await {
        tracing::warn!(%error, "refresh token sweep failed");
    }
    if let Err(error) = state.services.orgs.sweep(state.clock.now()).await {
        tracing::warn!(%error, "invite sweep failed");
    }
    if state.services.db.backend() == Backend::Postgres
        && let Err(error) = crate::store::revocations::sweep(&state.services.db).await
    {
        tracing::warn!(%error, "revocation log sweep failed");
    }
}

/// After shutdown is requested: wait for the accept loops to close their listeners, then for
/// open connections to finish (at most `server.shutdown_timeout`), then close the database.
pub(super) async fn drain(serving: Serving, state: AppState, shutdown: CancellationToken) {
    let Serving { mut accept_loops, mut workers, connections } = serving;
    shutdown.cancelled().await;
    while accept_loops.join_next().await.is_some() {}
    if let Some(workers) = &mut workers {
        workers.stopped_accepting().await;
    }
    // Every connection saw the same token and is shutting down gracefully.
    connections.close();
    let timeout = state.config.server.shutdown_timeout;
    if tokio::time::timeout(timeout, connections.wait()).await.is_err() {
        tracing::warn!(?timeout, "shutdown timeout passed with requests still in flight");
    }
    // The services first: a connection a worker opened is driven by that worker's runtime.
    state.services.close().await;
    if let Some(workers) = workers {
        workers.release();
    }
    tracing::info!("portcullis stopped");
}
