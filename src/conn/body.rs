//! Request-body rules the layers above the serving layer share: the error of a client that
//! stopped sending its body, and reading a refused body away so the client sees the refusal.

use std::time::Duration;

use bytes::Bytes;
use http_body::Body;
use http_body_util::BodyExt;

/// The client stopped sending a request body for longer than `server.body_read_timeout`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the client sent no request body for longer than server.body_read_timeout")]
pub(crate) struct BodyTimeout;

impl BodyTimeout {
    /// Whether a `BodyTimeout` is in the chain of causes of `error`.
    pub(crate) fn caused(error: &(dyn std::error::Error + 'static)) -> bool {
        let mut cause = Some(error);
        while let Some(error) = cause {
            if error.is::<Self>() {
                return true;
            }
            cause = error.source();
        }
        false
    }
}

/// How much of a refused request body is read and thrown away before the refusal is sent.
pub(crate) const DISCARD_LIMIT: usize = 4 * 1024 * 1024;
/// How long reading a refused body may take.
const DISCARD_TIME: Duration = Duration::from_secs(2);

/// Reads and drops what is left of a refused HTTP/1 request body (up to [`DISCARD_LIMIT`]
/// bytes and two seconds), so that the client reads the refusal. A connection closed with
/// unread bytes ends in a reset, and the reset makes the client's kernel throw away the answer
/// it has not read yet (nginx's lingering close exists for the same reason). Left alone: HTTP/2
/// bodies (streams are reset on their own), bodies declared longer than the limit (the reset
/// cannot be avoided, so reading would be wasted), and bodies the client waits to be asked for
/// (`Expect: 100-continue`: reading would invite the upload the answer refuses).
pub(crate) async fn discard<B>(version: http::Version, headers: &http::HeaderMap, mut body: B)
where
    B: Body<Data = Bytes> + Unpin,
{
    let expects_continue = headers
        .get(http::header::EXPECT)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if version >= http::Version::HTTP_2
        || expects_continue
        || body.size_hint().lower() > DISCARD_LIMIT as u64
    {
        return;
    }
    let drain = async {
        let mut read = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                read = read.saturating_add(data.len());
                if read > DISCARD_LIMIT {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_TIME, drain).await;
}
