//! Route path patterns, matched against paths that [`super::path`] normalized.
//!
//! Literal segments are kept in the normalized form (`/café` is stored as `/caf%C3%A9`), so a
//! pattern matches a request however its client spelled the path.

use super::path::{PathError, normalize_literal};

/// Why a `[[routes]] path` pattern is refused; the configuration places it under the route's
/// `path` key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The pattern is neither a lone `*` nor starts with `/`.
    #[error("`{pattern}` must start with `/`")]
    NotAbsolute {
        /// The pattern as written.
        pattern: String,
    },
    /// A `{name}` segment whose name is not letters, digits and `_`.
    #[error("`{{{name}}}` in `{pattern}` is not a valid name")]
    BadParamName {
        /// The name between the braces.
        name: String,
        /// The pattern as written.
        pattern: String,
    },
    /// A `*` or `{…}` mixed into a segment with other characters.
    #[error("`{segment}` in `{pattern}`: `*` and `{{name}}` must be whole segments")]
    PartialWildcard {
        /// The segment at fault.
        segment: String,
        /// The pattern as written.
        pattern: String,
    },
    /// A literal segment no normalized path can hold.
    #[error("`{segment}` in `{pattern}`: {reason}")]
    Literal {
        /// The segment at fault.
        segment: String,
        /// The pattern as written.
        pattern: String,
        /// Why the segment is refused.
        reason: PathError,
    },
}

/// A compiled `[[routes]] path`: literal segments, `*` for exactly one segment, `{name}` for one
/// captured segment, and a final `*` for any rest (including none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    segments: Vec<Segment>,
    rest: bool,
    case_insensitive: bool,
    source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Any,
    Param(String),
}

/// A successful match; holds captured `{name}` segments.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PathMatch<'t, 'p> {
    /// Parameter names (from the pattern) and the segments they captured (from the path).
    params: Vec<(&'t str, &'p str)>,
}

impl PathMatch<'_, '_> {
    /// The value captured for `{name}`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(key, _)| *key == name).map(|(_, value)| *value)
    }
}

