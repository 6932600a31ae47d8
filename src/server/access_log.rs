//! The access log: one line per request, formatted on the request's own thread into a shared
//! buffer that a background thread writes to stderr. A request pays for formatting its line
//! and a short lock, never for a write system call (about 7 µs a line when every line was its
//! own `tracing` event written straight to stderr).
//!
//! Lines keep the shape of the other log lines of `[log] format`, and `RUST_LOG` still decides
//! whether they are written (target `portcullis::access`). They reach stderr within
//! [`FLUSH_INTERVAL`], so they may interleave out of order with other log lines by that much.
//! Nothing is dropped: when the writer falls behind (a stalled stderr), the request that finds
//! the buffer full writes it itself, as every line used to.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::{Duration, SystemTime};

use http::Method;
use parking_lot::Mutex;
use uuid::Uuid;

use crate::config::LogFormat;

/// How long a line may wait in the buffer.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Buffered bytes that wake the writer early.
const WAKE_AT: usize = 64 * 1024;
/// Buffered bytes past which a request writes the buffer itself.
const WRITE_AT: usize = 1024 * 1024;

/// One request's access line.
#[derive(Debug)]
pub struct AccessLine<'a> {
    /// Its `X-Request-Id`.
    pub request_id: &'a str,
    /// Which part of Portcullis answered (`proxy`, `auth`, `verify`).
    pub class: &'static str,
    /// Its method.
    pub method: &'a Method,
    /// Its path, never the query (which can hold one-time tokens).
    pub path: &'a str,
    /// The answer's status.
    pub status: u16,
    /// From the request's arrival to its answer's head.
    pub latency: Duration,
    /// How it was authenticated (`session`, `api_key`, …), empty when it was not.
    pub auth_method: &'static str,
    /// Whose credential it carried, when it carried a valid one.
    pub user_id: Option<Uuid>,
}

/// Writes access lines in one of the log formats.
#[derive(Debug, Clone, Copy)]
pub struct AccessLog {
    format: LogFormat,
}

impl AccessLog {
    /// Lines in `format`.
    pub fn new(format: LogFormat) -> Self {
        Self { format }
    }

    /// Whether lines are written at all: `RUST_LOG` allows target `portcullis::access` at
    /// `info` (a cached per-callsite check).
    pub fn enabled() -> bool {
        tracing::event_enabled!(target: "portcullis::access", tracing::Level::INFO)
    }

    /// Appends `line`, stamped `now`, to `out`.
    pub fn render(&self, line: &AccessLine<'_>, now: SystemTime, out: &mut Vec<u8>) {
        match self.format {
            LogFormat::Json => json_line(out, line, now),
            LogFormat::Pretty => pretty_line(out, line, now),
        }
    }

    /// Buffers `line`, to reach stderr within [`FLUSH_INTERVAL`].
    pub fn write(&self, line: &AccessLine<'_>) {
        let buffered = {
            let mut buffer = BUFFER.lock();
            self.render(line, SystemTime::now(), &mut buffer);
            buffer.len()
        };
        if buffered >= WRITE_AT {
            flush();
        } else if buffered >= WAKE_AT || !WRITER.get().is_some_and(Writer::running) {
            wake_writer();
        }
    }
}

/// Writes whatever is buffered to stderr now (at shutdown, and when the writer falls behind).
/// Returns once every line buffered before the call is written, including a batch the writer
/// thread had already taken.
pub(crate) fn flush() {
    let _writing = WRITING.lock();
    let lines = std::mem::take(&mut *BUFFER.lock());
    if !lines.is_empty() {
        // Nowhere to report a failed write to stderr.
        let _ = std::io::stderr().lock().write_all(&lines);
    }
}

static BUFFER: Mutex<Vec<u8>> = Mutex::new(Vec::new());
/// Held from taking a batch out of [`BUFFER`] until it is written, so batches reach stderr in
/// order and [`flush`] waits for one in flight. Always taken before `BUFFER`.
static WRITING: Mutex<()> = Mutex::new(());
static WRITER: OnceLock<Writer> = OnceLock::new();

/// The background thread that empties [`BUFFER`].
#[derive(Debug)]
struct Writer {
    thread: Option<Thread>,
}

impl Writer {
    fn running(&self) -> bool {
        self.thread.is_some()
    }
}

fn wake_writer() {
    let writer = WRITER.get_or_init(|| Writer {
        thread: std::thread::Builder::new()
            .name("portcullis-access-log".into())
            .spawn(write_loop)
            .ok()
            .map(|handle| handle.thread().clone()),
    });
    match &writer.thread {
        Some(thread) => thread.unpark(),
        // No thread could be started: every line is written as it comes.
        None => flush(),
    }
}

fn write_loop() {
    // Two buffers swap places, so neither is reallocated once warm.
    let mut spare = Vec::with_capacity(WAKE_AT);
    loop {
        std::thread::park_timeout(FLUSH_INTERVAL);
        let _writing = WRITING.lock();
        std::mem::swap(&mut *BUFFER.lock(), &mut spare);
        if !spare.is_empty() {
            let _ = std::io::stderr().lock().write_all(&spare);
            spare.clear();
        }
    }
}

