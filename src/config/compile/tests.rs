//! Tests of compiling the configuration.
use ipnet::IpNet;

use super::auth::accent_color;
use super::server::ipv4_mapped_as_ipv4;
use super::*;
use crate::config::EphemeralKind;
use crate::store::ephemeral::RedisTopology;

#[test]
fn the_worker_count_is_bounded_and_zero_means_one_per_cpu() {
    let config = Config::from_toml("[server]\nworkers = 0\n").unwrap();
    assert_eq!(config.server.workers, 0);
    let config = Config::from_toml("[server]\nworkers = 3\n").unwrap();
    assert_eq!(config.server.workers, 3);
    let error = Config::from_toml("[server]\nworkers = 5000\n").unwrap_err();
    assert!(error.to_string().contains("server.workers"), "{error}");
}

#[test]
fn redis_sentinels_are_parsed_and_checked() {
    let config = Config::from_toml(
        "[storage]\nephemeral = \"redis\"\nredis_sentinel_master = \"m\"\n\
         redis_sentinels = [\"a:1\", \"b\", \"[::1]:26380\"]\n",
    )
    .unwrap();
    let EphemeralKind::Redis { topology: RedisTopology::Sentinel(sentinel), .. } =
        config.storage.ephemeral
    else {
        panic!("a Sentinel set");
    };
    assert_eq!(sentinel.master, "m");
    let expected = [("a", 1), ("b", 26379), ("::1", 26380)];
    assert_eq!(sentinel.nodes, expected.map(|(host, port)| (host.to_owned(), port)));
    for (toml, complaint) in [
        ("redis_sentinel_master = \"m\"\n", "list at least one Sentinel"),
        ("redis_sentinels = [\"a:1\"]\n", "set redis_sentinel_master"),
        ("redis_sentinel_master = \"m\"\nredis_sentinels = [\"a:x\"]\n", "not host:port"),
    ] {
        let text = format!("[storage]\nephemeral = \"redis\"\n{toml}");
        let error = Config::from_toml(&text).unwrap_err().to_string();
        assert!(error.contains("storage.redis_sentinels") && error.contains(complaint), "{error}");
    }
}

