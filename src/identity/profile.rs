//! The profile fields a user edits (`PATCH /auth/me`), and their rules: a display name, a
//! unique username, a BCP 47 locale, and an https avatar URL.

use language_tags::LanguageTag;

/// Longest display name, in characters.
const MAX_NAME: usize = 100;
/// Longest avatar URL.
const MAX_URL: usize = 2048;

/// A profile field that breaks its rule; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidProfile {
    /// The display name is too long or holds control characters.
    #[error("name: must be at most {max} characters, without control characters", max = MAX_NAME)]
    Name,
    /// The username breaks the username rule.
    #[error("username: must be 3-32 of a-z, 0-9, _ . -")]
    Username,
    /// The locale is not a language tag; holds it.
    #[error("locale: `{0}` is not a BCP 47 language tag (like en or pt-BR)")]
    Locale(String),
    /// The avatar URL does not parse.
    #[error("avatar_url: not a URL")]
    AvatarNotUrl,
    /// The avatar URL is not https with a host, or has credentials, or is too long.
    #[error("avatar_url: must be an https URL")]
    AvatarNotHttps,
}

/// A display name: trimmed, 1–100 characters, no control characters; empty means none.
///
/// # Errors
/// [`InvalidProfile::Name`].
pub(crate) fn clean_name(name: &str) -> Result<Option<String>, InvalidProfile> {
    let name = name.trim();
    if name.is_empty() {
        return Ok(None);
    }
    if name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(InvalidProfile::Name);
    }
    Ok(Some(name.to_owned()))
}

/// A username: 3–32 of `a-z 0-9 _ . -` (upper case is folded); empty means none.
///
/// # Errors
/// [`InvalidProfile::Username`].
pub(crate) fn clean_username(username: &str) -> Result<Option<String>, InvalidProfile> {
    let username = username.trim().to_ascii_lowercase();
    if username.is_empty() {
        return Ok(None);
    }
    let valid = (3..=32).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if valid { Ok(Some(username)) } else { Err(InvalidProfile::Username) }
}

/// A BCP 47 language tag (`en`, `pt-BR`, `zh-Hant-TW`); empty means none.
///
/// # Errors
/// [`InvalidProfile::Locale`].
pub(crate) fn clean_locale(locale: &str) -> Result<Option<String>, InvalidProfile> {
    let locale = locale.trim();
    if locale.is_empty() {
        return Ok(None);
    }
    match LanguageTag::parse(locale) {
        Ok(tag) if locale.len() <= 35 && tag.is_valid() && tag.primary_language().len() >= 2 => {
            Ok(Some(tag.to_string()))
        }
        _ => Err(InvalidProfile::Locale(locale.to_owned())),
    }
}

/// An avatar image URL: https, with a host, without credentials, at most 2048 characters;
/// empty means none.
///
/// # Errors
/// [`InvalidProfile::AvatarNotUrl`], [`InvalidProfile::AvatarNotHttps`].
pub(crate) fn clean_avatar_url(url: &str) -> Result<Option<String>, InvalidProfile> {
    let url = url.trim();
    if url.is_empty() {
        return Ok(None);
    }
    let parsed = url::Url::parse(url).map_err(|_| InvalidProfile::AvatarNotUrl)?;
    let valid = url.len() <= MAX_URL
        && parsed.scheme() == "https"
        && parsed.host_str().is_some()
        && parsed.username().is_empty()
        && parsed.password().is_none();
    if valid { Ok(Some(parsed.to_string())) } else { Err(InvalidProfile::AvatarNotHttps) }
}

/// The first language of an `Accept-Language` header that is a valid tag, to default a new
/// user's locale.
pub(crate) fn preferred_locale(accept_language: &str) -> Option<String> {
    accept_language
        .split(',')
        .filter_map(|item| item.split(';').next())
        .map(str::trim)
        .filter(|tag| *tag != "*")
        .find_map(|tag| clean_locale(tag).ok().flatten())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_fields_follow_their_rules() {
        assert_eq!(clean_name("  Ada  ").unwrap().as_deref(), Some("Ada"));
        assert_eq!(clean_name(" ").unwrap(), None);
        assert!(clean_name("a\u{7}b").is_err());
        assert_eq!(clean_username("Ada.L").unwrap().as_deref(), Some("ada.l"));
        for bad in ["ab", "a b", "ada!", "é_ada", &"a".repeat(33)] {
            assert!(clean_username(bad).is_err(), "{bad}");
        }
        for good in ["en", "pt-BR", "zh-Hant-TW", "de-CH-1901"] {
            assert_eq!(clean_locale(good).unwrap().as_deref(), Some(good));
        }
        for bad in ["english", "en_US", "12", "en--US", "x"] {
            assert!(clean_locale(bad).is_err(), "{bad}");
        }
        assert!(clean_avatar_url("https://cdn.example.com/a.png").unwrap().is_some());
        for bad in
            ["http://cdn.example.com/a.png", "javascript:alert(1)", "https://u:p@x.com/a", "a"]
        {
            assert!(clean_avatar_url(bad).is_err(), "{bad}");
        }
        assert_eq!(preferred_locale("fr-CH, fr;q=0.9, en;q=0.8").as_deref(), Some("fr-CH"));
        assert_eq!(preferred_locale("*, en-GB;q=0.5").as_deref(), Some("en-GB"));
        assert_eq!(preferred_locale("garbage_!!").as_deref(), None);
    }
}
