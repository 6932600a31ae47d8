//! Redirect targets: parsed once into [`SafeRedirect`], which can only hold a same-site
//! relative path or an absolute URL on an allowed origin.
//!
//! Refused: other origins, scheme-relative `//host`, backslash tricks (`/\host`, which browsers
//! read as `//host`), control characters and whitespace, `javascript:` and other schemes.
//!
//! [`RedirectPolicy`] is a value of the compiled configuration (`[auth] redirect_origins` and
//! the public URL); the auth API checks every redirect target and `Origin` against it.

/// Where redirects may point besides relative paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedirectPolicy {
    /// The public URL's origin, when configured.
    public_origin: Option<String>,
    /// `auth.redirect_origins`, as `scheme://host[:port]`.
    extra_origins: Vec<String>,
}

/// A redirect target that passed [`RedirectPolicy::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeRedirect(String);

impl SafeRedirect {
    /// The root path, the default target.
    pub fn root() -> Self {
        Self("/".into())
    }

    /// The target, ready for a `Location` header.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl RedirectPolicy {
    /// A policy allowing relative paths, the public origin and `extra_origins`.
    pub fn new(public_origin: Option<String>, extra_origins: Vec<String>) -> Self {
        Self { public_origin, extra_origins }
    }

    /// The same policy with the public origin known (when it is derived from the listener).
    pub fn with_public_origin(mut self, origin: &str) -> Self {
        self.public_origin.get_or_insert_with(|| origin.to_owned());
        self
    }

    /// Whether `origin` (`scheme://host[:port]`) is ours or configured.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.public_origin.as_deref() == Some(origin)
            || self.extra_origins.iter().any(|allowed| allowed == origin)
    }

    /// Parses and checks a redirect target.
    ///
    /// # Errors
    /// A message saying why the target is refused.
    pub fn check(&self, target: &str) -> Result<SafeRedirect, &'static str> {
        if target.is_empty() {
            return Ok(SafeRedirect::root());
        }
        if target.len() > 2048 {
            return Err("redirect_uri is too long");
        }
        if target.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\') {
            return Err("redirect_uri holds characters that are not allowed");
        }
        if target.starts_with('/') {
            if target.starts_with("//") {
                return Err("redirect_uri must be a relative path or an allowed origin");
            }
            return Ok(SafeRedirect(target.to_owned()));
        }
        let url = url::Url::parse(target).map_err(|_| "redirect_uri is not a valid URL")?;
        if !matches!(url.scheme(), "http" | "https")
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err("redirect_uri must be a relative path or an allowed origin");
        }
        if !self.allows_origin(&url.origin().ascii_serialization()) {
            return Err("redirect_uri must be a relative path or an allowed origin");
        }
        Ok(SafeRedirect(url.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_relative_paths_and_allowed_origins_pass() {
        let policy = RedirectPolicy::new(
            Some("https://app.example.com".into()),
            vec!["https://admin.example.com".into()],
        );
        let allowed = [
            ("", "/"),
            ("/", "/"),
            ("/dashboard?tab=1#top", "/dashboard?tab=1#top"),
            ("https://app.example.com/x", "https://app.example.com/x"),
            ("https://admin.example.com", "https://admin.example.com/"),
        ];
        for (input, expected) in allowed {
            assert_eq!(
                policy.check(input).map(|r| r.as_str().to_owned()),
                Ok(expected.to_owned()),
                "{input}"
            );
        }
        let refused = [
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example/",
            "https://app.example.com.evil.example/",
            "http://app.example.com/",
            "https://user@app.example.com/",
            "javascript:alert(1)",
            "data:text/html,x",
            "/ok\r\nSet-Cookie: x",
            "/\tpath",
            "evil.example",
            "https:evil.example",
        ];
        for input in refused {
            assert!(policy.check(input).is_err(), "{input:?} must be refused");
        }
    }
}
