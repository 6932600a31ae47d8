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
    /// A malformed percent-escape, a space, or a control character (raw or encoded).
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
    /// A dot segment hidden behind an encoded slash (`..%2F`), refused even where encoded
    /// slashes are allowed.
    #[error("the request path hides a dot segment behind an encoded slash")]
    EncodedDotSegment,
    /// `;` parameters in a segment, which some servers drop before routing.
    #[error("the request path holds `;` parameters, which servers read differently")]
    MatrixParams,
    /// The path resolves into the auth API's prefix, which the app never serves.
    #[error("the request path resolves into the auth API")]
    AuthPrefix,
    /// Forward-auth: the original path is not in normal form, and the proxy forwards it as
    /// sent, so the app could read it otherwise than the decision did.
    #[error("the original URI's path is not in normal form (dot segments, `//` or escapes)")]
    NotNormal,
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

    /// Whether the path is `sent` but for spelling no server reads differently: the case of
    /// hex digits in escapes (`%c3` for `%C3`) and escapes of characters that mean the same raw
    /// (`%40` for `@`). Dot segments, repeated slashes and the like are differences.
    pub fn is_as_sent(&self, sent: &str) -> bool {
        let bytes = sent.as_bytes();
        let mut forward = self.forward.bytes();
        let mut index = 0;
        while index < bytes.len() {
            let (expected, width) = match unescape(&bytes[index..]) {
                Some(value) if CLASSES[usize::from(value)] == Class::Plain && value != b'.' => {
                    (Some(value), 3)
                }
                Some(_) => {
                    // Kept escaped: the same escape, hex case aside.
                    let escape = &bytes[index..index + 3];
                    let same = escape[0] == b'%'
                        && forward.next() == Some(b'%')
                        && forward.next().map(|b| b.to_ascii_uppercase())
                            == Some(escape[1].to_ascii_uppercase())
                        && forward.next().map(|b| b.to_ascii_uppercase())
                            == Some(escape[2].to_ascii_uppercase());
                    if !same {
                        return false;
                    }
                    index += 3;
                    continue;
                }
                None => (Some(bytes[index]), 1),
            };
            if forward.next() != expected {
                return false;
            }
            index += width;
        }
        forward.next().is_none()
    }

    /// The forwarded path, owned.
    pub fn into_forward(self) -> Cow<'a, str> {
        self.forward
    }
}

/// Normalizes a request path (without query): decodes escapes of characters that mean the
/// same raw (letters, digits, `-._~!$&'()*+,=:@`), upper-cases the other escapes,
/// percent-encodes raw bytes that have no place in a path (non-ASCII, `"`, `{`, …), merges
/// repeated slashes and resolves `.` and `..` (never above `/`). Returns the input unchanged, without
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
    let mut out = String::with_capacity(path.len() + 8);
    // Segments kept so far, contiguous in `out`: where each starts (at its `/`), where its
    // name ends and its `;` parameters begin, and where it ends.
    let mut kept: Vec<(usize, usize, usize)> = Vec::new();
    let mut trailing = false;
    for raw in path[1..].split('/') {
        let start = out.len();
        out.push('/');
        let name_end = decode_segment(raw, &mut out, &mut needs)?;
        let dots = match &out[start + 1..name_end] {
            "" | "." => Some(false),
            ".." => Some(true),
            _ => None,
        };
        trailing = dots.is_some();
        match dots {
            None => kept.push((start, name_end, out.len())),
            Some(up) => {
                out.truncate(start);
                if up && let Some((previous, _, _)) = kept.pop() {
                    out.truncate(previous);
                }
            }
        }
    }
    if out.is_empty() || (trailing && !kept.is_empty()) {
        out.push('/');
    }
    let matching = kept.iter().any(|&(_, name_end, end)| name_end != end).then(|| {
        let mut names = String::with_capacity(out.len());
        for &(start, name_end, _) in &kept {
            names.push_str(&out[start..name_end]);
        }
        if trailing || names.is_empty() {
            names.push('/');
        }
        names
    });
    // Already normal after all (an escape that stays an escape): keep the request's own.
    let forward = if out == path { Cow::Borrowed(path) } else { Cow::Owned(out) };
    Ok(NormalPath { forward, matching, needs })
}

/// What a byte of a path is to normalization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Kept as is, and decoded from an escape: RFC 3986 `pchar` minus `;` (unreserved,
    /// sub-delimiters, `:` and `@`). Frameworks decode these before routing, so `%24batch` and
    /// `$batch` are one path.
    Plain,
    /// Kept escaped (and escaped when raw): bytes outside `pchar`, such as space, `"`, `{`,
    /// `%` itself and non-ASCII; decoding them could change where a path ends or how it reads.
    Escaped,
    /// Structure: never decoded from an escape (`/`, `;`, `\`, `?`, `#`, NUL, controls).
    Structural,
}

