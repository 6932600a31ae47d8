//! The device-flow client behind the example CLI: start a grant, poll until the user approves
//! (honouring `slow_down`), keep the tokens in a file only the user can read, refresh shortly
//! before the access token expires, and call the protected app with it.
//!
//! The end-to-end tests drive this same code, so it stays true.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Refresh when the access token has less than this left.
const REFRESH_MARGIN_SECS: u64 = 60;

/// Anything that went wrong, as a message for the user.
pub(crate) type Error = String;

/// A started grant: what to show the user and how to poll.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Started {
    /// The secret to poll with.
    pub device_code: String,
    /// The code the user checks in the browser.
    pub user_code: String,
    /// Where the user goes.
    pub verification_uri: String,
    /// The same, with the code filled in.
    pub verification_uri_complete: String,
    /// Seconds until the grant expires.
    pub expires_in: u64,
    /// Seconds between polls.
    pub interval: u64,
}

/// One poll's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PollStatus {
    /// Waiting for the user.
    Pending,
    /// Polling too fast: wait five seconds longer from now on.
    SlowDown,
    /// The grant expired (start again).
    Expired,
    /// The user refused.
    Denied,
    /// Approved: the tokens.
    Completed(Tokens),
}

/// The tokens kept on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Tokens {
    /// The access JWT.
    pub access_token: String,
    /// The refresh token (rotates on every refresh).
    pub refresh_token: String,
    /// When the access token expires (Unix seconds, by this machine's clock).
    pub expires_at: u64,
}

/// A device-flow client for one Portcullis.
#[derive(Debug, Clone)]
pub(crate) struct DeviceClient {
    http: reqwest::Client,
    base_url: String,
    token_file: PathBuf,
}

impl DeviceClient {
    /// A client for the Portcullis at `base_url` (e.g. `https://app.example.com`), keeping its
    /// tokens in `token_file`.
    pub(crate) fn new(http: reqwest::Client, base_url: &str, token_file: PathBuf) -> Self {
        Self { http, base_url: base_url.trim_end_matches('/').to_owned(), token_file }
    }

    /// Starts a device grant.
    pub(crate) async fn start(&self, client_name: &str) -> Result<Started, Error> {
        let response = self
            .http
            .post(format!("{}/auth/device/start", self.base_url))
            .json(&json!({ "client_name": client_name }))
            .send()
            .await
            .map_err(|error| format!("cannot reach Portcullis: {error}"))?;
        if !response.status().is_success() {
            return Err(format!("device/start answered {}", response.status()));
        }
        response.json().await.map_err(|error| format!("unexpected answer: {error}"))
    }

    /// Polls once.
    pub(crate) async fn poll_once(&self, device_code: &str) -> Result<PollStatus, Error> {
        let response = self
            .http
            .post(format!("{}/auth/device/poll", self.base_url))
            .json(&json!({ "device_code": device_code }))
            .send()
            .await
            .map_err(|error| format!("cannot reach Portcullis: {error}"))?;
        let body: Value =
            response.json().await.map_err(|error| format!("unexpected answer: {error}"))?;
        Ok(match body["status"].as_str() {
            Some("pending") => PollStatus::Pending,
            Some("slow_down") => PollStatus::SlowDown,
            Some("expired") => PollStatus::Expired,
            Some("denied") => PollStatus::Denied,
            Some("completed") => PollStatus::Completed(tokens_from(&body)?),
            _ => return Err(format!("unexpected poll answer: {body}")),
        })
    }