#[test]
fn redis_cluster_nodes_are_parsed_and_exclude_sentinels() {
    let config = Config::from_toml(
        "[storage]\nephemeral = \"redis\"\nredis_cluster_nodes = [\"n1:7000\", \"n2\"]\n",
    )
    .unwrap();
    let EphemeralKind::Redis { topology: RedisTopology::Cluster(nodes), .. } =
        config.storage.ephemeral
    else {
        panic!("a cluster");
    };
    assert_eq!(nodes, [("n1".to_owned(), 7000), ("n2".to_owned(), 6379)]);
    let error = Config::from_toml(
        "[storage]\nephemeral = \"redis\"\nredis_cluster_nodes = [\"n1:7000\"]\n\
         redis_sentinel_master = \"m\"\nredis_sentinels = [\"s\"]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("storage.redis_cluster_nodes"), "{error}");
}

#[test]
fn providers_and_sso_domains_are_checked() {
    let error = Config::from_toml(
        "[providers.corp]\nkind = \"oidc\"\nclient_id = \"x\"\n\
         [[sso_domains]]\ndomain = \"acme.com\"\nprovider = \"nope\"\n",
    )
    .unwrap_err()
    .to_string();
    for key in ["providers.corp.issuer", "providers.corp.client_secret", "sso_domains[0].provider"]
    {
        assert!(error.contains(key), "{key} in {error}");
    }
    let config = Config::from_toml(
        "[providers.google]\nclient_id = \"id\"\nclient_secret = \"s\"\n\
         [providers.github]\nclient_id = \"id\"\nclient_secret = \"s\"\n",
    )
    .unwrap();
    assert_eq!(config.providers[1].issuer, "https://accounts.google.com");
    assert_eq!(config.providers[1].display_name, "Google");
    assert_eq!(config.providers[0].display_name, "GitHub");
    assert!(config.providers.iter().any(|p| p.name == "google"));
}

#[test]
fn org_roles_and_org_paths_are_checked() {
    let error = Config::from_toml(
        "[orgs]\nroles = [\"member\", \"Bad Role\"]\ninvite_ttl = \"0s\"\n\
         [[routes]]\npath = \"/orgs/{org_id}/*\"\naccess = \"public\"\n\
         [[routes]]\npath = \"/admin/*\"\norg_roles = [\"boss\"]\n",
    )
    .unwrap_err()
    .to_string();
    for key in ["orgs.roles", "orgs.invite_ttl", "routes[0].access", "routes[1].org_roles"] {
        assert!(error.contains(key), "{key} in {error}");
    }
    let config = Config::from_toml(
        "[orgs]\nroles = [\"viewer\"]\nrequire_selection = true\n\
         [[routes]]\npath = \"/billing/*\"\norg_roles = [\"owner\", \"viewer\"]\n",
    )
    .unwrap();
    assert_eq!(config.orgs.roles.names(), ["owner", "admin", "viewer"]);
    assert!(config.orgs.require_selection);
    assert_eq!(config.orgs.invite_ttl, Duration::from_secs(7 * 86_400));
}

#[test]
fn accent_colours_must_keep_button_text_readable() {
    assert!(accent_color("#2f54eb").is_ok(), "the default");
    assert!(accent_color("#000").is_ok());
    assert!(accent_color("#ffcc00").unwrap_err().to_string().contains("contrast of 1.5:1"));
    assert!(accent_color("#3b82f6").is_err(), "3.7:1");
    assert!(accent_color("blue").is_err());
    assert!(accent_color("#12345").is_err());
}

#[test]
fn embedded_defaults_are_valid() {
    let config = Config::defaults().unwrap();
    assert_eq!(config.server.listen, Some("127.0.0.1:8080".parse().unwrap()));
    assert_eq!(config.auth.base_path, "/auth");
    assert_eq!(config.session.ttl, Duration::from_secs(7 * 86_400));
    assert!(config.upstreams.is_empty());
    assert!(config.not_yet_available.is_empty());
}

#[test]
fn every_invalid_key_is_reported_at_once() {
    let error = Config::from_toml(
        r#"
        [server]
        listen = "nonsense"
        max_body = "huge"
        [auth]
        base_path = "/"
        secret = "short"
        [[routes]]
        path = "no-slash"
        [[routes]]
        path = "/x"
        access = "sometimes"
        "#,
    )
    .unwrap_err();
    let ConfigError::Invalid(errors) = error else { panic!("expected Invalid, got {error}") };
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    for key in [
        "server.listen",
        "server.max_body",
        "auth.base_path",
        "auth.secret",
        "routes[0].path",
        "routes[1].access",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
}

#[test]
fn restrictions_need_authenticated_access() {
    let error = Config::from_toml(
        "[[routes]]\npath = \"/a/*\"\naccess = \"public\"\nroles = [\"admin\"]\n",
    )
    .unwrap_err();
    assert!(error.to_string().contains("routes[0].access"), "{error}");
}

#[test]
fn ipv4_mapped_trusted_networks_are_compared_as_ipv4() {
    let mapped: IpNet = "::ffff:10.0.0.0/104".parse().unwrap();
    assert_eq!(ipv4_mapped_as_ipv4(mapped), "10.0.0.0/8".parse::<IpNet>().unwrap());
    let plain: IpNet = "2001:db8::/32".parse().unwrap();
    assert_eq!(ipv4_mapped_as_ipv4(plain), plain);
}

#[test]
fn provider_roles_need_a_map_and_multi_tenant_ones_a_tenant_list() {
    let base = "[providers.corp]\nissuer = \"https://idp.example\"\nclient_id = \"a\"\nclient_secret = \"b\"\n";
    let keys = |extra: &str| match Config::from_toml(&format!("{base}{extra}")) {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid(errors)) => errors.into_iter().map(|e| e.key).collect(),
        Err(other) => panic!("{other}"),
    };
    assert_eq!(keys("roles_claim = \"groups\"\n"), ["providers.corp.roles_map"]);
    assert_eq!(keys("roles_map = { a = \"admin\" }\n"), ["providers.corp.roles_claim"]);
    assert!(keys("roles_claim = \"groups\"\nroles_map = { a = \"admin\" }\n").is_empty());
    let microsoft = "[providers.microsoft]\nclient_id = \"a\"\nclient_secret = \"b\"\nroles_claim = \"groups\"\nroles_map = { g = \"admin\" }\n";
    let errors = match Config::from_toml(microsoft) {
        Err(ConfigError::Invalid(errors)) => errors,
        other => panic!("{other:?}"),
    };
    assert_eq!(errors[0].key, "providers.microsoft.allowed_tenants");
    let tenants =
        format!("{microsoft}allowed_tenants = [\"9188040d-6c67-4c5b-b112-36a304b66dad\"]\n");
    assert!(Config::from_toml(&tenants).is_ok());
}

#[test]
fn tls_keys_go_together() {
    let error = Config::from_toml("[server]\ntls_listen = \"127.0.0.1:8443\"\n").unwrap_err();
    assert!(error.to_string().contains("server.tls_listen"), "{error}");
}

#[test]
fn gateway_errors_are_placed_under_their_keys_with_their_messages() {
    let problems = |toml: &str| match Config::from_toml(toml) {
        Err(ConfigError::Invalid(errors)) => {
            errors.iter().map(ToString::to_string).collect::<Vec<_>>()
        }
        other => panic!("expected invalid values, got {other:?}"),
    };
    for (path, expected) in [
        ("relative", "routes[0].path: `relative` must start with `/`"),
        ("/{a-b}", "routes[0].path: `{a-b}` in `/{a-b}` is not a valid name"),
        ("/x{y}", "routes[0].path: `x{y}` in `/x{y}`: `*` and `{name}` must be whole segments"),
        (
            "/a;b",
            "routes[0].path: `a;b` in `/a;b`: the request path holds `;` parameters, which \
             servers read differently",
        ),
    ] {
        assert_eq!(problems(&format!("[[routes]]\npath = \"{path}\"\n")), [expected]);
    }
    for (fields, expected) in [
        (
            "name = \"bad name\"\nurl = \"http://a:1\"",
            "upstreams[0]: name `bad name` must be non-empty letters, digits, `-`, `_` or `.`",
        ),
        (
            "name = \"app\"\nurl = \"https://a:1\"",
            "upstreams[0]: url `https://a:1`: only http:// upstreams are supported (the app is \
             usually on loopback)",
        ),
        (
            "name = \"app\"\nurl = \"nowhere\"",
            "upstreams[0]: url `nowhere`: relative URL without a base",
        ),
        (
            "name = \"app\"\nurl = \"http://a:1?x\"",
            "upstreams[0]: url `http://a:1?x`: no query, fragment or credentials allowed",
        ),
        (
            "name = \"app\"\nurl = \"http://a:1\"\npath_prefix = \"x\"",
            "upstreams[0]: path_prefix `x` must start with `/`",
        ),
        (
            "name = \"app\"\nurl = \"http://a:1\"\nhosts = [\" Bad Host \"]",
            "upstreams[0]: host `bad host` is not a host name",
        ),
    ] {
        assert_eq!(problems(&format!("[[upstreams]]\n{fields}\n")), [expected]);
    }
}
