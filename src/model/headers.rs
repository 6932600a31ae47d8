//! Identity header names (per preset and override), rendering them for an identity, and
//! recognising client-sent copies that must be stripped.
//!
//! Stripping compares normalized names (lower case, `_` read as `-`), because some servers and
//! frameworks read `X_Auth_User_Id` as `X-Auth-User-Id` (CGI and WSGI turn both into
//! `HTTP_X_AUTH_USER_ID`); a client must not get one through, whatever the names are renamed to.

use http::{HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use bytes::Bytes;
use uuid::Uuid;

use crate::model::{AuthMethod, Identity, OrgRole, Scopes};

/// Every header name starting with this (normalized) is ours and always stripped from clients.
const OWN_PREFIX: &str = "x-auth-";

/// Names oauth2-proxy emits; stripped under every preset so a client cannot spoof an app that
/// used to sit behind oauth2-proxy.
const OAUTH2_PROXY_NAMES: &[&str] = &[
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
];

/// Headers through which a proxy tells an app what the original host, prefix or port was
/// (Symfony, Spring, Django read some of them). Believed only from trusted proxies.
const ROUTING_NAMES: &[&str] = &[
    "forwarded",
    "x-real-ip",
    "x-forwarded-host",
    "x-forwarded-prefix",
    "x-forwarded-port",
    "x-forwarded-server",
    "x-host",
];

/// Headers that name another path or method than the request's own (IIS URL Rewrite,
/// Symfony, Rails' method override). The decision was made on the request's own path and
/// method, so these never reach the app, whoever sent them.
const OVERRIDE_NAMES: &[&str] = &[
    "x-original-url",
    "x-original-uri",
    "x-original-method",
    "x-rewrite-url",
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Whether `name`, in any spelling, names another path or method than the request's own
/// (`X-HTTP-Method-Override`, `X-Original-URL`, …).
pub(crate) fn is_override(name: &HeaderName) -> bool {
    let name = name.as_str();
    let normal: std::borrow::Cow<'_, str> =
        if name.contains('_') { normalize(name).into() } else { name.into() };
    OVERRIDE_NAMES.contains(&&*normal)
}

/// What a client-sent header is to the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// An identity header: always removed.
    Identity,
    /// A header that names another path or method: always removed.
    Override,
    /// A header that names the original host or prefix: removed unless a trusted proxy sent it.
    Routing,
}

/// Characters escaped in header values: controls, non-ASCII and `%` itself, so that apps can
/// always percent-decode and printable ASCII (spaces included) reads as is.
const VALUE_ESCAPES: &AsciiSet = &CONTROLS.add(b'%').add(0x7f);

/// An identity field that has a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// User id.
    UserId,
    /// Primary email.
    Email,
    /// Display name.
    Name,
    /// Username, or the email (oauth2-proxy preset).
    PreferredUsername,
    /// Global roles.
    Roles,
    /// Active organization.
    OrgId,
    /// Role in the active organization.
    OrgRole,
    /// Granted scopes (keys and tokens).
    Scopes,
    /// How the request authenticated.
    Method,
    /// The user's locale (only when a header name is configured).
    Locale,
}

/// What the identity headers are rendered from.
#[derive(Debug)]
pub struct HeaderSource<'a> {
    /// User id.
    pub user_id: Uuid,
    /// Primary email.
    pub email: &'a str,
    /// Display name.
    pub name: Option<&'a str>,
    /// Username.
    pub username: Option<&'a str>,
    /// Global roles.
    pub roles: &'a [String],
    /// Active organization.
    pub active_org: Option<&'a OrgRole>,
    /// Granted scopes.
    pub scopes: &'a Scopes,
    /// How the request authenticated.
    pub method: AuthMethod,
    /// BCP 47 locale.
    pub locale: Option<&'a str>,
}

/// Identity header values rendered once per cached identity: one shared buffer and where
/// each field's value lies in it. Compact, since the cache holds one per active session;
/// handing a value out is a reference-count increment on the buffer.
#[derive(Debug, Clone, Default)]
pub struct RenderedHeaders {
    buffer: Bytes,
    spans: Box<[(Field, u16, u16)]>,
}

