//! A connection's activity, kept by the accept loop and carried by its requests' [`Peer`]: the
//! requests it has open and when the last one finished (for the idle timeout), its slot among
//! `server.max_connections`, and the tasks it outlives itself with (upgraded connections).
//!
//! [`Peer`]: super::peer::Peer

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

/// What a connection has open: requests whose responses are not finished, and when the last
/// one finished (for the idle timeout); and its slot among `server.max_connections`, held
/// until the connection and anything it was upgraded into have ended.
#[derive(Debug)]
pub(crate) struct Activity {
    open: AtomicUsize,
    started: Instant,
    /// Milliseconds after `started` when the last open request finished.
    last_done_ms: AtomicU64,
    _slot: Option<OwnedSemaphorePermit>,
    tasks: TaskTracker,
}

impl Activity {
    /// A connection that starts now, with nothing open, holding `slot`; tasks it outlives
    /// itself with are tracked by `tasks`.
    pub(crate) fn new(slot: Option<OwnedSemaphorePermit>, tasks: TaskTracker) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            started: Instant::now(),
            last_done_ms: AtomicU64::new(0),
            _slot: slot,
            tasks,
        })
    }

    /// Runs `task` on the connection's behalf: the slot stays taken until it ends.
    pub(crate) fn spawn(self: &Arc<Self>, task: impl Future<Output = ()> + Send + 'static) {
        let hold = Arc::clone(self);
        self.tasks.spawn(async move {
            task.await;
            drop(hold);
        });
    }

    /// Whether no request is open.
    pub(crate) fn is_idle(&self) -> bool {
        self.open.load(Ordering::Acquire) == 0
    }

    /// When the last request finished, in milliseconds since the connection started.
    pub(crate) fn last_done_ms(&self) -> u64 {
        self.last_done_ms.load(Ordering::Relaxed)
    }

    /// Notes a request; it stays open until the guard (moved into its response body) drops.
    pub(crate) fn open(self: &Arc<Self>) -> OpenRequest {
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenRequest(Arc::clone(self))
    }

    /// Waits until the connection has had no open request for `timeout`.
    pub(crate) async fn idle_for(&self, timeout: Duration) {
        loop {
            let last_done =
                self.started + Duration::from_millis(self.last_done_ms.load(Ordering::Relaxed));
            let deadline = last_done + timeout;
            if self.open.load(Ordering::Relaxed) == 0 && Instant::now() >= deadline {
                return;
            }
            // Busy or recently busy: look again when the timeout could next have run out.
            let next = if self.open.load(Ordering::Relaxed) == 0 {
                deadline
            } else {
                Instant::now() + timeout
            };
            tokio::time::sleep_until(next).await;
        }
    }
}

/// A request counted open on its connection until this drops.
#[derive(Debug)]
pub(crate) struct OpenRequest(Arc<Activity>);

impl Drop for OpenRequest {
    fn drop(&mut self) {
        let activity = &self.0;
        // The time first: a watcher that sees no request open must not read an older one.
        let elapsed = u64::try_from(activity.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        activity.last_done_ms.store(elapsed, Ordering::Relaxed);
        activity.open.fetch_sub(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_is_idle_only_with_nothing_open() {
        let activity = Activity::new(None, TaskTracker::new());
        let open = activity.open();
        let idle = activity.idle_for(Duration::from_millis(100));
        tokio::pin!(idle);
        assert!(tokio::time::timeout(Duration::from_millis(400), idle.as_mut()).await.is_err());
        drop(open);
        let waited = Instant::now();
        idle.await;
        assert!(waited.elapsed() >= Duration::from_millis(90), "{:?}", waited.elapsed());
    }
}
