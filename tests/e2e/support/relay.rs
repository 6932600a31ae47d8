//! A TCP relay in front of PostgreSQL or Redis that counts what the client asks of the server,
//! by reading the client's side of the wire protocol: statements and round trips for
//! PostgreSQL, commands for Redis. For tests that pin down how many store operations a request
//! costs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a relay has counted so far, over all its connections.
#[derive(Debug, Default)]
pub struct Counts {
    /// PostgreSQL: statements executed (`Execute` and simple `Query` messages). Redis: commands,
    /// except the revocation reader's `XREAD` heartbeats.
    pub operations: AtomicU64,
    /// PostgreSQL: round trips (`Sync` and simple `Query` messages). Redis: as `operations`.
    pub round_trips: AtomicU64,
    /// PostgreSQL: the SQL text of every statement sent (simple `Query` and `Parse` messages,
    /// their first 200 bytes). Redis: every command's name.
    pub sql: parking_lot::Mutex<Vec<String>>,
}

/// The wire protocol a relay reads.
#[derive(Debug, Clone, Copy)]
pub enum Protocol {
    /// PostgreSQL's frontend messages; connect with `sslmode=disable`.
    Postgres,
    /// RESP commands, as arrays of bulk strings.
    Redis,
    /// Anything (HTTP): relayed, nothing counted.
    Raw,
}

/// A running relay.
pub struct CountingRelay {
    pub addr: SocketAddr,
    counts: Arc<Counts>,
    /// Connections numbered below this pass nothing more either way, yet stay open: a
    /// half-open connection, as a dead peer behind a NAT or a stalled server looks.
    frozen_below: Arc<AtomicU64>,
    next_number: Arc<AtomicU64>,
    /// Where new connections go, in turn.
    targets: Arc<parking_lot::Mutex<Vec<SocketAddr>>>,
}

/// Whether a relayed connection was stalled.
#[derive(Clone)]
struct Stalled {
    number: u64,
    frozen_below: Arc<AtomicU64>,
}

impl Stalled {
    /// Waits forever once this connection is stalled.
    async fn hold_if_stalled(&self) {
        if self.number < self.frozen_below.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
    }
}

impl CountingRelay {
    /// Relays loopback connections to `target`, counting `protocol`'s requests.
    pub async fn start(target: SocketAddr, protocol: Protocol) -> Self {
        Self::round_robin(vec![target], protocol).await
    }

    /// Relays each new connection to the next of `targets` in turn: a round-robin load
    /// balancer.
    pub async fn round_robin(targets: Vec<SocketAddr>, protocol: Protocol) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counts = Arc::new(Counts::default());
        let shared = Arc::clone(&counts);
        let frozen_below = Arc::new(AtomicU64::new(0));
        let next = Arc::new(AtomicU64::new(0));
        let (frozen, numbers) = (Arc::clone(&frozen_below), Arc::clone(&next));
        let targets = Arc::new(parking_lot::Mutex::new(targets));
        let current = Arc::clone(&targets);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let number = numbers.fetch_add(1, Ordering::SeqCst);
                let to = {
                    let targets = current.lock();
                    targets[usize::try_from(number).unwrap_or(0) % targets.len()]
                };
                let Ok(server) = TcpStream::connect(to).await else { continue };
                let stalled = Stalled { number, frozen_below: Arc::clone(&frozen) };
                tokio::spawn(relay(client, server, protocol, Arc::clone(&shared), stalled));
            }
        });
        Self { addr, counts, frozen_below, next_number: next, targets }
    }

    /// Sends new connections to `target` (open ones stay where they are), as an address does
    /// whose DNS name moved to another server.
    pub fn retarget(&self, target: SocketAddr) {
        *self.targets.lock() = vec![target];
    }

    /// Stalls every connection open now (new ones pass).
    pub fn stall_open_connections(&self) {
        self.frozen_below.store(self.next_number.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// The SQL texts sent so far (PostgreSQL).
    pub fn sql(&self) -> Vec<String> {
        self.counts.sql.lock().clone()
    }

    /// Operations and round trips counted so far.
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.counts.operations.load(Ordering::SeqCst),
            self.counts.round_trips.load(Ordering::SeqCst),
        )
    }
}

