//! Body wrappers of the listeners: a request body that must keep arriving
//! (`server.body_read_timeout` between chunks), and a response body that tells its connection
//! a request is still open (for the idle timeout).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};
use tokio_util::task::TaskTracker;

use crate::conn::body::BodyTimeout;

/// A request body that fails with [`BodyTimeout`] when the client sends nothing for `timeout`
/// while it is being read, so a client that declares a body and stalls cannot hold a
/// connection (and an upstream one) open. Time the reader spends elsewhere (an upstream slow
/// to take the body) does not count against the client.
#[derive(Debug)]
pub struct TimedBody<B> {
    inner: B,
    timeout: Duration,
    /// Created at the first wait, and re-armed at the start of each later one.
    sleep: Option<Pin<Box<Sleep>>>,
    /// Whether `sleep` runs for the current wait.
    waiting: bool,
}

impl<B> TimedBody<B> {
    /// `inner`, allowed at most `timeout` of silence at a time.
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self { inner, timeout, sleep: None, waiting: false }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting = false;
                Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
            }
            Poll::Pending => {
                let deadline = Instant::now() + this.timeout;
                let sleep =
                    this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if !this.waiting {
                    this.waiting = true;
                    sleep.as_mut().reset(deadline);
                }
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What a connection has open: requests whose responses are not finished, and when the last
/// one finished (for the idle timeout); and its slot among `server.max_connections`, held
/// until the connection and anything it was upgraded into have ended.
#[derive(Debug)]
pub struct Activity {
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
    pub fn new(slot: Option<OwnedSemaphorePermit>, tasks: TaskTracker) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            started: Instant::now(),
            last_done_ms: AtomicU64::new(0),
            _slot: slot,
            tasks,
        })
    }

    /// Runs `task` on the connection's behalf: the slot stays taken until it ends.
    pub fn spawn(self: &Arc<Self>, task: impl Future<Output = ()> + Send + 'static) {
        let hold = Arc::clone(self);
        self.tasks.spawn(async move {
            task.await;
            drop(hold);
        });
    }

    /// Whether no request is open.
    pub fn is_idle(&self) -> bool {
        self.open.load(Ordering::Acquire) == 0
    }

    /// When the last request finished, in milliseconds since the connection started.
    pub fn last_done_ms(&self) -> u64 {
        self.last_done_ms.load(Ordering::Relaxed)
    }

    /// Notes a request; it stays open until the guard (moved into its response body) drops.
    pub fn open(self: &Arc<Self>) -> OpenRequest {
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenRequest(Arc::clone(self))
    }

    /// Waits until the connection has had no open request for `timeout`.
    pub async fn idle_for(&self, timeout: Duration) {
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
pub struct OpenRequest(Arc<Activity>);

impl Drop for OpenRequest {
    fn drop(&mut self) {
        let activity = &self.0;
        // The time first: a watcher that sees no request open must not read an older one.
        let elapsed = u64::try_from(activity.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        activity.last_done_ms.store(elapsed, Ordering::Relaxed);
        activity.open.fetch_sub(1, Ordering::Release);
    }
}

/// A response body that keeps its request open on the connection until it is finished or
/// dropped.
#[derive(Debug)]
pub struct TrackedBody<B> {
    inner: B,
    _open: OpenRequest,
}

impl<B> TrackedBody<B> {
    /// `inner`, holding `open` until it is dropped.
    pub fn new(inner: B, open: OpenRequest) -> Self {
        Self { inner, _open: open }
    }
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    #[tokio::test]
    async fn a_stalled_body_times_out_and_a_flowing_one_does_not() {
        let (sender, receiver) =
            tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
        let stream = tokio_stream_from(receiver);
        let mut body = TimedBody::new(StreamBody::new(stream), Duration::from_millis(500));
        for _ in 0..3 {
            let sender = sender.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                sender.send(Ok(Frame::data(Bytes::from_static(b"x")))).await.unwrap();
            });
            assert!(body.frame().await.unwrap().is_ok(), "a chunk every 300 ms keeps it going");
        }
        // A reader that pauses (an upstream slow to take the body) is not the client's fault.
        sender.send(Ok(Frame::data(Bytes::from_static(b"y")))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(body.frame().await.unwrap().is_ok(), "the chunk waiting is read");
        let error = body.frame().await.unwrap().unwrap_err();
        assert!(error.is::<BodyTimeout>(), "{error}");
    }

    fn tokio_stream_from<T: Send + 'static>(
        mut receiver: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> + Unpin {
        Box::pin(futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx)))
    }

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
