//! Loading: file, then `PORTCULLIS_*` environment overrides, then `*_file` secrets, into
//! [`RawConfig`], with errors that name the key.

use std::path::Path;

use toml::{Table, Value};

use super::ConfigError;
use super::raw::RawConfig;

/// Prefix of environment overrides.
pub(crate) const ENV_PREFIX: &str = "PORTCULLIS_";

/// Keys that hold secrets: they may be given as `KEY_file`, and `check-config` masks them.
const SECRET_KEYS: &[&str] = &[
    "secret",
    "client_secret",
    "api_key",
    "database_url",
    "database_direct_url",
    "redis_url",
    "redis_sentinel_password",
    "smtp_url",
    "secrets_key",
];

/// Keys that hold lists of secrets: masked item by item.
const SECRET_LISTS: &[&str] = &["secrets_key_previous"];

/// Environment variables that configure the CLI rather than the file.
const NOT_OVERRIDES: &[&str] = &["PORTCULLIS_CONFIG"];

/// Reads the file at `path` (or starts from an empty one), applies environment overrides from
/// `env`, resolves `*_file` secrets and deserializes.
///
/// # Errors
/// A read or syntax error, an override that does not fit, an unreadable secret file, or a key
/// that is unknown or of the wrong type (named by its path).
pub(crate) fn load(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<RawConfig, ConfigError> {
    let mut table = match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
            text.parse::<Table>().map_err(|error| ConfigError::Syntax {
                path: path.display().to_string(),
                message: error.to_string(),
            })?
        }
        None => Table::new(),
    };
    apply_env(&mut table, env)?;
    resolve_secret_files(&mut table, "")?;
    deserialize(table)
}

/// Deserializes a table, naming the key of the first error.
pub(crate) fn deserialize(table: Table) -> Result<RawConfig, ConfigError> {
    serde_path_to_error::deserialize(Value::Table(table)).map_err(|error| {
        let key = error.path().to_string();
        ConfigError::Schema {
            key: if key == "." { String::new() } else { key },
            reason: error.into_inner().to_string(),
        }
    })
}

/// Applies `PORTCULLIS_A__B__C=value` as `a.b.c = value`. Values are strings, except that one
/// starting with `[` or `{` is read as a TOML array or inline table. A numeric segment indexes an
/// array (`PORTCULLIS_UPSTREAMS__0__URL`).
fn apply_env(
    table: &mut Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let mut overrides: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX) && !NOT_OVERRIDES.contains(&name.as_str()))
        .collect();
    // Apply in a fixed order so that `A__0__X` and `A__1__X` build arrays predictably.
    overrides.sort();
    for (name, raw) in overrides {
        let path: Vec<String> =
            name[ENV_PREFIX.len()..].split("__").map(str::to_ascii_lowercase).collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::Env { var: name, reason: "empty key segment".into() });
        }
        let value =
            env_value(&raw).map_err(|reason| ConfigError::Env { var: name.clone(), reason })?;
        set_path(table, &path, value).map_err(|reason| ConfigError::Env { var: name, reason })?;
    }
    Ok(())
}

fn env_value(raw: &str) -> Result<Value, String> {
    let trimmed = raw.trim_start();
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        let table: Table = format!("v = {raw}").parse().map_err(|error: toml::de::Error| {
            format!("not a TOML array or table: {}", error.message())
        })?;
        table.get("v").cloned().ok_or_else(|| "empty value".to_owned())
    } else {
        Ok(Value::String(raw.to_owned()))
    }
}

fn set_path(table: &mut Table, path: &[String], value: Value) -> Result<(), String> {
    let Some((first, rest)) = path.split_first() else {
        return Err("empty key".into());
    };
    if rest.is_empty() {
        table.insert(first.clone(), value);
        return Ok(());
    }
    let child = table.entry(first.clone()).or_insert_with(|| {
        if rest[0].parse::<usize>().is_ok() {
            Value::Array(Vec::new())
        } else {
            Table::new().into()
        }
    });
    set_in_value(child, rest, value, first)
}

