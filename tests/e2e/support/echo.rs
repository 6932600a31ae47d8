//! `EchoUpstream`: an app that reports what it received (method, path, headers, a SHA-256 of
//! the body streamed through), echoes WebSocket messages, and can be slow on request.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// What the echo app saw, as it reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct Echoed {
    pub upstream: String,
    /// The proxy's end of the connection the request came on.
    pub peer: String,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub version: String,
    pub headers: BTreeMap<String, Vec<String>>,
    pub body_sha256: String,
    pub body_len: u64,
}

impl Echoed {
    /// The single value of a header, panicking if it was sent more than once.
    pub fn header(&self, name: &str) -> Option<&str> {
        let values = self.headers.get(name)?;
        assert_eq!(values.len(), 1, "{name} was sent {} times: {values:?}", values.len());
        Some(&values[0])
    }
}

/// A running echo app.
pub struct EchoUpstream {
    pub addr: SocketAddr,
}

impl EchoUpstream {
    /// Starts an echo app that names itself `name` in its reports.
    pub async fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let name = name.to_owned();
        tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else { return };
                let name = name.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        handle(name.clone(), peer, request)
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr }
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

type EchoBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn handle(
    name: String,
    peer: SocketAddr,
    mut request: Request<Incoming>,
) -> Result<Response<EchoBody>, Infallible> {
    let query: BTreeMap<String, String> = request
        .uri()
        .query()
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    if let Some(ms) = query.get("sleep_ms").and_then(|ms| ms.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if request.uri().path() == "/ws" {
        return Ok(websocket(&mut request));
    }
    if let Some(bytes) = query.get("download").and_then(|n| n.parse::<u64>().ok()) {
        return Ok(download(bytes));
    }
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (header, value) in request.headers() {
        headers
            .entry(header.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let query_text = request.uri().query().map(str::to_owned);
    let version = format!("{:?}", request.version());
    let mut body = request.into_body();
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let mut body_len = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(data) = frame.data_ref() {
            digest.update(data);
            body_len += data.len() as u64;
        }
    }
    let report = serde_json::json!({
        "upstream": name,
        "peer": peer.to_string(),
        "method": method,
        "path": path,
        "query": query_text,
        "version": version,
        "headers": headers,
        "body_sha256": hex(digest.finish().as_ref()),
        "body_len": body_len,
    });
    let mut response = Response::new(Full::new(Bytes::from(report.to_string())).boxed());
    response.headers_mut().insert("content-type", "application/json".parse().unwrap());
    if query.contains_key("set_cookies") {
        response
            .headers_mut()
            .append("set-cookie", "portcullis_session=v1.fixated; Path=/".parse().unwrap());
        response.headers_mut().append("set-cookie", "app_pref=dark; Path=/".parse().unwrap());
        // Nameless, and with a byte that is not UTF-8: both must be caught as ours.
        let nameless = "=portcullis_session=v1.fixated; Path=/".parse().unwrap();
        response.headers_mut().append("set-cookie", nameless);
        let binary =
            http::HeaderValue::from_bytes(b"portcullis_session=v1.fixated; X=\xe9").unwrap();
        response.headers_mut().append("set-cookie", binary);
    }
    Ok(response)
}

fn download(bytes: u64) -> Response<EchoBody> {
    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
    let chunks = bytes.div_ceil(chunk.len() as u64);
    let stream = futures_util::stream::iter((0..chunks).map(move |index| {
        let remaining = bytes - index * chunk.len() as u64;
        let piece = chunk.slice(..usize::try_from(remaining.min(chunk.len() as u64)).unwrap());
        Ok::<_, Infallible>(Frame::data(piece))
    }));
    Response::new(BodyExt::boxed(StreamBody::new(stream)))
}

fn websocket(request: &mut Request<Incoming>) -> Response<EchoBody> {
    let Some(key) = request.headers().get("sec-websocket-key").cloned() else {
        let mut response = Response::new(Full::new(Bytes::from_static(b"not a websocket")).boxed());
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return response;
    };
    // `?report=1`: the first message tells the client which query string arrived.
    let query = request.uri().query().unwrap_or("").to_owned();
    let report = query.split('&').any(|pair| pair == "report=1");
    let upgrade = hyper::upgrade::on(request);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        if report && socket.send(Message::text(format!("query={query}"))).await.is_err() {
            return;
        }
        while let Some(Ok(message)) = socket.next().await {
            if message.is_close() {
                break;
            }
            if (message.is_text() || message.is_binary()) && socket.send(message).await.is_err() {
                break;
            }
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()).boxed());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert("connection", "upgrade".parse().unwrap());
    headers.insert("upgrade", "websocket".parse().unwrap());
    headers.insert("sec-websocket-accept", derive_accept_key(key.as_bytes()).parse().unwrap());
    response
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
