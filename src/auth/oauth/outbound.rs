//! Requests to sign-in providers: never following redirects, bounded in time, reading at most
//! 1 MiB; the providers' answers are untrusted input like any other.

use std::time::Duration;

/// Largest answer read from a provider.
const MAX_RESPONSE: usize = 1 << 20;

/// The HTTP client for providers: no redirects, bounded time.
///
/// # Errors
/// The TLS setup fails (no crypto provider).
pub(crate) fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Why a provider's answer was not read.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A GET could not be sent, or its answer not received.
    #[error("{url}: {source}")]
    Get {
        /// What was asked for.
        url: String,
        /// reqwest's error.
        source: reqwest::Error,
    },
    /// A GET was answered with an error status.
    #[error("{url} answered {status}")]
    Status {
        /// What was asked for.
        url: String,
        /// The status.
        status: reqwest::StatusCode,
    },
    /// The request or the reading of its answer failed.
    #[error("{0}")]
    Transport(#[source] reqwest::Error),
    /// The answer is larger than [`MAX_RESPONSE`].
    #[error("the answer is larger than 1 MiB")]
    TooLarge,
}

/// A provider that cannot be reached or read is unavailable.
impl From<FetchError> for super::oidc::OAuthError {
    fn from(error: FetchError) -> Self {
        Self::Unavailable(error.to_string())
    }
}

/// GETs `url` as JSON (with a bearer token when given); the body, or why not.
pub(super) async fn get(
    http: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
) -> Result<Vec<u8>, FetchError> {
    let mut request = http.get(url).header("accept", "application/json");
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response =
        request.send().await.map_err(|source| FetchError::Get { url: url.to_owned(), source })?;
    if !response.status().is_success() {
        return Err(FetchError::Status { url: url.to_owned(), status: response.status() });
    }
    read_limited(response).await
}

/// The `oauth2` crate's requests, sent with reqwest (a named type rather than a closure, so
/// that its future is `Send` for every lifetime the crate asks about).
pub(super) struct Http(reqwest::Client);

impl Http {
    pub(super) fn new(http: &reqwest::Client) -> Self {
        Self(http.clone())
    }
}

impl<'c> oauth2::AsyncHttpClient<'c> for Http {
    type Error = HttpError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<oauth2::HttpResponse, HttpError>> + Send + 'c>,
    >;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(send(&self.0, request))
    }
}

/// Sends one of the `oauth2` crate's requests.
async fn send(
    http: &reqwest::Client,
    request: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, HttpError> {
    let (parts, body) = request.into_parts();
    let response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|error| HttpError(FetchError::Transport(error)))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = read_limited(response).await.map_err(HttpError)?;
    let mut out = http::Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

/// A failed provider request, for the `oauth2` crate.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub(crate) struct HttpError(FetchError);

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, FetchError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(FetchError::Transport)? {
        if body.len() + chunk.len() > MAX_RESPONSE {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