    /// Polls every `interval` (growing by five seconds on `slow_down`) until the user answers
    /// or the grant expires, then saves the tokens. `sleep` waits; the CLI passes
    /// `tokio::time::sleep`, tests pass something faster.
    pub(crate) async fn wait_for_tokens<S, F>(
        &self,
        started: &Started,
        mut sleep: S,
    ) -> Result<Tokens, Error>
    where
        S: FnMut(Duration) -> F,
        F: Future<Output = ()>,
    {
        let mut interval = Duration::from_secs(started.interval.max(1));
        loop {
            sleep(interval).await;
            match self.poll_once(&started.device_code).await? {
                PollStatus::Pending => {}
                PollStatus::SlowDown => interval += Duration::from_secs(5),
                PollStatus::Expired => return Err("the code expired before it was approved".into()),
                PollStatus::Denied => return Err("the sign-in was denied".into()),
                PollStatus::Completed(tokens) => {
                    self.save(&tokens)?;
                    return Ok(tokens);
                }
            }
        }
    }

    /// An access token that is good for at least another minute: the saved one, or a
    /// refreshed one (saved again, since the refresh token rotated).
    pub(crate) async fn access_token(&self) -> Result<String, Error> {
        let tokens = self.load()?;
        if tokens.expires_at > now_secs() + REFRESH_MARGIN_SECS {
            return Ok(tokens.access_token);
        }
        Ok(self.refresh(&tokens).await?.access_token)
    }

    /// Exchanges the refresh token for a new pair and saves it.
    pub(crate) async fn refresh(&self, tokens: &Tokens) -> Result<Tokens, Error> {
        let response = self
            .http
            .post(format!("{}/auth/refresh", self.base_url))
            .json(&json!({ "refresh_token": tokens.refresh_token }))
            .send()
            .await
            .map_err(|error| format!("cannot reach Portcullis: {error}"))?;
        if !response.status().is_success() {
            return Err("the sign-in has ended: run `login` again".into());
        }
        let body: Value =
            response.json().await.map_err(|error| format!("unexpected answer: {error}"))?;
        let fresh = tokens_from(&body)?;
        self.save(&fresh)?;
        Ok(fresh)
    }

    /// GETs `path` from the protected app, refreshing once if the token was refused.
    pub(crate) async fn get(&self, path: &str) -> Result<reqwest::Response, Error> {
        let url = format!("{}{path}", self.base_url);
        let token = self.access_token().await?;
        let response =
            self.http.get(&url).bearer_auth(token).send().await.map_err(|e| e.to_string())?;
        if response.status() != reqwest::StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let fresh = self.refresh(&self.load()?).await?;
        self.http.get(&url).bearer_auth(fresh.access_token).send().await.map_err(|e| e.to_string())
    }

    /// Ends the sign-in on the server and forgets the tokens.
    pub(crate) async fn logout(&self) -> Result<(), Error> {
        if let Ok(token) = self.access_token().await {
            let _ = self
                .http
                .post(format!("{}/auth/logout", self.base_url))
                .bearer_auth(token)
                .send()
                .await;
        }
        match std::fs::remove_file(&self.token_file) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error.to_string()),
            _ => Ok(()),
        }
    }

    /// The saved tokens.
    pub(crate) fn load(&self) -> Result<Tokens, Error> {
        let text = std::fs::read_to_string(&self.token_file)
            .map_err(|_| "not signed in: run `login` first".to_owned())?;
        serde_json::from_str(&text)
            .map_err(|error| format!("{}: {error}", self.token_file.display()))
    }

    fn save(&self, tokens: &Tokens) -> Result<(), Error> {
        let text = serde_json::to_string_pretty(tokens).map_err(|e| e.to_string())?;
        if let Some(dir) = self.token_file.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            // Tokens are credentials: readable by their owner only.
            options.mode(0o600);
        }
        use std::io::Write;
        options
            .open(&self.token_file)
            .and_then(|mut file| file.write_all(text.as_bytes()))
            .map_err(|error| format!("{}: {error}", self.token_file.display()))
    }
}

fn tokens_from(body: &Value) -> Result<Tokens, Error> {
    let field = |name: &str| {
        body[name].as_str().map(str::to_owned).ok_or_else(|| format!("answer without {name}"))
    };
    Ok(Tokens {
        access_token: field("access_token")?,
        refresh_token: field("refresh_token")?,
        expires_at: now_secs() + body["expires_in"].as_u64().unwrap_or(0),
    })
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs())
}