fn set_in_value(node: &mut Value, path: &[String], value: Value, at: &str) -> Result<(), String> {
    match node {
        Value::Table(table) => set_path(table, path, value),
        Value::Array(items) => {
            let index: usize =
                path[0].parse().map_err(|_| format!("`{at}` is a list: use a numeric index"))?;
            if index > items.len() {
                return Err(format!("index {index} of `{at}` skips entries"));
            }
            if index == items.len() {
                items.push(Table::new().into());
            }
            if path.len() == 1 {
                items[index] = value;
                return Ok(());
            }
            set_in_value(&mut items[index], &path[1..], value, at)
        }
        _ => Err(format!("`{at}` is not a table")),
    }
}

/// Replaces every `KEY_file = "/path"` of a secret key by `KEY = <file contents>`.
fn resolve_secret_files(table: &mut Table, prefix: &str) -> Result<(), ConfigError> {
    let keys: Vec<String> = table.keys().cloned().collect();
    for key in keys {
        let full_key = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        if let Some(base) = key.strip_suffix("_file").filter(|base| SECRET_KEYS.contains(base)) {
            let Some(Value::String(file)) = table.remove(&key) else {
                return Err(ConfigError::Schema {
                    key: full_key,
                    reason: "expected a file path".into(),
                });
            };
            if table.contains_key(base) {
                return Err(ConfigError::Schema {
                    key: full_key,
                    reason: format!("both `{base}` and `{key}` are set: keep one"),
                });
            }
            let contents = std::fs::read_to_string(&file)
                .map_err(|source| ConfigError::SecretFile { key: full_key, path: file, source })?;
            // Files written by editors and `kubectl create secret` often end in a newline.
            table.insert(
                base.to_owned(),
                Value::String(contents.trim_end_matches(['\r', '\n']).to_owned()),
            );
            continue;
        }
        match table.get_mut(&key) {
            Some(Value::Table(child)) => resolve_secret_files(child, &full_key)?,
            Some(Value::Array(items)) => {
                for (index, item) in items.iter_mut().enumerate() {
                    if let Value::Table(child) = item {
                        resolve_secret_files(child, &format!("{full_key}[{index}]"))?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The effective configuration as TOML with every secret masked, for `check-config`.
///
/// # Errors
/// Only if serialization fails, which would be a bug in the schema.
pub(crate) fn render_masked(raw: &RawConfig) -> Result<String, toml::ser::Error> {
    let mut value = Value::try_from(raw)?;
    if let Value::Table(table) = &mut value {
        mask(table);
    }
    toml::to_string_pretty(&value)
}

fn mask(table: &mut Table) {
    for (key, value) in table.iter_mut() {
        match value {
            Value::String(text) if SECRET_KEYS.contains(&key.as_str()) => {
                *text =
                    if key.ends_with("_url") { mask_url_password(text) } else { "********".into() };
            }
            // Lists of secrets (`secrets_key_previous`): every item masked.
            Value::Array(items) if SECRET_LISTS.contains(&key.as_str()) => {
                items.iter_mut().for_each(|item| *item = Value::String("********".into()));
            }
            Value::Table(child) => mask(child),
            Value::Array(items) => items.iter_mut().for_each(|item| {
                if let Value::Table(child) = item {
                    mask(child);
                }
            }),
            _ => {}
        }
    }
}

/// `scheme://user:password@host` → `scheme://user:********@host`; URLs without a password stay.
pub(crate) fn mask_url_password(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) if url.password().is_some() => {
            // Setting a password only fails for URLs that cannot have one, ruled out above.
            let _ = url.set_password(Some("********"));
            url.to_string()
        }
        Ok(_) => text.to_owned(),
        Err(_) => "********".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn load_str(text: &str, vars: &[(&str, &str)]) -> Result<RawConfig, ConfigError> {
        let mut table: Table = text.parse().unwrap();
        apply_env(&mut table, env(vars))?;
        resolve_secret_files(&mut table, "")?;
        deserialize(table)
    }

    #[test]
    fn environment_overrides_any_key_by_path() {
        let raw = load_str(
            "[server]\nlisten = \"127.0.0.1:1\"\n",
            &[
                ("PORTCULLIS_SERVER__PUBLIC_URL", "https://app.example.com"),
                ("PORTCULLIS_SERVER__LISTEN", "0.0.0.0:8080"),
                ("PORTCULLIS_AUTH__SIGNUP", "false"),
                ("PORTCULLIS_RATE_LIMIT__AUTH_PER_MINUTE", "7"),
                ("PORTCULLIS_PROVIDERS__GITHUB__CLIENT_SECRET", "12345"),
                ("PORTCULLIS_UPSTREAMS__0__NAME", "app"),
                ("PORTCULLIS_UPSTREAMS__0__URL", "http://127.0.0.1:3000"),
                ("PORTCULLIS_AUTH__REDIRECT_ORIGINS", "[\"https://a.example\"]"),
                ("PORTCULLIS_CONFIG", "ignored.toml"),
                ("OTHER", "ignored"),
            ],
        )
        .unwrap();
        assert_eq!(raw.server.listen, "0.0.0.0:8080");
        assert_eq!(raw.server.public_url.as_deref(), Some("https://app.example.com"));
        assert!(!raw.auth.signup.0);
        assert_eq!(raw.rate_limit.auth_per_minute.0, 7);
        assert_eq!(raw.providers["github"].client_secret.as_deref(), Some("12345"));
        assert_eq!(raw.upstreams[0].url, "http://127.0.0.1:3000");
        assert_eq!(raw.auth.redirect_origins.0, ["https://a.example"]);
    }

    #[test]
    fn unknown_keys_are_refused_with_their_path() {
        let error = load_str("[server]\nlisten_addr = \"x\"\n", &[]).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("server") && text.contains("listen_addr"), "{text}");

        let error = load_str("[[routes]]\npath = \"/a\"\nrole = [\"x\"]\n", &[]).unwrap_err();
        assert!(error.to_string().contains("routes[0]"), "{error}");

        let error = load_str("", &[("PORTCULLIS_SESSION__COOKIE", "x")]).unwrap_err();
        assert!(error.to_string().contains("session"), "{error}");
    }

    #[test]
    fn secret_files_are_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "s3cret-value\n").unwrap();
        let text = format!("[auth]\nsecret_file = {:?}\n", file.display().to_string());
        let raw = load_str(&text, &[]).unwrap();
        assert_eq!(raw.auth.secret.as_deref(), Some("s3cret-value"));

        let both =
            format!("[auth]\nsecret = \"x\"\nsecret_file = {:?}\n", file.display().to_string());
        assert!(matches!(load_str(&both, &[]), Err(ConfigError::Schema { .. })));

        let missing = load_str("[auth]\nsecret_file = \"/nonexistent/secret\"\n", &[]);
        assert!(matches!(missing, Err(ConfigError::SecretFile { .. })));
    }

    #[test]
    fn masked_rendering_hides_every_secret() {
        let raw = load_str(
            "[auth]\nsecret = \"top-secret-value-top-secret-value\"\n[storage]\ndatabase_url = \"postgres://u:pw@db/x\"\nsecrets_key = \"sealing-key-now\"\nsecrets_key_previous = [\"sealing-key-old\"]\n[providers.github]\nclient_secret = \"gh-secret\"\n",
            &[],
        )
        .unwrap();
        let text = render_masked(&raw).unwrap();
        assert!(!text.contains("top-secret-value"), "{text}");
        assert!(!text.contains("gh-secret"), "{text}");
        assert!(!text.contains("sealing-key"), "{text}");
        assert!(!text.contains(":pw@"), "{text}");
        assert!(text.contains("postgres://u:********@db/x"), "{text}");
    }
}
