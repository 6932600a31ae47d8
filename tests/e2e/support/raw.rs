//! Requests written byte for byte over TCP, for what HTTP clients refuse or "fix" before
//! sending: dot segments, `\`, `;`, raw UTF-8, lower-case methods, two `Host` headers.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Echoed;

/// A response read to the end of the connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as the echo app's report.
    pub fn echoed(&self) -> Echoed {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("not an echo report ({error}): {}", self.body))
    }

    /// The `error` code of a JSON error body.
    pub fn error(&self) -> String {
        let body: serde_json::Value = serde_json::from_str(&self.body).unwrap_or_default();
        body["error"].as_str().unwrap_or_default().to_owned()
    }
}

/// Sends `method target` to `addr` with `headers` (each `Name: value`), `Host` and
/// `Connection: close` added unless given, and reads the whole response.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    target: &[u8],
    headers: &[&str],
) -> RawResponse {
    let mut text = Vec::new();
    text.extend_from_slice(method.as_bytes());
    text.push(b' ');
    text.extend_from_slice(target);
    text.extend_from_slice(b" HTTP/1.1\r\n");
    let has = |name: &str| {
        headers.iter().any(|h| h.to_ascii_lowercase().starts_with(&format!("{name}:")))
    };
    if !has("host") {
        text.extend_from_slice(format!("Host: {addr}\r\n").as_bytes());
    }
    for header in headers {
        text.extend_from_slice(header.as_bytes());
        text.extend_from_slice(b"\r\n");
    }
    if !has("connection") {
        text.extend_from_slice(b"Connection: close\r\n");
    }
    text.extend_from_slice(b"\r\n");
    exchange(addr, &text).await
}

/// Writes `bytes` to `addr` and reads the response until the server closes (10 s at most).
pub async fn exchange(addr: SocketAddr, bytes: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received))
        .await
        .expect("the server answered and closed within 10 s")
        .unwrap();
    parse(&received)
}

/// Parses an HTTP/1.1 response (`Content-Length` or to the end; chunked bodies de-chunked).
pub fn parse(received: &[u8]) -> RawResponse {
    let text = String::from_utf8_lossy(received);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    RawResponse { status, headers, body }
}

fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || after.len() < size {
            break;
        }
        body.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    body
}