const fn class_of(byte: u8) -> Class {
    match byte {
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => Class::Plain,
        b'-' | b'.' | b'_' | b'~' => Class::Plain,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@' => {
            Class::Plain
        }
        b'/' | b';' | b'\\' | b'?' | b'#' | 0..=0x1f | 0x7f => Class::Structural,
        _ => Class::Escaped,
    }
}

/// [`class_of`] for every byte, looked up once per byte on the hot path.
const CLASSES: [Class; 256] = {
    let mut table = [Class::Escaped; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = class_of(byte as u8);
        byte += 1;
    }
    table
};

/// Whether `path` (starting with `/`) might change under normalization: any escape, `;`, `\`,
/// a byte kept escaped (non-ASCII, space, `"`…), a control, an empty segment before the end,
/// or a dot segment.
fn needs_work(path: &[u8]) -> bool {
    let mut segment_start = 1;
    for (index, &byte) in path.iter().enumerate().skip(1) {
        if byte == b'/' {
            if matches!(&path[segment_start..index], b"" | b"." | b"..") {
                return true;
            }
            segment_start = index + 1;
        } else if CLASSES[usize::from(byte)] != Class::Plain {
            return true;
        }
    }
    matches!(&path[segment_start..], b"." | b"..")
}

/// The byte a `%XX` escape at the start of `bytes` stands for (exactly two hex digits).
fn unescape(bytes: &[u8]) -> Option<u8> {
    let hex = |digit: u8| char::from(digit).to_digit(16);
    match bytes {
        [b'%', high, low, ..] => u8::try_from(hex(*high)? * 16 + hex(*low)?).ok(),
        _ => None,
    }
}

/// Appends the normal form of one raw segment to `out` and returns where its name ends: what
/// follows, from the first `;`, is its parameters (forwarded as sent, not matched).
fn decode_segment(
    raw: &str,
    out: &mut String,
    needs: &mut PathOptions,
) -> Result<usize, PathError> {
    let start = out.len();
    let bytes = raw.as_bytes();
    let mut name_end = None;
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte == b';' {
            needs.matrix_params = true;
            name_end.get_or_insert(out.len());
            out.push(';');
            index += 1;
            continue;
        }
        if byte == b'%' {
            let value = unescape(&bytes[index..]).ok_or(PathError::Malformed)?;
            match value {
                0 => return Err(PathError::Nul),
                // Encoded line breaks and other controls have no use in a path, and end up in
                // logs and `Location` headers once an app decodes them.
                1..=0x1f | 0x7f => return Err(PathError::Malformed),
                b'\\' => return Err(PathError::Backslash),
                b'/' => needs.encoded_slashes = true,
                b';' => needs.matrix_params = true,
                _ => {}
            }
            match CLASSES[usize::from(value)] {
                Class::Plain => out.push(char::from(value)),
                Class::Escaped | Class::Structural => push_escape(out, value),
            }
            index += 3;
            continue;
        }
        match CLASSES[usize::from(byte)] {
            Class::Plain => out.push(char::from(byte)),
            Class::Escaped if byte == b' ' => return Err(PathError::Malformed),
            Class::Escaped => push_escape(out, byte),
            Class::Structural if byte == b'\\' => return Err(PathError::Backslash),
            Class::Structural => return Err(PathError::Malformed),
        }
        index += 1;
    }
    let name_end = name_end.unwrap_or(out.len());
    // An app that decodes `%2F` (Tomcat with `encodedSolidusHandling=decode`) would read
    // `..%2F` as a step up: never acceptable, whatever the upstream allows.
    // Likewise `..%3B`, which a server that decodes before dropping `;` parameters reads as `..`.
    let name = &out[start..name_end];
    let behind_slash =
        name.contains("%2F") && name.split("%2F").any(|piece| matches!(piece, "." | ".."));
    let behind_params = name.split("%3B").next().is_some_and(|first| matches!(first, "." | ".."))
        && name.contains("%3B");
    if behind_slash || behind_params {
        return Err(PathError::EncodedDotSegment);
    }
    Ok(name_end)
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
pub(crate) fn normalize_literal(segment: &str) -> Result<String, PathError> {
    let mut needs = PathOptions::default();
    let mut name = String::with_capacity(segment.len());
    decode_segment(segment, &mut name, &mut needs)?;
    if needs.encoded_slashes {
        return Err(PathError::EncodedSlash);
    }
    if needs.matrix_params {
        return Err(PathError::MatrixParams);
    }
    if matches!(name.as_str(), "" | "." | "..") {
        return Err(PathError::Malformed);
    }
    Ok(name)
}

#[cfg(test)]
mod tests;
