//! Request paths: one meaning or none.
//!
//! The policy decides on exactly the path the app will see. Servers disagree on what some
//! paths mean: Tomcat and Spring drop `;` parameters from a segment (`/public/..;/admin` is
//! `/admin` to them), IIS reads `\` as `/`, an nginx that decodes slashes reads `%2F` as a
//! separator, C code stops at a NUL. So [`normalize_path`] resolves what has one meaning (dot
//! segments, repeated slashes, escapes of unreserved characters, raw non-ASCII) into one form,
//! refuses what never has one (`\`, `%5C`, `%00`, controls), and reports what an upstream may
//! opt into ([`PathOptions`]): encoded slashes, kept encoded, and `;` parameters, matched
//! without them and forwarded with them, so that an app that drops them sees the matched path.
//!
//! This module must not look at hosts, methods or rules; it only reads a path.

use std::borrow::Cow;

/// Constructs an upstream may accept in request paths (`[[upstreams]] allow_encoded_slashes`,
/// `allow_matrix_params`); both are refused unless the upstream serving the path opts in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathOptions {
    /// `%2F` inside a segment, kept encoded, so the segment stays one segment.
    pub encoded_slashes: bool,
    /// `;` parameters in segments (and `%3B`): rules match the path without them, the app
    /// receives them.
    pub matrix_params: bool,
}

impl PathOptions {
    /// The first construct `needed` uses that these options do not allow.
    ///
    /// # Errors
    /// [`PathError::EncodedSlash`] or [`PathError::MatrixParams`].
    pub fn permit(self, needed: Self) -> Result<(), PathError> {
        if needed.encoded_slashes && !self.encoded_slashes {
            return Err(PathError::EncodedSlash);
        }
        if needed.matrix_params && !self.matrix_params {
            return Err(PathError::MatrixParams);
        }
        Ok(())
    }
}

/// Why a request path is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Not an absolute path (`*`, an authority, or empty).
    #[error("the request path must start with `/`")]
    NotAbsolute,
    /// A malformed percent-escape, a space or a control character.
    #[error("the request path is malformed")]
    Malformed,
    /// `\` or `%5C`, which some servers read as `/`.
    #[error("the request path holds a backslash (`\\` or %5C), which servers read differently")]
    Backslash,
    /// `%00`, which ends the path for some servers.
    #[error("the request path holds an encoded NUL (%00)")]
    Nul,
    /// `%2F`, which some servers decode into a separator.
    #[error("the request path holds an encoded slash (%2F), which servers read differently")]
    EncodedSlash,
    /// `;` parameters in a segment, which some servers drop before routing.
    #[error("the request path holds `;` parameters, which servers read differently")]
    MatrixParams,
    /// The path resolves into the auth API's prefix, which the app never serves.
    #[error("the request path resolves into the auth API")]
    AuthPrefix,
}

/// A normalized request path: the form forwarded to the app, the form rules match, and the
/// opt-in constructs it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath<'a> {
    forward: Cow<'a, str>,
    /// Differs from `forward` only when segments carry `;` parameters.
    matching: Option<String>,
    needs: PathOptions,
}

impl<'a> NormalPath<'a> {
    /// The path the app receives.
    pub fn forward(&self) -> &str {
        &self.forward
    }

    /// The path rules and upstream prefixes are matched against.
    pub fn matching(&self) -> &str {
        self.matching.as_deref().unwrap_or(&self.forward)
    }

    /// The opt-in constructs the path holds.
    pub fn needs(&self) -> PathOptions {
        self.needs
    }

    /// Whether the path is the request's own, unchanged (it can be forwarded as sent).
    pub fn is_unchanged(&self) -> bool {
        matches!(self.forward, Cow::Borrowed(_))
    }

    /// The forwarded path, owned.
    pub fn into_forward(self) -> Cow<'a, str> {
        self.forward
    }
}

