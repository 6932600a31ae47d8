//! Route path patterns and request path normalization.
//!
//! Policy is decided on a normalized path (dot segments resolved, slashes merged, unreserved
//! percent-escapes decoded), and that same path is what the upstream receives, so `/a/../admin`
//! or `/%61dmin` can never reach the app as `/admin` after matching as something else.

use std::borrow::Cow;

/// A compiled `[[routes]] path`: literal segments, `*` for exactly one segment, `{name}` for one
/// captured segment, and a final `*` for any rest (including none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    segments: Vec<Segment>,
    rest: bool,
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
pub struct PathMatch<'a> {
    params: Vec<(&'a str, &'a str)>,
}

impl PathMatch<'_> {
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
    /// into a segment with other characters.
    pub fn parse(text: &str) -> Result<Self, String> {
        let source = text.to_owned();
        if text == "*" {
            return Ok(Self { segments: Vec::new(), rest: true, source });
        }
        let Some(body) = text.strip_prefix('/') else {
            return Err(format!("`{text}` must start with `/`"));
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
                        return Err(format!("`{{{name}}}` in `{text}` is not a valid name"));
                    }
                    Segment::Param(name.to_owned())
                }
                _ if part.contains(['*', '{', '}']) => {
                    return Err(format!(
                        "`{part}` in `{text}`: `*` and `{{name}}` must be whole segments"
                    ));
                }
                _ => Segment::Literal(part.to_owned()),
            });
        }
        Ok(Self { segments, rest, source })
    }

    /// Matches a normalized path. Trailing slashes do not matter (`/admin/` matches `/admin`),
    /// and a final `*` also matches the bare prefix (`/admin/*` matches `/admin`), so a rule
    /// can never be sidestepped by how the app treats a trailing slash.
    pub fn matches<'p>(&'p self, path: &'p str) -> Option<PathMatch<'p>> {
        let parts: Vec<&str> = path.split('/').filter(|part| !part.is_empty()).collect();
        self.matches_segments(&parts)
    }

    /// [`Self::matches`] on a path already split into its non-empty segments, so that a table
    /// of rules splits each request path once.
    pub fn matches_segments<'p>(&'p self, segments: &[&'p str]) -> Option<PathMatch<'p>> {
        if segments.len() < self.segments.len()
            || (!self.rest && segments.len() > self.segments.len())
        {
            return None;
        }
        let mut params = Vec::new();
        for (segment, part) in self.segments.iter().zip(segments) {
            let part = *part;
            match segment {
                Segment::Literal(literal) if literal == part => {}
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

/// Why a request path cannot be normalized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Not an absolute path (`*`, an authority, or empty).
    #[error("the request path must start with `/`")]
    NotAbsolute,
    /// A malformed percent-escape or a control character.
    #[error("the request path is malformed")]
    Malformed,
}

/// Normalizes a request path (without query): decodes percent-escapes of unreserved characters,
/// upper-cases the rest, merges repeated slashes and resolves `.` and `..` (never above `/`).
/// Returns the input unchanged, without allocating, when it is already normal.
///
/// # Errors
/// See [`PathError`].
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(PathError::Malformed);
    }
    let needs_work = path.contains('%') || path.contains("//") || has_dot_segment(path);
    if !needs_work {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path)?;
    let mut out: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            _ => out.push(segment),
        }
    }
    let mut normal = String::with_capacity(decoded.len());
    for segment in &out {
        normal.push('/');
        normal.push_str(segment);
    }
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    if normal.is_empty() || (trailing && !out.is_empty()) {
        normal.push('/');
    }
    Ok(Cow::Owned(normal))
}

fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|segment| segment == "." || segment == "..")
}

fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = bytes.get(index + 1..index + 3).ok_or(PathError::Malformed)?;
            let text = std::str::from_utf8(hex).map_err(|_| PathError::Malformed)?;
            let value = u8::from_str_radix(text, 16).map_err(|_| PathError::Malformed)?;
            if value.is_ascii_alphanumeric() || b"-._~".contains(&value) {
                out.push(char::from(value));
            } else {
                out.push('%');
                out.push_str(&text.to_ascii_uppercase());
            }
            index += 3;
        } else {
            // Safe to slice: '%' is ASCII, so runs between escapes are whole UTF-8 sequences.
            let next = path[index..].find('%').map_or(bytes.len(), |offset| index + offset);
            out.push_str(&path[index..next]);
            index = next;
        }
    }
    Ok(out)
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
    fn bad_patterns_are_refused() {
        for bad in ["relative", "/a*", "/{}", "/{a-b}", "/x{y}"] {
            assert!(PathPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_are_normalized_before_matching() {
        let cases = [
            ("/plain/path", "/plain/path"),
            ("/a/../admin", "/admin"),
            ("/a/./b", "/a/b"),
            ("//admin//x", "/admin/x"),
            ("/%61dmin", "/admin"),
            ("/%2e%2e/admin", "/admin"),
            ("/../../etc", "/etc"),
            ("/a/b/..", "/a/"),
            ("/x%2fy", "/x%2Fy"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("/", "/"),
            ("/..", "/"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_path(input).unwrap(), expected, "{input}");
        }
        assert!(matches!(normalize_path("/plain"), Ok(Cow::Borrowed(_))));
        assert_eq!(normalize_path("*"), Err(PathError::NotAbsolute));
        assert_eq!(normalize_path("/bad%zz"), Err(PathError::Malformed));
        assert_eq!(normalize_path("/trunc%2"), Err(PathError::Malformed));
    }
}