impl RenderedHeaders {
    /// The original (decoded) value of `field`, if it was rendered.
    pub fn decoded(&self, field: Field) -> Option<String> {
        let &(_, start, end) = self.spans.iter().find(|(rendered, _, _)| *rendered == field)?;
        let raw = self.buffer.get(usize::from(start)..usize::from(end))?;
        // Rendering escaped `%` itself, so decoding restores exactly what was rendered.
        Some(percent_encoding::percent_decode(raw).decode_utf8_lossy().into_owned())
    }

    /// The values, by field.
    pub fn iter(&self) -> impl Iterator<Item = (Field, HeaderValue)> + '_ {
        self.spans.iter().filter_map(|&(field, start, end)| {
            // Rendering escaped everything outside printable ASCII: always a valid value.
            HeaderValue::from_maybe_shared(self.buffer.slice(usize::from(start)..usize::from(end)))
                .ok()
                .map(|value| (field, value))
        })
    }
}

/// Why a preset with overrides gives no usable header names; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderNamesError {
    /// No such preset.
    #[error("preset `{0}` is not one of: portcullis, oauth2-proxy")]
    UnknownPreset(String),
    /// An override is not a header name.
    #[error("{field}: `{name}` is not a valid header name")]
    Invalid {
        /// The identity field.
        field: String,
        /// The name as configured.
        name: String,
    },
    /// An override names a header the proxy sets or reads itself.
    #[error("{field}: `{name}` is a header the proxy manages itself")]
    Reserved {
        /// The identity field.
        field: String,
        /// The name as configured.
        name: String,
    },
    /// No identity field has this name.
    #[error("unknown header field `{0}`")]
    UnknownField(String),
}

/// The header names each identity field is sent under.
#[derive(Debug, Clone)]
pub struct HeaderNames {
    user_id: Vec<HeaderName>,
    email: Vec<HeaderName>,
    name: Vec<HeaderName>,
    preferred_username: Vec<HeaderName>,
    roles: Vec<HeaderName>,
    org_id: Vec<HeaderName>,
    org_role: Vec<HeaderName>,
    scopes: Vec<HeaderName>,
    method: Vec<HeaderName>,
    assertion: Vec<HeaderName>,
    locale: Vec<HeaderName>,
    /// Every normalized name [`Self::classify`] recognises (besides the `x-auth-` prefix).
    known: Vec<(String, ProxyHeader)>,
    /// First bytes of every name [`Self::classify`] can recognise, so that most headers are
    /// passed over after one lookup.
    first_bytes: [bool; 256],
}