/// Normalizes a request path (without query): decodes escapes of unreserved characters,
/// upper-cases the other escapes, percent-encodes raw non-ASCII bytes, merges repeated slashes
/// and resolves `.` and `..` (never above `/`). Returns the input unchanged, without
/// allocating, when it is already normal.
///
/// # Errors
/// See [`PathError`]; encoded slashes and `;` parameters are not errors here but reported by
/// [`NormalPath::needs`], for the upstream to permit or not.
pub fn normalize_path(path: &str) -> Result<NormalPath<'_>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if !needs_work(path.as_bytes()) {
        return Ok(NormalPath {
            forward: Cow::Borrowed(path),
            matching: None,
            needs: PathOptions::default(),
        });
    }
    let mut needs = PathOptions::default();
    let mut kept: Vec<Segment> = Vec::new();
    let mut trailing = false;
    for raw in path[1..].split('/') {
        let segment = Segment::decode(raw, &mut needs)?;
        trailing = matches!(segment.name.as_str(), "" | "." | "..");
        match segment.name.as_str() {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            _ => kept.push(segment),
        }
    }
    let join = |with_params: bool| {
        let mut out = String::with_capacity(path.len() + 8);
        for segment in &kept {
            out.push('/');
            out.push_str(&segment.name);
            if with_params {
                out.push_str(&segment.params);
            }
        }
        if out.is_empty() || (trailing && !kept.is_empty()) {
            out.push('/');
        }
        out
    };
    let has_params = kept.iter().any(|segment| !segment.params.is_empty());
    let forward = join(true);
    // Already normal after all (an escape that stays an escape): keep the request's own.
    let forward = if forward == path { Cow::Borrowed(path) } else { Cow::Owned(forward) };
    Ok(NormalPath { forward, matching: has_params.then(|| join(false)), needs })
}

/// Whether `path` (starting with `/`) might change under normalization: any escape, `;`, `\`,
/// non-ASCII byte, control or space, an empty segment before the end, or a dot segment.
fn needs_work(path: &[u8]) -> bool {
    let mut segment_start = 1;
    for (index, &byte) in path.iter().enumerate().skip(1) {
        match byte {
            b'/' => {
                if matches!(&path[segment_start..index], b"" | b"." | b"..") {
                    return true;
                }
                segment_start = index + 1;
            }
            b'%' | b';' | b'\\' | 0x80..=0xff | 0..=0x20 | 0x7f => return true,
            _ => {}
        }
    }
    matches!(&path[segment_start..], b"." | b"..")
}

/// One decoded segment: its name (what rules match) and its `;` parameters (forwarded as sent).
#[derive(Debug)]
struct Segment {
    name: String,
    params: String,
}

impl Segment {
    fn decode(raw: &str, needs: &mut PathOptions) -> Result<Self, PathError> {
        let bytes = raw.as_bytes();
        let mut name = String::with_capacity(raw.len());
        let mut params = String::new();
        let mut index = 0;
        while index < bytes.len() {
            let byte = bytes[index];
            if byte == b';' {
                // Everything from the first `;` on is parameters, forwarded as sent.
                needs.matrix_params = true;
                params.push(';');
                index += 1;
                continue;
            }
            let out = if params.is_empty() { &mut name } else { &mut params };
            match byte {
                b'%' => {
                    let value = bytes
                        .get(index + 1..index + 3)
                        .and_then(|hex| std::str::from_utf8(hex).ok())
                        .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                        .ok_or(PathError::Malformed)?;
                    match value {
                        0 => return Err(PathError::Nul),
                        b'\\' => return Err(PathError::Backslash),
                        b'/' => needs.encoded_slashes = true,
                        b';' => needs.matrix_params = true,
                        _ => {}
                    }
                    if value.is_ascii_alphanumeric() || b"-._~".contains(&value) {
                        out.push(char::from(value));
                    } else {
                        push_escape(out, value);
                    }
                    index += 3;
                    continue;
                }
                b'\\' => return Err(PathError::Backslash),
                0..=0x20 | 0x7f => return Err(PathError::Malformed),
                0x80..=0xff => push_escape(out, byte),
                _ => out.push(char::from(byte)),
            }
            index += 1;
        }
        Ok(Self { name, params })
    }
}

fn push_escape(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0xf)]));
}

/// The form a `[[routes]] path` literal segment must have to match normalized paths: escapes
/// resolved as [`normalize_path`] does, non-ASCII percent-encoded.
///
/// # Errors
/// The segment is a dot segment, or holds `;`, `\`, `%2F`, `%5C`, `%00` or a bad escape.
pub fn normalize_literal(segment: &str) -> Result<String, PathError> {
    let mut needs = PathOptions::default();
    let decoded = Segment::decode(segment, &mut needs)?;
    if needs != PathOptions::default() {
        return Err(if needs.encoded_slashes {
            PathError::EncodedSlash
        } else {
            PathError::MatrixParams
        });
    }
    if matches!(decoded.name.as_str(), "" | "." | "..") {
        return Err(PathError::Malformed);
    }
    Ok(decoded.name)
}

#[cfg(test)]
mod tests;