/// A counting relay in front of the server `url` names, and `url` through it (with `query`).
pub async fn relayed(
    url: &str,
    protocol: Protocol,
    query: Option<&str>,
) -> (CountingRelay, String) {
    let mut url = reqwest::Url::parse(url).unwrap();
    let target = tokio::net::lookup_host((url.host_str().unwrap(), url.port().unwrap()))
        .await
        .unwrap()
        .next()
        .unwrap();
    let relay = CountingRelay::start(target, protocol).await;
    url.set_host(Some(&relay.addr.ip().to_string())).unwrap();
    url.set_port(Some(relay.addr.port())).unwrap();
    url.set_query(query);
    (relay, url.to_string())
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    protocol: Protocol,
    counts: Arc<Counts>,
    stalled: Stalled,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let answers_stalled = stalled.clone();
    let answers = tokio::spawn(async move {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let read = match server_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            answers_stalled.hold_if_stalled().await;
            if client_write.write_all(&buffer[..read]).await.is_err() {
                break;
            }
        }
        let _ = client_write.shutdown().await;
    });
    let mut parser = Parser::new(protocol);
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match client_read.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        stalled.hold_if_stalled().await;
        // Counted before they are passed on, so a test that sees the answer sees the count.
        parser.feed(&buffer[..read], &counts);
        if server_write.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = server_write.shutdown().await;
    let _ = answers.await;
}

/// Reads a client's byte stream message by message, across reads.
struct Parser {
    protocol: Protocol,
    /// Bytes of a message head not yet complete.
    pending: Vec<u8>,
    /// Bytes of the current message's body still to skip.
    skip: usize,
    /// PostgreSQL: still before the startup message (messages without a type byte).
    startup: bool,
    /// Redis: bulk strings still expected in the current command.
    bulk_left: u64,
    /// Redis: the next bulk string is a command's name.
    name_next: bool,
    /// PostgreSQL: the body of a `Query` or `Parse` message being read.
    capture: Option<Vec<u8>>,
}

impl Parser {
    fn new(protocol: Protocol) -> Self {
        Self {
            protocol,
            pending: Vec::new(),
            skip: 0,
            startup: true,
            bulk_left: 0,
            name_next: false,
            capture: None,
        }
    }

    fn feed(&mut self, mut bytes: &[u8], counts: &Counts) {
        if matches!(self.protocol, Protocol::Raw) {
            return;
        }
        while !bytes.is_empty() {
            if self.skip > 0 {
                let skipped = self.skip.min(bytes.len());
                if let Some(body) = &mut self.capture {
                    body.extend_from_slice(&bytes[..skipped]);
                }
                self.skip -= skipped;
                bytes = &bytes[skipped..];
                if self.skip == 0
                    && matches!(self.protocol, Protocol::Redis)
                    && let Some(body) = self.capture.take()
                {
                    // A command's name (and its CRLF).
                    if !body.to_ascii_uppercase().starts_with(b"XREAD\r") {
                        counts.operations.fetch_add(1, Ordering::SeqCst);
                        counts.round_trips.fetch_add(1, Ordering::SeqCst);
                    }
                    counts.sql.lock().push(String::from_utf8_lossy(body.trim_ascii()).into_owned());
                } else if self.skip == 0
                    && let Some(body) = self.capture.take()
                {
                    // After the message type: `Parse` names its statement first; NULs end
                    // each string.
                    let text = String::from_utf8_lossy(&body[1..]).replace('\0', " ");
                    counts.sql.lock().push(text.chars().take(200).collect());
                }
                continue;
            }
            self.pending.push(bytes[0]);
            bytes = &bytes[1..];
            match self.protocol {
                Protocol::Postgres => self.postgres_head(counts),
                Protocol::Redis => self.redis_line(counts),
                Protocol::Raw => {}
            }
        }
    }

