//! Body wrappers of the listeners: a request body that must keep arriving
//! (`server.body_read_timeout` between chunks), and a response body that tells its connection
//! a request is still open (for the idle timeout).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::conn::activity::OpenRequest;
use crate::conn::body::BodyTimeout;

/// A request body that fails with [`BodyTimeout`] when the client sends nothing for `timeout`
/// while it is being read, so a client that declares a body and stalls cannot hold a
/// connection (and an upstream one) open. Time the reader spends elsewhere (an upstream slow
/// to take the body) does not count against the client.
#[derive(Debug)]
pub(crate) struct TimedBody<B> {
    inner: B,
    timeout: Duration,
    /// Created at the first wait, and re-armed at the start of each later one.
    sleep: Option<Pin<Box<Sleep>>>,
    /// Whether `sleep` runs for the current wait.
    waiting: bool,
}

impl<B> TimedBody<B> {
    /// `inner`, allowed at most `timeout` of silence at a time.
    pub(crate) fn new(inner: B, timeout: Duration) -> Self {
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

/// A response body that keeps its request open on the connection until it is finished or
/// dropped.
#[derive(Debug)]
pub(crate) struct TrackedBody<B> {
    inner: B,
    _open: OpenRequest,
}

impl<B> TrackedBody<B> {
    /// `inner`, holding `open` until it is dropped.
    pub(crate) fn new(inner: B, open: OpenRequest) -> Self {
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
}
