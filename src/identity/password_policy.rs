//! Password rules: long enough, not absurdly long, not the email, and not common or easily
//! guessed (zxcvbn's dictionaries of breached and common passwords, names and patterns).

use crate::identity::Email;

/// Fewest characters accepted.
pub(crate) const MIN_LENGTH: usize = 10;
/// Most characters accepted (argon2 would take more, but nobody types more).
pub(crate) const MAX_LENGTH: usize = 256;

/// Which rule a password breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeakPassword {
    /// Fewer than [`MIN_LENGTH`] characters.
    #[error("password must be at least {MIN_LENGTH} characters")]
    TooShort,
    /// More than [`MAX_LENGTH`] characters.
    #[error("password must be at most {MAX_LENGTH} characters")]
    TooLong,
    /// The email address or its local part.
    #[error("password must not be your email address")]
    IsEmail,
    /// In a common or breached list, or close to one, or built from the user's own details.
    #[error("password is too common or easy to guess{0}")]
    Guessable(String),
}

/// Checks `password` for an account with `email` and `name`.
///
/// # Errors
/// The first rule broken.
pub(crate) fn check(password: &str, email: &Email, name: Option<&str>) -> Result<(), WeakPassword> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Err(WeakPassword::TooShort);
    }
    if length > MAX_LENGTH {
        return Err(WeakPassword::TooLong);
    }
    let lowered = password.to_lowercase();
    if lowered == email.as_str() || lowered == email.local_part() {
        return Err(WeakPassword::IsEmail);
    }
    // The user's own details, whole and word by word, count as a dictionary an attacker has.
    let mut inputs = vec![email.as_str(), email.local_part()];
    inputs.extend(name);
    let words: Vec<&str> = [email.local_part(), name.unwrap_or("")]
        .into_iter()
        .flat_map(|text| text.split(|c: char| !c.is_alphanumeric()))
        .filter(|word| word.chars().count() >= 3)
        .collect();
    inputs.extend(words);
    let estimate = zxcvbn::zxcvbn(password, &inputs);
    if u8::from(estimate.score()) < 2 {
        let hint = estimate
            .feedback()
            .and_then(|feedback| feedback.warning())
            .map(|warning| {
                format!(" ({})", warning.to_string().trim_end_matches('.').to_lowercase())
            })
            .unwrap_or_default();
        return Err(WeakPassword::Guessable(hint));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_apply_in_order() {
        let email = Email::parse("ada.lovelace@example.com").unwrap();
        let check = |password: &str| check(password, &email, Some("Ada Lovelace"));
        assert_eq!(check("short"), Err(WeakPassword::TooShort));
        assert_eq!(check(&"x".repeat(MAX_LENGTH + 1)), Err(WeakPassword::TooLong));
        assert_eq!(check("ADA.LOVELACE@example.com"), Err(WeakPassword::IsEmail));
        assert_eq!(check("ada.lovelace"), Err(WeakPassword::IsEmail));
        for common in [
            "password1234",
            "qwertyuiop",
            "1234567890",
            "iloveyou123",
            "adalovelace",
            "Lovelace2024",
        ] {
            assert!(matches!(check(common), Err(WeakPassword::Guessable(_))), "{common}");
        }
        for fine in ["correct horse battery staple", "vG7#kq!2Lm9z", "Tr0ub4dor&3-sunrise"] {
            assert_eq!(check(fine), Ok(()), "{fine}");
        }
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        let email = Email::parse("a@example.com").unwrap();
        assert_eq!(
            check("ßßßßßßßßß", &email, None),
            Err(WeakPassword::TooShort),
            "9 chars, 18 bytes"
        );
    }
}