impl HeaderNames {
    /// Names for `preset` (`portcullis` or `oauth2-proxy`) with per-field overrides, given as
    /// `(field, Some(name))`.
    ///
    /// # Errors
    /// An unknown preset or field, or a name that is not a valid header name.
    pub fn new<'a>(
        preset: &str,
        overrides: impl IntoIterator<Item = (&'a str, &'a Option<String>)>,
    ) -> Result<Self, HeaderNamesError> {
        let mut names = match preset {
            "portcullis" => Self::portcullis(),
            "oauth2-proxy" => Self::oauth2_proxy(),
            other => return Err(HeaderNamesError::UnknownPreset(other.to_owned())),
        };
        for (field, name) in overrides {
            let Some(name) = name else { continue };
            let named = || (field.to_owned(), name.clone());
            let header = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
                let (field, name) = named();
                HeaderNamesError::Invalid { field, name }
            })?;
            if is_reserved(&header) {
                let (field, name) = named();
                return Err(HeaderNamesError::Reserved { field, name });
            }
            *names
                .field_mut(field)
                .ok_or_else(|| HeaderNamesError::UnknownField(field.to_owned()))? = vec![header];
        }
        let identity = names
            .all()
            .map(|name| normalize(name.as_str()))
            .chain(OAUTH2_PROXY_NAMES.iter().map(|name| (*name).to_owned()))
            .filter(|name| !name.starts_with(OWN_PREFIX))
            .map(|name| (name, ProxyHeader::Identity));
        let fixed = |list: &'static [&'static str], kind| {
            list.iter().map(move |name| ((*name).to_owned(), kind))
        };
        names.known = identity
            .chain(fixed(OVERRIDE_NAMES, ProxyHeader::Override))
            .chain(fixed(ROUTING_NAMES, ProxyHeader::Routing))
            .collect();
        // Identity first among equal names (renaming to a routing name is refused anyway).
        names.known.sort_by(|(a, kind_a), (b, kind_b)| {
            a.cmp(b)
                .then((*kind_a != ProxyHeader::Identity).cmp(&(*kind_b != ProxyHeader::Identity)))
        });
        names.known.dedup_by(|later, earlier| later.0 == earlier.0);
        names.first_bytes = [false; 256];
        let firsts = names
            .known
            .iter()
            .map(|(name, _)| name.as_str())
            .chain([OWN_PREFIX])
            .filter_map(|name| name.bytes().next());
        for first in firsts {
            names.first_bytes[usize::from(first)] = true;
            // A client may spell a leading `-` as `_`.
            if first == b'-' {
                names.first_bytes[usize::from(b'_')] = true;
            }
        }
        Ok(names)
    }

    fn portcullis() -> Self {
        let one = |name: &'static str| vec![HeaderName::from_static(name)];
        Self {
            user_id: one("x-auth-user-id"),
            email: one("x-auth-email"),
            name: one("x-auth-name"),
            preferred_username: Vec::new(),
            roles: one("x-auth-roles"),
            org_id: one("x-auth-org-id"),
            org_role: one("x-auth-org-role"),
            scopes: one("x-auth-scopes"),
            method: one("x-auth-method"),
            assertion: one("x-auth-assertion"),
            locale: Vec::new(),
            known: Vec::new(),
            first_bytes: [false; 256],
        }
    }

    fn oauth2_proxy() -> Self {
        let two = |a: &'static str, b: &'static str| {
            vec![HeaderName::from_static(a), HeaderName::from_static(b)]
        };
        Self {
            user_id: two("x-forwarded-user", "x-auth-request-user"),
            email: two("x-forwarded-email", "x-auth-request-email"),
            roles: two("x-forwarded-groups", "x-auth-request-groups"),
            preferred_username: two(
                "x-forwarded-preferred-username",
                "x-auth-request-preferred-username",
            ),
            ..Self::portcullis()
        }
    }

    fn field_mut(&mut self, field: &str) -> Option<&mut Vec<HeaderName>> {
        Some(match field {
            "user_id" => &mut self.user_id,
            "email" => &mut self.email,
            "name" => &mut self.name,
            "roles" => &mut self.roles,
            "org_id" => &mut self.org_id,
            "org_role" => &mut self.org_role,
            "scopes" => &mut self.scopes,
            "method" => &mut self.method,
            "assertion" => &mut self.assertion,
            "locale" => &mut self.locale,
            _ => return None,
        })
    }

    fn all(&self) -> impl Iterator<Item = &HeaderName> {
        [
            &self.user_id,
            &self.email,
            &self.name,
            &self.preferred_username,
            &self.roles,
            &self.org_id,
            &self.org_role,
            &self.scopes,
            &self.method,
            &self.assertion,
            &self.locale,
        ]
        .into_iter()
        .flatten()
    }

    /// The header names `field` is sent under (none when the preset leaves it out).
    pub fn names(&self, field: Field) -> &[HeaderName] {
        match field {
            Field::UserId => &self.user_id,
            Field::Email => &self.email,
            Field::Name => &self.name,
            Field::PreferredUsername => &self.preferred_username,
            Field::Roles => &self.roles,
            Field::OrgId => &self.org_id,
            Field::OrgRole => &self.org_role,
            Field::Scopes => &self.scopes,
            Field::Method => &self.method,
            Field::Locale => &self.locale,
        }
    }

    /// Renders the identity header values once, for caching with the identity: fields without
    /// a value are left out (the client's copies are stripped regardless), and all values
    /// share one buffer.
    pub fn render(&self, source: &HeaderSource<'_>) -> RenderedHeaders {
        let mut buffer = String::with_capacity(160);
        let mut spans: Vec<(Field, usize, usize)> = Vec::with_capacity(10);
        let mut push = |field: Field, value: &str| {
            if value.is_empty() || self.names(field).is_empty() {
                return;
            }
            let start = buffer.len();
            buffer.extend(utf8_percent_encode(value, VALUE_ESCAPES));
            spans.push((field, start, buffer.len()));
        };
        push(Field::UserId, &source.user_id.hyphenated().to_string());
        push(Field::Email, source.email);
        push(Field::Name, source.name.unwrap_or(""));
        push(Field::PreferredUsername, source.username.unwrap_or(source.email));
        push(Field::Roles, &source.roles.join(","));
        if let Some(org) = source.active_org {
            push(Field::OrgId, &org.org_id.to_string());
            push(Field::OrgRole, &org.role);
        }
        if let Scopes::Only(scopes) = source.scopes {
            push(Field::Scopes, &scopes.join(","));
        }
        push(Field::Method, source.method.as_str());
        push(Field::Locale, source.locale.unwrap_or(""));
        let spans = spans
            .into_iter()
            .filter_map(|(field, start, end)| {
                Some((field, u16::try_from(start).ok()?, u16::try_from(end).ok()?))
            })
            .collect();
        RenderedHeaders { buffer: Bytes::from(buffer.into_bytes().into_boxed_slice()), spans }
    }

    /// The identity headers of `identity`, name by name.
    pub fn pairs<'a>(
        &'a self,
        identity: &'a Identity,
    ) -> impl Iterator<Item = (&'a HeaderName, HeaderValue)> + 'a {
        identity.rendered_headers().iter().flat_map(move |(field, value)| {
            self.names(field).iter().map(move |name| (name, value.clone()))
        })
    }

    /// Inserts (never appends) the identity headers of `identity` into `headers`.
    pub fn insert_into(&self, identity: &Identity, headers: &mut http::HeaderMap) {
        for (name, value) in self.pairs(identity) {
            headers.insert(name.clone(), value);
        }
    }

    /// Every identity header name, each with the identity's value or else empty: the answer
    /// of forward-auth, so that a proxy copying these headers onto the request overwrites a
    /// client's copy even of a field this identity lacks (Traefik passes a header the answer
    /// leaves out straight through; Caddy 2.6 sends its placeholder's text).
    pub fn insert_complete(&self, identity: Option<&Identity>, headers: &mut http::HeaderMap) {
        for name in self.all() {
            headers.insert(name.clone(), HeaderValue::from_static(""));
        }
        if let Some(identity) = identity {
            self.insert_into(identity, headers);
        }
    }

    /// Whether `name` is an identity header a client must never send upstream.
    pub fn is_identity_header(&self, name: &HeaderName) -> bool {
        self.classify(name) == Some(ProxyHeader::Identity)
    }

    /// What a client-sent header `name` is to the proxy, in any spelling (case, `_` for `-`).
    pub fn classify(&self, name: &HeaderName) -> Option<ProxyHeader> {
        let name = name.as_str();
        let first = name.bytes().next()?;
        // Fast path: most headers start with a byte no name we know starts with (HeaderName is
        // lower case already; a leading `_` is marked where a known name starts with `-`).
        if !self.first_bytes[usize::from(first)] {
            return None;
        }
        let normal: std::borrow::Cow<'_, str> =
            if name.contains('_') { normalize(name).into() } else { name.into() };
        if normal.starts_with(OWN_PREFIX) {
            return Some(ProxyHeader::Identity);
        }
        // A short list, compared by length first: faster than a binary search of strings.
        self.known.iter().find(|(known, _)| *known == *normal).map(|(_, kind)| *kind)
    }

    /// The assertion header names (for the assertion signer).
    pub fn assertion(&self) -> &[HeaderName] {
        &self.assertion
    }
}

impl Default for HeaderNames {
    fn default() -> Self {
        Self::new("portcullis", []).unwrap_or_else(|_| Self::portcullis())
    }
}

fn normalize(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// Headers the proxy sets itself and that an identity field must not be renamed to.
fn is_reserved(name: &HeaderName) -> bool {
    ROUTING_NAMES.contains(&name.as_str())
        || OVERRIDE_NAMES.contains(&name.as_str())
        || matches!(
            name.as_str(),
            "host"
                | "cookie"
                | "authorization"
                | "x-forwarded-for"
                | "x-forwarded-proto"
                | "x-forwarded-host"
                | "x-request-id"
                | "connection"
                | "content-length"
                | "transfer-encoding"
        )
}

#[cfg(test)]
mod tests;
