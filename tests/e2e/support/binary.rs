//! The real `portcullis` binary, for what only a process can show: CLI commands, the quick start
//! on embedded defaults, signals, exit codes and the proxy's own memory use.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

pub const BINARY: &str = env!("CARGO_BIN_EXE_portcullis");

/// A running `portcullis serve`.
pub struct Binary {
    child: Child,
    /// `http://127.0.0.1:port` of the main listener.
    pub url: String,
    /// `http://127.0.0.1:port` of the admin listener.
    pub admin_url: Option<String>,
    /// Everything it wrote to stderr so far.
    pub log: Arc<Mutex<String>>,
}

impl Binary {
    /// Starts `portcullis` in `dir` with `args` and extra environment, and waits until it
    /// listens.
    pub async fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(BINARY);
        command
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command.env_remove("RUST_LOG").env_remove("PORTCULLIS_CONFIG").kill_on_drop(true);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = Arc::clone(&log);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("Portcullis is up") {
                    let _ = ready_tx.send(line.clone());
                }
                let mut log = sink.lock();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let line = tokio::time::timeout(Duration::from_secs(30), ready_rx.recv())
            .await
            .unwrap_or_else(|_| panic!("portcullis did not start:\n{}", log.lock()))
            .unwrap_or_else(|| panic!("portcullis exited:\n{}", log.lock()));
        let url = between(&line, "open ", "/ ").unwrap().to_owned();
        let admin_url = between(&line, "admin: ", "/metrics").map(str::to_owned);
        Self { child, url, admin_url, log }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends the signal `name` (`TERM`, `INT`, …).
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit.
    pub async fn wait(&mut self, limit: Duration) -> ExitStatus {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .expect("portcullis did not exit in time")
            .unwrap()
    }

    /// Whether stderr shows `text` within `limit` (the reader runs behind the process).
    pub async fn logged(&self, text: &str, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.log.lock().contains(text) {
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Peak resident memory of the process, in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let to = text[from..].find(end)? + from;
    Some(&text[from..to])
}

/// Runs a `portcullis` command to completion, feeding `stdin`.
pub async fn run(dir: &Path, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(BINARY)
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("PORTCULLIS_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.unwrap().unwrap()
}
