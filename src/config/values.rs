//! Value types of the raw configuration that accept both TOML and environment spellings.
//!
//! Environment overrides arrive as strings, so a flag may be `true` in TOML and `"true"` from
//! `PORTCULLIS_AUTH__SIGNUP`, and a list may be a TOML array or `"a,b"`. These types accept both
//! and serialize back to the natural TOML type for `check-config`.

use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::KeyError;

/// A boolean that also accepts `"true"`/`"false"` (and `1`/`0`) strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FlagVisitor;
        impl Visitor<'_> for FlagVisitor {
            type Value = Flag;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("true or false")
            }
            fn visit_bool<E: de::Error>(self, value: bool) -> Result<Flag, E> {
                Ok(Flag(value))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Flag, E> {
                match value.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" | "on" => Ok(Flag(true)),
                    "false" | "0" | "no" | "off" => Ok(Flag(false)),
                    _ => Err(E::invalid_value(de::Unexpected::Str(value), &self)),
                }
            }
        }
        deserializer.deserialize_any(FlagVisitor)
    }
}

impl Serialize for Flag {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bool(self.0)
    }
}

/// A non-negative integer that also accepts its decimal string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Count(pub u32);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CountVisitor;
        impl Visitor<'_> for CountVisitor {
            type Value = Count;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a non-negative integer")
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Count, E> {
                u32::try_from(value)
                    .map(Count)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(value), &self))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Count, E> {
                u32::try_from(value)
                    .map(Count)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(value), &self))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Count, E> {
                value
                    .trim()
                    .parse()
                    .map(Count)
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(value), &self))
            }
        }
        deserializer.deserialize_any(CountVisitor)
    }
}

impl Serialize for Count {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(self.0)
    }
}

/// A list of strings: a TOML array, or one comma-separated string from the environment.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct StringList(pub Vec<String>);

impl<'de> Deserialize<'de> for StringList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            List(Vec<String>),
            Text(String),
        }
        Ok(match Either::deserialize(deserializer)? {
            Either::List(items) => Self(items),
            Either::Text(text) => Self(
                text.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
        })
    }
}

impl StringList {
    /// Whether the list has no items.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Parses a duration such as `"30s"`, `"15m"`, `"7d"` or `"250ms"`.
///
/// # Errors
/// Not a duration: an error in the value, for the caller to place under its key.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, KeyError> {
    humantime::parse_duration(text.trim()).map_err(|error| {
        KeyError::value(format!("{error} (expected a duration such as \"30s\", \"15m\" or \"7d\")"))
    })
}

/// Parses a byte size such as `"10MiB"`, `"512KiB"` or `"1GB"`.
///
/// # Errors
/// Not a size: an error in the value, for the caller to place under its key.
pub(crate) fn parse_size(text: &str) -> Result<u64, KeyError> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|error| KeyError::value(format!("{error} (expected a size such as \"10MiB\")")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Sample {
        flag: Flag,
        count: Count,
        list: StringList,
    }

    #[test]
    fn accepts_toml_and_environment_spellings() {
        let toml: Sample = toml::from_str("flag = true\ncount = 5\nlist = [\"a\", \"b\"]").unwrap();
        let env: Sample =
            toml::from_str("flag = \"true\"\ncount = \"5\"\nlist = \"a, b,\"").unwrap();
        for sample in [toml, env] {
            assert_eq!(sample.flag, Flag(true));
            assert_eq!(sample.count, Count(5));
            assert_eq!(sample.list.0, ["a", "b"]);
        }
    }

    #[test]
    fn rejects_nonsense() {
        assert!(toml::from_str::<Sample>("flag = \"maybe\"\ncount = 1\nlist = []").is_err());
        assert!(toml::from_str::<Sample>("flag = true\ncount = -1\nlist = []").is_err());
    }

    #[test]
    fn parses_durations_and_sizes() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_size("10MiB"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_size("1 KiB"), Ok(1024));
        assert!(parse_size("big").is_err());
    }
}
