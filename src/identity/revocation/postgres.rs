//! Reading the revocation log from its PostgreSQL table, woken by `NOTIFY`.

use std::collections::{HashSet, VecDeque};
use std::time::Instant;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio_util::sync::CancellationToken;

use super::{Backoff, HEARTBEAT, HEARTBEAT_TIMEOUT, READER_NAME, apply};
use crate::identity::cache::IdentityCache;
use crate::store::revocations;

/// Ids applied within the lookback of the PostgreSQL log (it reads recent entries again).
#[derive(Default)]
pub(super) struct Applied {
    ids: HashSet<i64>,
    order: VecDeque<(Instant, i64)>,
}

impl Applied {
    /// Whether `id` is new (and now remembered).
    pub(super) fn first_time(&mut self, id: i64) -> bool {
        let now = Instant::now();
        while let Some(&(at, old)) = self.order.front() {
            if now.duration_since(at) <= revocations::LOOKBACK * 2 {
                break;
            }
            self.order.pop_front();
            self.ids.remove(&old);
        }
        let new = self.ids.insert(id);
        if new {
            self.order.push_back((now, id));
        }
        new
    }
}

pub(super) async fn read_postgres(
    url: String,
    channel: String,
    cache: IdentityCache,
    stop: CancellationToken,
) {
    let mut position: Option<i64> = None;
    let mut last_read = Instant::now();
    let mut applied = Applied::default();
    let mut backoff = Backoff::default();
    loop {
        let connected = async {
            // Named, so that `pg_stat_activity` shows what the connection is.
            let options = url.parse::<PgConnectOptions>()?.application_name(READER_NAME);
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .max_lifetime(None)
                .idle_timeout(None)
                .connect_with(options)
                .await?;
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(&channel).await?;
            let end = revocations::end(&mut listener).await?;
            Ok::<_, sqlx::Error>((listener, end))
        };
        let connected = tokio::select! {
            result = connected => result,
            () = stop.cancelled() => return,
        };
        match connected {
            Ok((mut listener, end)) => {
                // Away longer than the log keeps entries, some may be gone; a log that ends
                // before our position was restored or failed over, and may lack some.
                let complete = position.is_some_and(|at| end >= at)
                    && last_read.elapsed() < revocations::RETENTION - revocations::LOOKBACK;
                if !complete {
                    position = Some(end);
                }
                backoff.connected(&cache, "PostgreSQL", complete);
                // What was appended while we were away rang no bell here: read it at once.
                let mut catch_up = true;
                loop {
                    // The doorbell, or the heartbeat: either way, read the log. The bell reads
                    // what is new (once for every ring already queued); the heartbeat (and the
                    // catch-up) also reads the last seconds again, for entries that became
                    // visible after later ones (commit order).
                    let lookback = if std::mem::take(&mut catch_up) {
                        true
                    } else {
                        let rung = tokio::select! {
                            rung = tokio::time::timeout(HEARTBEAT, listener.try_recv()) => rung,
                            () = stop.cancelled() => return,
                        };
                        match rung {
                            Ok(Ok(Some(_))) => {
                                while listener.next_buffered().is_some() {}
                                false
                            }
                            Ok(Ok(None) | Err(_)) => break,
                            Err(_heartbeat) => true,
                        }
                    };
                    let from = position.unwrap_or(0);
                    let read = tokio::time::timeout(
                        HEARTBEAT_TIMEOUT,
                        revocations::after(&mut listener, from, lookback),
                    )
                    .await;
                    match read {
                        Ok(Ok(entries)) => {
                            last_read = Instant::now();
                            for entry in entries {
                                if applied.first_time(entry.id) {
                                    apply(&cache, &entry.revocation);
                                }
                                position = Some(position.map_or(entry.id, |at| at.max(entry.id)));
                            }
                        }
                        Ok(Err(_)) | Err(_) => break,
                    }
                }
                tracing::warn!("lost the PostgreSQL revocation log; reconnecting");
            }
            Err(error) => tracing::warn!(%error, "cannot read the PostgreSQL revocation log"),
        }
        if backoff.wait(&stop).await.is_err() {
            return;
        }
    }
}
