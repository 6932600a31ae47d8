//! Reading the revocation log from a Redis stream: resume from this replica's position, and
//! notice when entries after it may have been trimmed or lost.

use redis::streams::StreamReadReply;
use tokio_util::sync::CancellationToken;

use super::{Backoff, HEARTBEAT, HEARTBEAT_TIMEOUT, READER_NAME, apply};
use crate::identity::cache::IdentityCache;
use crate::store::ephemeral::{RedisConnection, RedisSource};

/// A Redis stream entry id (`<milliseconds>-<sequence>`), ordered.
pub(super) fn stream_id(text: &str) -> Option<(u64, u64)> {
    let (millis, sequence) = text.split_once('-')?;
    Some((millis.parse().ok()?, sequence.parse().ok()?))
}

/// Where a reader is in a Redis stream: the server instance it read from (its `run_id`) and
/// the last entry it applied.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StreamPosition {
    server: String,
    entry: String,
}

/// Where a reader of `stream` starts on a new connection, and whether its cache can be kept:
/// after its position when every entry after it is still there (the same server instance, and
/// nothing trimmed), else at the end (and the cache must be emptied).
async fn resume_redis(
    connection: &mut RedisConnection,
    stream: &str,
    position: Option<&StreamPosition>,
) -> redis::RedisResult<(StreamPosition, bool)> {
    // On a cluster, the node that holds the stream.
    let info: String = connection.query_at_key(redis::cmd("INFO").arg("server"), stream).await?;
    // A restarted or failed-over server may have lost entries: a new run id.
    let server = info
        .lines()
        .find_map(|line| line.strip_prefix("run_id:"))
        .unwrap_or_default()
        .trim()
        .to_owned();
    // A server that does not say its run id (some proxies and managed services hide INFO
    // fields) cannot show it was not restarted: read from the end.
    if let Some(position) =
        position.filter(|position| !server.is_empty() && position.server == server)
        && nothing_trimmed_after(connection, stream, &position.entry).await?
    {
        return Ok((position.clone(), true));
    }
    let last: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(stream)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(connection)
        .await?;
    let entry = last.ids.first().map_or_else(|| "0-0".to_owned(), |entry| entry.id.clone());
    Ok((StreamPosition { server, entry }, false))
}

/// Whether every entry of `stream` after `entry` is still there. Redis 7 says what trimming
/// deleted last (`max-deleted-entry-id`); before 7, an entry at or before ours that is still
/// there proves the same (trimming keeps the newest). A stream that does not exist never had
/// an entry, or lost them all: complete only if we had read none.
async fn nothing_trimmed_after(
    connection: &mut RedisConnection,
    stream: &str,
    entry: &str,
) -> redis::RedisResult<bool> {
    let info = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(stream)
        .query_async::<std::collections::HashMap<String, redis::Value>>(connection)
        .await;
    let info = match info {
        Ok(info) => info,
        Err(error)
            if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) =>
        {
            return Ok(entry == "0-0");
        }
        Err(error) => return Err(error),
    };
    let text = |field: &str| {
        info.get(field).and_then(|value| redis::from_redis_value_ref::<String>(value).ok())
    };
    if let Some(deleted) = text("max-deleted-entry-id") {
        return Ok(stream_id(&deleted) <= stream_id(entry));
    }
    let first = info.get("first-entry").and_then(|value| match value {
        redis::Value::Array(fields) => {
            fields.first().and_then(|id| redis::from_redis_value_ref::<String>(id).ok())
        }
        _ => None,
    });
    Ok(first.is_some_and(|first| stream_id(&first) <= stream_id(entry)))
}

pub(super) async fn read_redis(
    source: RedisSource,
    stream: String,
    cache: IdentityCache,
    stop: CancellationToken,
) {
    let mut position: Option<StreamPosition> = None;
    let mut backoff = Backoff::default();
    let block = u64::try_from(HEARTBEAT.as_millis()).unwrap_or(2000);
    loop {
        let connected = async {
            let mut connection =
                source.connect(HEARTBEAT_TIMEOUT, HEARTBEAT + HEARTBEAT_TIMEOUT).await?;
            // Named, so that `CLIENT LIST` shows what the connection is (a cluster's nodes
            // are not told: the name would go to a random one).
            if !connection.is_cluster() {
                let named = redis::cmd("CLIENT")
                    .arg("SETNAME")
                    .arg(READER_NAME)
                    .query_async::<()>(&mut connection)
                    .await;
                if let Err(error) = named {
                    tracing::debug!(%error, "cannot name the revocation reader's connection");
                }
            }
            let start = resume_redis(&mut connection, &stream, position.as_ref()).await?;
            Ok::<_, redis::RedisError>((connection, start))
        };
        let connected = tokio::select! {
            result = connected => result,
            () = stop.cancelled() => return,
        };
        match connected {
            Ok((mut connection, (start, complete))) => {
                backoff.connected(&cache, "Redis", complete);
                let mut at = start;
                loop {
                    let from = at.entry.clone();
                    let mut command = redis::cmd("XREAD");
                    command
                        .arg("COUNT")
                        .arg(1000)
                        .arg("BLOCK")
                        .arg(block)
                        .arg("STREAMS")
                        .arg(&stream)
                        .arg(&from);
                    let read = command.query_async::<Option<StreamReadReply>>(&mut connection);
                    let read = tokio::select! {
                        read = read => read,
                        () = stop.cancelled() => return,
                    };
                    match read {
                        Ok(reply) => {
                            for entry in reply
                                .into_iter()
                                .flat_map(|reply| reply.keys)
                                .flat_map(|key| key.ids)
                            {
                                if let Some(text) = entry.get::<String>("r") {
                                    apply(&cache, &text);
                                }
                                at.entry = entry.id;
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%error, "lost the Redis revocation stream; reconnecting");
                            position = Some(at);
                            break;
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot read the Redis revocation stream"),
        }
        if backoff.wait(&stop).await.is_err() {
            return;
        }
    }
}