impl PathPattern {
    /// Parses a pattern such as `/public/*`, `/api/*/items` or `/orgs/{org_id}/*`.
    ///
    /// # Errors
    /// The pattern does not start with `/` (other than a lone `*`), or a `*` or `{…}` is mixed
    /// into a segment with other characters, or a literal segment cannot match a normalized
    /// path: a [`PatternError`], for the caller to place under its key.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let source = text.to_owned();
        if text == "*" {
            return Ok(Self { segments: Vec::new(), rest: true, case_insensitive: false, source });
        }
        let Some(body) = text.strip_prefix('/') else {
            return Err(PatternError::NotAbsolute { pattern: text.to_owned() });
        };
        let mut parts: Vec<&str> = body.split('/').filter(|part| !part.is_empty()).collect();
        let rest = parts.last() == Some(&"*");
        if rest {
            parts.pop();
        }
        let mut segments = Vec::with_capacity(parts.len());
        for part in parts {
            segments.push(match part {
                "*" => Segment::Any,
                _ if part.starts_with('{') && part.ends_with('}') && part.len() > 2 => {
                    let name = &part[1..part.len() - 1];
                    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                        return Err(PatternError::BadParamName {
                            name: name.to_owned(),
                            pattern: text.to_owned(),
                        });
                    }
                    Segment::Param(name.to_owned())
                }
                _ if part.contains(['*', '{', '}']) => {
                    return Err(PatternError::PartialWildcard {
                        segment: part.to_owned(),
                        pattern: text.to_owned(),
                    });
                }
                _ => Segment::Literal(normalize_literal(part).map_err(|reason| {
                    PatternError::Literal {
                        segment: part.to_owned(),
                        pattern: text.to_owned(),
                        reason,
                    }
                })?),
            });
        }
        Ok(Self { segments, rest, case_insensitive: false, source })
    }

    /// The same pattern, matching literal segments without regard to ASCII case (for apps that
    /// route `/Admin` and `/admin` alike).
    #[must_use]
    pub fn case_insensitive(mut self, yes: bool) -> Self {
        self.case_insensitive = yes;
        self
    }

    /// Matches a normalized path. Trailing slashes do not matter (`/admin/` matches `/admin`),
    /// and a final `*` also matches the bare prefix (`/admin/*` matches `/admin`), so a rule
    /// can never be sidestepped by how the app treats a trailing slash.
    pub fn matches<'p>(&self, path: &'p str) -> Option<PathMatch<'_, 'p>> {
        let parts: Vec<&str> = path.split('/').filter(|part| !part.is_empty()).collect();
        self.matches_segments(&parts)
    }

    /// [`Self::matches`] on a path already split into its non-empty segments, so that a table
    /// of rules splits each request path once.
    pub fn matches_segments<'p>(&self, segments: &[&'p str]) -> Option<PathMatch<'_, 'p>> {
        if segments.len() < self.segments.len()
            || (!self.rest && segments.len() > self.segments.len())
        {
            return None;
        }
        let mut params = Vec::new();
        for (segment, part) in self.segments.iter().zip(segments) {
            let part = *part;
            match segment {
                Segment::Literal(literal)
                    if literal == part
                        || (self.case_insensitive && literal.eq_ignore_ascii_case(part)) => {}
                Segment::Literal(_) => return None,
                Segment::Any => {}
                Segment::Param(name) => params.push((name.as_str(), part)),
            }
        }
        Some(PathMatch { params })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_documented() {
        let cases = [
            ("/public/*", "/public/a/b", true, "rest matches deeper paths"),
            ("/public/*", "/public", true, "rest matches the bare prefix"),
            ("/public/*", "/public/", true, "and with a trailing slash"),
            ("/public/*", "/publicity", false, "prefix is by whole segment"),
            ("/health", "/health", true, "exact"),
            ("/health", "/health/", true, "trailing slash is insignificant"),
            ("/health", "/health/x", false, "exact does not match deeper"),
            ("/api/*/items", "/api/v1/items", true, "* is one segment"),
            ("/api/*/items", "/api/items", false, "* needs a segment"),
            ("*", "/anything/at/all", true, "lone * matches everything"),
            ("/*", "/", true, "root rest matches root"),
            ("/Admin", "/admin", false, "matching is case-sensitive"),
        ];
        for (pattern, path, expected, why) in cases {
            let compiled = PathPattern::parse(pattern).unwrap();
            assert_eq!(compiled.matches(path).is_some(), expected, "{why}: {pattern} vs {path}");
        }
    }

    #[test]
    fn params_are_captured() {
        let pattern = PathPattern::parse("/orgs/{org_id}/*").unwrap();
        let matched = pattern.matches("/orgs/abc/settings").unwrap();
        assert_eq!(matched.param("org_id"), Some("abc"));
        assert!(pattern.matches("/orgs").is_none());
    }

    #[test]
    fn literals_are_kept_in_normal_form_and_case_can_be_ignored() {
        let pattern = PathPattern::parse("/café/%7Euser/*").unwrap();
        assert!(pattern.matches("/caf%C3%A9/~user/x").is_some());
        assert!(pattern.matches("/CAF%C3%A9/~user/x").is_none());
        let pattern = pattern.case_insensitive(true);
        assert!(pattern.matches("/CAF%C3%A9/~USER/x").is_some());
        assert!(
            PathPattern::parse("/Admin/*")
                .unwrap()
                .case_insensitive(true)
                .matches("/aDMIN")
                .is_some()
        );
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in [
            "relative", "/a*", "/{}", "/{a-b}", "/x{y}", "/a;b", "/a\\b", "/a%2Fb", "/a/../b",
            "/%zz",
        ] {
            assert!(PathPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
