//! Steam sign-in (OpenID 2.0): the browser goes to Steam with `openid.*` parameters, comes back
//! with a signed assertion, and Portcullis asks Steam itself whether that assertion is genuine
//! (`check_authentication`) before believing the claimed id, which must be
//! `https://steamcommunity.com/openid/id/<steamid64>`. With an `api_key`, the persona name and
//! avatar come from the Steam Web API.
//!
//! Before Steam is asked, the assertion must be for exactly this flow (`return_to` is the
//! callback with the state of the flow being finished), fresh (`response_nonce` made within
//! [`NONCE_MAX_AGE`]; the caller also spends it once, on every replica), and signed over every
//! field that matters (`openid.signed` covers them), so that fields Steam did not sign cannot
//! be swapped in.
//!
//! Steam shares no email address: new accounts get `<steamid64>@steam.invalid` (a reserved,
//! undeliverable domain), never treated as verified, so a Steam sign-in never joins an account
//! by email; link Steam to an existing account from `GET /auth/link/steam` instead.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

use super::oidc::{Authorization, OAuthError};
use super::outbound::get;
use crate::clock::Timestamp;
use crate::identity::accounts::ExternalUser;
use crate::identity::providers::{Provider, ProviderKind};

const OPENID_NS: &str = "http://specs.openid.net/auth/2.0";
const IDENTIFIER_SELECT: &str = "http://specs.openid.net/auth/2.0/identifier_select";
/// The domain of the placeholder emails of Steam accounts.
pub(crate) const PLACEHOLDER_DOMAIN: &str = "steam.invalid";
/// How old (or how far ahead, for skew) an assertion's `response_nonce` may be.
pub(crate) const NONCE_MAX_AGE: Duration = Duration::from_secs(300);
/// The fields Steam must have signed.
const SIGNED_FIELDS: [&str; 6] =
    ["op_endpoint", "claimed_id", "identity", "return_to", "response_nonce", "assoc_handle"];

/// An assertion that passed the local checks, waiting for Steam's word.
#[derive(Debug)]
pub struct Checked {
    steam_id: String,
    nonce: String,
}

impl Checked {
    /// The assertion's `response_nonce`, to be spent once.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }
}

/// A Steam client.
pub struct SteamClient {
    provider: Provider,
    http: reqwest::Client,
}

impl std::fmt::Debug for SteamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SteamClient").field("provider", &self.provider).finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct Summaries {
    response: Players,
}

#[derive(Debug, Deserialize)]
struct Players {
    players: Vec<Player>,
}

#[derive(Debug, Deserialize)]
struct Player {
    personaname: Option<String>,
    avatarfull: Option<String>,
}

impl SteamClient {
    /// A client for `provider` (of kind Steam).
    pub fn new(provider: Provider, http: reqwest::Client) -> Self {
        Self { provider, http }
    }

    /// The provider.
    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    fn settings(&self) -> Result<(&str, &str, &str, Option<&str>), OAuthError> {
        match &self.provider.kind {
            ProviderKind::Steam { endpoint, identity_prefix, api_url, api_key } => {
                Ok((endpoint, identity_prefix, api_url, api_key.as_deref()))
            }
            _ => Err(OAuthError::Invalid("not a Steam provider".into())),
        }
    }

    /// Starts a sign-in: the state travels in `return_to`, where Steam sends the browser back.
    ///
    /// # Errors
    /// The configuration is not Steam's.
    pub fn authorize(&self, callback: &str, realm: &str) -> Result<Authorization, OAuthError> {
        let (endpoint, ..) = self.settings()?;
        let state = crate::crypto::random_token();
        let return_to = format!("{callback}?state={state}");
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("openid.ns", OPENID_NS)
            .append_pair("openid.mode", "checkid_setup")
            .append_pair("openid.return_to", &return_to)
            .append_pair("openid.realm", realm)
            .append_pair("openid.identity", IDENTIFIER_SELECT)
            .append_pair("openid.claimed_id", IDENTIFIER_SELECT)
            .finish();
        Ok(Authorization {
            url: format!("{endpoint}?{query}"),
            state,
            verifier: String::new(),
            nonce: String::new(),
        })
    }

