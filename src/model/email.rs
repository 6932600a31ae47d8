//! Email addresses, parsed once into a normalized form.

use serde::Serialize;

/// A syntactically valid, normalized (trimmed, lower-cased) email address.
///
/// Parsing refuses anything that could smuggle a header into a message (control characters,
/// line breaks), display-name syntax, and addresses over the RFC 5321 limits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

/// Why a string is not an acceptable email address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    /// Empty after trimming.
    #[error("email is required")]
    Empty,
    /// Longer than 254 bytes, or a local part over 64.
    #[error("email is too long")]
    TooLong,
    /// Not of the form `name@domain.tld`, or holds forbidden characters.
    #[error("email is not a valid address")]
    Invalid,
}

impl Email {
    /// Parses and normalizes `text`.
    ///
    /// # Errors
    /// See [`EmailError`].
    pub fn parse(text: &str) -> Result<Self, EmailError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(EmailError::Empty);
        }
        if text.len() > 254 {
            return Err(EmailError::TooLong);
        }
        let (local, domain) = text.rsplit_once('@').ok_or(EmailError::Invalid)?;
        if local.len() > 64 {
            return Err(EmailError::TooLong);
        }
        let local_ok = !local.is_empty()
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| !c.is_control() && !c.is_whitespace() && !"\"\\<>()[],;:@".contains(c));
        let domain_ok = domain.contains('.')
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if !local_ok || !domain_ok {
            return Err(EmailError::Invalid);
        }
        Ok(Self(text.to_lowercase()))
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after `@`.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, domain)| domain)
    }

    /// The part before `@`.
    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(local, _)| local)
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `domain` is one of `allowed` (an allow-list of email domains; empty: any).
pub(crate) fn domain_allowed(allowed: &[String], domain: &str) -> bool {
    allowed.is_empty() || allowed.iter().any(|allowed| allowed == domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_valid_addresses() {
        assert_eq!(Email::parse("  Ada@Example.COM ").unwrap().as_str(), "ada@example.com");
        let email = Email::parse("first.last+tag@mail.example.org").unwrap();
        assert_eq!(email.domain(), "mail.example.org");
        assert_eq!(email.local_part(), "first.last+tag");
    }

    #[test]
    fn refuses_malformed_and_dangerous_addresses() {
        let cases = [
            ("", EmailError::Empty),
            ("no-at-sign", EmailError::Invalid),
            ("a@b", EmailError::Invalid),
            ("a@b.c\r\nBcc: x@y.z", EmailError::Invalid),
            ("a b@c.de", EmailError::Invalid),
            ("\"quoted\"@c.de", EmailError::Invalid),
            ("Ada <ada@c.de>", EmailError::Invalid),
            (".a@c.de", EmailError::Invalid),
            ("a..b@c.de", EmailError::Invalid),
            ("a@-c.de", EmailError::Invalid),
            ("a@c..de", EmailError::Invalid),
        ];
        for (input, expected) in cases {
            assert_eq!(Email::parse(input), Err(expected), "{input:?}");
        }
        let long_local = format!("{}@c.de", "a".repeat(65));
        assert_eq!(Email::parse(&long_local), Err(EmailError::TooLong));
        let huge = format!("a@{}.de", "b".repeat(1 << 20));
        assert_eq!(Email::parse(&huge), Err(EmailError::TooLong));
    }
}