    /// PostgreSQL: startup-phase messages are a length and a code; later ones a type byte and
    /// a length. The length counts itself but not the type byte.
    fn postgres_head(&mut self, counts: &Counts) {
        let head = if self.startup { 8 } else { 5 };
        if self.pending.len() < head {
            return;
        }
        let (length_at, kind) = if self.startup { (0, None) } else { (1, Some(self.pending[0])) };
        let length = u32::from_be_bytes(self.pending[length_at..length_at + 4].try_into().unwrap());
        if self.startup {
            let code = u32::from_be_bytes(self.pending[4..8].try_into().unwrap());
            // SSL and GSSAPI requests are followed by the real startup message.
            self.startup = code == 80_877_103 || code == 80_877_104;
        }
        match kind {
            Some(b'E') => {
                counts.operations.fetch_add(1, Ordering::SeqCst);
            }
            Some(b'S') => {
                counts.round_trips.fetch_add(1, Ordering::SeqCst);
            }
            Some(b'Q') => {
                counts.operations.fetch_add(1, Ordering::SeqCst);
                counts.round_trips.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
        self.skip = (length as usize).saturating_sub(head - length_at);
        if matches!(kind, Some(b'Q' | b'P')) && self.skip > 0 {
            self.capture = Some(kind.into_iter().collect());
        }
        self.pending.clear();
    }

    /// Redis: a command is `*<n>\r\n` followed by n bulk strings, `$<len>\r\n<bytes>\r\n`.
    fn redis_line(&mut self, counts: &Counts) {
        if !self.pending.ends_with(b"\r\n") {
            return;
        }
        let line = std::str::from_utf8(&self.pending[..self.pending.len() - 2]).unwrap_or("");
        if let Some(items) = line.strip_prefix('*').filter(|_| self.bulk_left == 0) {
            self.bulk_left = items.parse().unwrap_or(0);
            self.name_next = true;
        } else if let Some(length) = line.strip_prefix('$') {
            self.bulk_left = self.bulk_left.saturating_sub(1);
            self.skip = length.parse::<usize>().unwrap_or(0) + 2;
            if std::mem::take(&mut self.name_next) {
                self.capture = Some(Vec::new());
            }
        }
        let _ = counts;
        self.pending.clear();
    }
}

#[test]
fn the_parsers_count_across_reads() {
    let counts = Counts::default();
    let mut redis = Parser::new(Protocol::Redis);
    let command =
        b"*2\r\n$3\r\nGET\r\n$4\r\na\r\n*\r\n*1\r\n$4\r\nPING\r\n*2\r\n$5\r\nxread\r\n$1\r\n0\r\n";
    for byte in command {
        redis.feed(&[*byte], &counts);
    }
    assert_eq!(
        counts.operations.load(Ordering::SeqCst),
        2,
        "a `*` inside data, and XREAD, not counted"
    );

    let counts = Counts::default();
    let mut postgres = Parser::new(Protocol::Postgres);
    let mut wire = Vec::new();
    wire.extend_from_slice(&8u32.to_be_bytes());
    wire.extend_from_slice(&80_877_103u32.to_be_bytes());
    wire.extend_from_slice(&9u32.to_be_bytes());
    wire.extend_from_slice(&196_608u32.to_be_bytes());
    wire.push(0);
    for (kind, body) in [(b'B', &b"xyz"[..]), (b'E', b"\0\0\0\0\0"), (b'S', b""), (b'Q', b"SEL\0")]
    {
        wire.push(kind);
        wire.extend_from_slice(&(4 + body.len() as u32).to_be_bytes());
        wire.extend_from_slice(body);
    }
    postgres.feed(&wire[..7], &counts);
    postgres.feed(&wire[7..], &counts);
    assert_eq!(counts.operations.load(Ordering::SeqCst), 2);
    assert_eq!(counts.round_trips.load(Ordering::SeqCst), 2);
    assert_eq!(counts.sql.lock().as_slice(), ["SEL "]);
}