    /// Checks Steam's answer locally: a positive assertion for exactly this flow's
    /// `return_to`, from our endpoint, for a Steam id, fresh at `now`, signed over every field
    /// that matters.
    ///
    /// # Errors
    /// Any of those fails.
    pub fn finish(
        &self,
        params: &HashMap<String, String>,
        callback: &str,
        flow_state: &str,
        now: Timestamp,
    ) -> Result<Checked, OAuthError> {
        let (endpoint, identity_prefix, ..) = self.settings()?;
        let param = |name: &str| params.get(name).map(String::as_str).unwrap_or("");
        if param("openid.mode") != "id_res" {
            return Err(OAuthError::Invalid("Steam did not confirm the sign-in".into()));
        }
        if param("openid.return_to") != format!("{callback}?state={flow_state}") {
            return Err(OAuthError::Invalid("the assertion was made for another sign-in".into()));
        }
        let signed: Vec<&str> = param("openid.signed").split(',').collect();
        if let Some(missing) = SIGNED_FIELDS.iter().find(|field| !signed.contains(field)) {
            return Err(OAuthError::Invalid(format!("Steam did not sign `{missing}`")));
        }
        let nonce = param("openid.response_nonce");
        let issued = nonce
            .get(..20)
            .and_then(|stamp| humantime::parse_rfc3339(stamp).ok())
            .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|since| i64::try_from(since.as_millis()).ok())
            .ok_or_else(|| OAuthError::Invalid("the assertion's nonce is malformed".into()))?;
        let max_age = i64::try_from(NONCE_MAX_AGE.as_millis()).unwrap_or(i64::MAX);
        if (now.as_millis() - issued).abs() > max_age {
            return Err(OAuthError::Invalid("the assertion is stale".into()));
        }
        if param("openid.op_endpoint") != endpoint {
            return Err(OAuthError::Invalid("the assertion names another endpoint".into()));
        }
        let steam_id = param("openid.claimed_id")
            .strip_prefix(identity_prefix)
            .filter(|id| id.len() == 17 && id.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| OAuthError::Invalid("the claimed id is not a Steam id".into()))?
            .to_owned();
        if param("openid.identity") != param("openid.claimed_id") {
            return Err(OAuthError::Invalid("identity and claimed id differ".into()));
        }
        Ok(Checked { steam_id, nonce: nonce.to_owned() })
    }

    /// Asks Steam whether it really made the assertion `checked` came from, then reads the
    /// persona name and avatar.
    ///
    /// # Errors
    /// Steam cannot be asked, or does not vouch for the assertion.
    pub async fn verify(
        &self,
        params: &HashMap<String, String>,
        checked: Checked,
    ) -> Result<ExternalUser, OAuthError> {
        let (endpoint, _, api_url, api_key) = self.settings()?;
        let steam_id = checked.steam_id;
        // Ask Steam whether it really signed this: every openid.* field back, mode changed.
        let mut form: Vec<(&str, &str)> = params
            .iter()
            .filter(|(name, _)| name.starts_with("openid.") && *name != "openid.mode")
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        form.push(("openid.mode", "check_authentication"));
        let response = self
            .http
            .post(endpoint)
            .form(&form)
            .send()
            .await
            .map_err(|error| OAuthError::Unavailable(format!("Steam: {error}")))?;
        if !response.status().is_success() {
            return Err(OAuthError::Unavailable(format!("Steam answered {}", response.status())));
        }
        let body =
            response.text().await.map_err(|error| OAuthError::Unavailable(error.to_string()))?;
        if !body.lines().any(|line| line.trim() == "is_valid:true") {
            return Err(OAuthError::Invalid("Steam did not vouch for the assertion".into()));
        }
        let player = match api_key {
            Some(key) => self.player(api_url, key, &steam_id).await,
            None => None,
        };
        let (name, avatar_url) = player.map_or((None, None), |p| (p.personaname, p.avatarfull));
        Ok(ExternalUser {
            email: Some(format!("{steam_id}@{PLACEHOLDER_DOMAIN}")),
            subject: steam_id,
            email_verified: false,
            name,
            roles: None,
            avatar_url,
        })
    }

    /// The player summary (persona name, avatar) from the Web API; a failure only costs those.
    async fn player(&self, api_url: &str, key: &str, steam_id: &str) -> Option<Player> {
        let url = format!(
            "{api_url}/ISteamUser/GetPlayerSummaries/v0002/?key={}&steamids={steam_id}",
            url::form_urlencoded::byte_serialize(key.as_bytes()).collect::<String>()
        );
        match get(&self.http, &url, None).await {
            Ok(body) => serde_json::from_slice::<Summaries>(&body)
                .ok()
                .and_then(|summaries| summaries.response.players.into_iter().next()),
            Err(error) => {
                // The key is in the URL: log only that it failed.
                tracing::warn!(error = %error.to_string().replace(key, "<api_key>"), "Steam Web API failed");
                None
            }
        }
    }
}
