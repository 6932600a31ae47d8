//! `[storage]`: the database, the ephemeral store and its Redis layout, the secrets key.

use super::Errors;
use crate::config::raw::{RawConfig, RawStorage};
use crate::config::values::StringList;
use crate::config::{EphemeralKind, StorageConfig};
use crate::crypto::sealed::{SealKey, Sealer};
use crate::store::ephemeral::{RedisSentinel, RedisTopology};

/// How Redis is laid out: `redis_sentinel_master` with its `redis_sentinels`, or
/// `redis_cluster_nodes`, or neither (one server).
pub(super) fn redis_topology(s: &RawStorage, errors: &mut Errors) -> RedisTopology {
    let master = s.redis_sentinel_master.as_deref().map(str::trim).filter(|m| !m.is_empty());
    let cluster = !s.redis_cluster_nodes.0.is_empty();
    if cluster && (master.is_some() || !s.redis_sentinels.0.is_empty()) {
        errors.push(
            "storage.redis_cluster_nodes",
            "a cluster has no Sentinels: set one or the other",
        );
    }
    if cluster {
        let nodes = host_ports(errors, "storage.redis_cluster_nodes", &s.redis_cluster_nodes, 6379);
        return RedisTopology::Cluster(nodes);
    }
    let Some(master) = master else {
        if !s.redis_sentinels.0.is_empty() {
            errors.push("storage.redis_sentinels", "set redis_sentinel_master as well");
        }
        return RedisTopology::Single;
    };
    if s.redis_sentinels.0.is_empty() {
        errors.push("storage.redis_sentinels", "list at least one Sentinel (host:port)");
    }
    let nodes = host_ports(errors, "storage.redis_sentinels", &s.redis_sentinels, 26379);
    let password = s.redis_sentinel_password.clone().filter(|password| !password.is_empty());
    RedisTopology::Sentinel(RedisSentinel { master: master.to_owned(), nodes, password })
}

/// `host:port` items (`default_port` when left out; IPv6 in brackets), each checked.
pub(super) fn host_ports(
    errors: &mut Errors,
    key: &str,
    list: &StringList,
    default_port: u16,
) -> Vec<(String, u16)> {
    list.0
        .iter()
        .filter_map(|item| {
            let item = item.trim();
            let (host, port) = match item.rsplit_once(':').filter(|(host, _)| !host.ends_with(':'))
            {
                Some((host, port)) => (host, port.parse::<u16>().ok().filter(|&port| port > 0)),
                None => (item, Some(default_port)),
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            match port {
                Some(port) if !host.is_empty() => Some((host.to_owned(), port)),
                _ => {
                    errors.push(key, format!("`{item}` is not host:port"));
                    None
                }
            }
        })
        .collect()
}

pub(super) fn storage(raw: &RawConfig, errors: &mut Errors) -> StorageConfig {
    let s = &raw.storage;
    let url = s.database_url.trim();
    if !(url.starts_with("sqlite:")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://"))
    {
        errors.push("storage.database_url", "expected sqlite://… or postgres://…");
    }
    let ephemeral = match s.ephemeral.as_str() {
        "database" => EphemeralKind::Database,
        "memory" => EphemeralKind::Memory,
        "redis" => {
            let url = s.redis_url.trim();
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                errors.push("storage.redis_url", "expected redis://… or rediss://…");
            }
            let ca_pem = s.redis_ca_file.as_deref().and_then(|path| match std::fs::read(path) {
                Ok(pem) => Some(pem),
                Err(error) => {
                    errors.push("storage.redis_ca_file", format!("cannot read {path}: {error}"));
                    None
                }
            });
            let topology = redis_topology(s, errors);
            EphemeralKind::Redis { url: url.to_owned(), ca_pem, topology }
        }
        other => {
            errors.push(
                "storage.ephemeral",
                format!("`{other}` is not one of: database, redis, memory"),
            );
            EphemeralKind::Database
        }
    };
    if s.max_connections.0 == 0 {
        errors.push("storage.max_connections", "must be at least 1");
    }
    let current = s
        .secrets_key
        .as_deref()
        .filter(|key| !key.trim().is_empty())
        .and_then(|key| errors.check("storage.secrets_key", SealKey::parse(key)));
    let previous = s
        .secrets_key_previous
        .0
        .iter()
        .filter_map(|key| errors.check("storage.secrets_key_previous", SealKey::parse(key)))
        .collect();
    let direct_url = match s.database_direct_url.as_deref().map(str::trim) {
        None | Some("") => url.to_owned(),
        Some(direct) => {
            let postgres =
                |url: &str| url.starts_with("postgres://") || url.starts_with("postgresql://");
            if !postgres(direct) || !postgres(url) {
                errors.push(
                    "storage.database_direct_url",
                    "expected postgres://…, with a PostgreSQL database_url",
                );
            }
            direct.to_owned()
        }
    };
    StorageConfig {
        database_url: url.to_owned(),
        direct_url,
        migrate_on_start: s.migrate_on_start,
        ephemeral,
        redis_prefix: s.redis_prefix.clone(),
        max_connections: s.max_connections.0,
        startup_wait: errors.duration("storage.startup_wait", &s.startup_wait),
        sealer: Sealer::new(current, previous),
    }
}
