//! [`KeyError`]: one invalid configuration value, named by its key path. The constructors that
//! build configuration values return it with the key they know (the field inside their section,
//! or none for a value on its own), and the compile step places it under its section.

/// One invalid value and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// Key path; empty while the error is about a value not yet placed under its key.
    pub key: String,
    /// What is wrong and what is expected.
    pub reason: String,
}

impl KeyError {
    /// An error at `key`.
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { key: key.into(), reason: reason.into() }
    }

    /// An error in a value itself, before the caller places it under its key with
    /// [`Self::under`].
    pub fn value(reason: impl Into<String>) -> Self {
        Self::new(String::new(), reason)
    }

    /// The same error with its key placed under `prefix`: `url` under `upstreams[2]` is
    /// `upstreams[2].url`, `[0]` under `routes` is `routes[0]`, and a value's error (no key)
    /// under `server.max_body` is `server.max_body`.
    #[must_use]
    pub fn under(mut self, prefix: &str) -> Self {
        self.key = match (prefix.is_empty(), self.key.is_empty()) {
            (_, true) => prefix.to_owned(),
            (true, false) => self.key,
            (false, false) if self.key.starts_with('[') => format!("{prefix}{}", self.key),
            (false, false) => format!("{prefix}.{}", self.key),
        };
        self
    }
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.key, self.reason)
        }
    }
}

impl std::error::Error for KeyError {}

/// The errors of the layers below, which know no keys, as errors in a value: the compile step
/// places them under the key of the value it gave.
macro_rules! value_errors {
    ($($error:ty),*) => {$(
        impl From<$error> for KeyError {
            fn from(error: $error) -> Self {
                Self::value(error.to_string())
            }
        }
    )*};
}

value_errors!(
    crate::model::InvalidRole,
    crate::model::headers::HeaderNamesError,
    crate::crypto::sealed::InvalidSealKey,
    crate::gateway::upstream::UpstreamError,
    crate::gateway::pattern::PatternError
);

#[cfg(test)]
mod tests {
    use super::KeyError;

    #[test]
    fn places_keys_under_their_section() {
        let field = KeyError::new("url", "bad");
        assert_eq!(field.clone().under("upstreams[2]").key, "upstreams[2].url");
        assert_eq!(KeyError::new("[0]", "bad").under("routes").key, "routes[0]");
        assert_eq!(KeyError::value("bad").under("server.max_body").key, "server.max_body");
        assert_eq!(field.under("").key, "url");
        assert_eq!(KeyError::value("bad").to_string(), "bad");
        assert_eq!(KeyError::new("a.b", "bad").to_string(), "a.b: bad");
    }
}