/// `{"timestamp":…,"level":"INFO","fields":{…},"target":"portcullis::access"}`, the shape of
/// the other JSON log lines.
fn json_line(out: &mut Vec<u8>, line: &AccessLine<'_>, now: SystemTime) {
    let mut text = Text(out);
    let _ = write!(
        text,
        "{{\"timestamp\":\"{}\",\"level\":\"INFO\",\"fields\":{{\"request_id\":",
        humantime::format_rfc3339_micros(now)
    );
    json_string(text.0, line.request_id);
    let _ = write!(text, ",\"class\":\"{}\",\"method\":", line.class);
    json_string(text.0, line.method.as_str());
    text.0.extend_from_slice(b",\"path\":");
    json_string(text.0, line.path);
    let _ = write!(text, ",\"status\":{},\"latency_ms\":", line.status);
    milliseconds(&mut text, line.latency);
    text.0.extend_from_slice(b",\"auth_method\":");
    json_string(text.0, line.auth_method);
    if let Some(user_id) = line.user_id {
        let _ = write!(text, ",\"user_id\":\"{user_id}\"");
    }
    text.0.extend_from_slice(b"},\"target\":\"portcullis::access\"}\n");
}

/// `<timestamp>  INFO portcullis::access: request_id="…" class="proxy" …`, the shape of the
/// other human-readable log lines.
fn pretty_line(out: &mut Vec<u8>, line: &AccessLine<'_>, now: SystemTime) {
    let mut text = Text(out);
    let _ = write!(
        text,
        "{}  INFO portcullis::access: request_id={:?} class={:?} method={} path={:?} status={} \
         latency_ms=",
        humantime::format_rfc3339_micros(now),
        line.request_id,
        line.class,
        line.method,
        line.path,
        line.status,
    );
    milliseconds(&mut text, line.latency);
    let _ = write!(text, " auth_method={:?}", line.auth_method);
    if let Some(user_id) = line.user_id {
        let _ = write!(text, " user_id={user_id}");
    }
    text.0.push(b'\n');
}

/// Milliseconds with three decimals, without float formatting.
fn milliseconds(text: &mut Text<'_>, latency: Duration) {
    let micros = latency.as_micros();
    let _ = write!(text, "{}.{:03}", micros / 1000, micros % 1000);
}

/// `value` as a JSON string.
fn json_string(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    for byte in value.bytes() {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..=0x1f | 0x7f => {
                const DIGITS: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(DIGITS[usize::from(byte >> 4)]);
                out.push(DIGITS[usize::from(byte & 0xf)]);
            }
            _ => out.push(byte),
        }
    }
    out.push(b'"');
}

/// `fmt::Write` into a byte buffer.
struct Text<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Text<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.0.extend_from_slice(text.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(path: &'a str, method: &'a Method, user_id: Option<Uuid>) -> AccessLine<'a> {
        AccessLine {
            request_id: "id-\"1\"",
            class: "proxy",
            method,
            path,
            status: 200,
            latency: Duration::from_micros(12_345),
            auth_method: if user_id.is_some() { "session" } else { "" },
            user_id,
        }
    }

    #[test]
    fn json_lines_are_json_with_the_usual_fields() {
        let user = Uuid::now_v7();
        let method = Method::from_bytes(b"PURGE").unwrap();
        let mut out = Vec::new();
        let at = SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        json_line(&mut out, &line("/a\"b\\c\u{1}é", &method, Some(user)), at);
        assert_eq!(out.last(), Some(&b'\n'));
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["timestamp"], "2023-11-14T22:13:20.123456Z");
        assert_eq!(value["level"], "INFO");
        assert_eq!(value["target"], "portcullis::access");
        let fields = &value["fields"];
        assert_eq!(fields["request_id"], "id-\"1\"");
        assert_eq!(fields["class"], "proxy");
        assert_eq!(fields["method"], "PURGE");
        assert_eq!(fields["path"], "/a\"b\\c\u{1}é");
        assert_eq!(fields["status"], 200);
        assert_eq!(fields["latency_ms"].as_f64(), Some(12.345));
        assert_eq!(fields["auth_method"], "session");
        assert_eq!(fields["user_id"], user.to_string());

        let mut anonymous = Vec::new();
        json_line(&mut anonymous, &line("/", &Method::GET, None), at);
        let value: serde_json::Value = serde_json::from_slice(&anonymous).unwrap();
        assert_eq!(value["fields"]["auth_method"], "");
        assert!(value["fields"].get("user_id").is_none());
    }

    #[test]
    fn pretty_lines_quote_what_a_client_chose() {
        let mut out = Vec::new();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        pretty_line(&mut out, &line("/x y\n", &Method::GET, None), at);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "2023-11-14T22:13:20.000000Z  INFO portcullis::access: request_id=\"id-\\\"1\\\"\" \
             class=\"proxy\" method=GET path=\"/x y\\n\" status=200 latency_ms=12.345 \
             auth_method=\"\"\n"
        );
    }

    #[test]
    fn latency_keeps_three_decimals() {
        let mut out = Vec::new();
        milliseconds(&mut Text(&mut out), Duration::from_micros(7));
        milliseconds(&mut Text(&mut out), Duration::from_secs(2));
        assert_eq!(out, b"0.0072000.000");
    }
}
