//! Path normalization: examples, and properties over hostile paths checked against how other
//! servers would read what Portcullis forwards.

use http::Method;
use proptest::prelude::*;

use super::*;
use crate::gateway::pattern::PathPattern;
use crate::gateway::policy::{Access, Route, RouteTable};

fn normal(path: &str) -> String {
    normalize_path(path).unwrap().forward().to_owned()
}

#[test]
fn paths_with_one_meaning_are_normalized() {
    let cases = [
        ("/plain/path", "/plain/path"),
        ("/a/../admin", "/admin"),
        ("/a/./b", "/a/b"),
        ("//admin//x", "/admin/x"),
        ("/%61dmin", "/admin"),
        ("/%2e%2e/admin", "/admin"),
        ("/%2E./admin", "/admin"),
        ("/../../etc", "/etc"),
        ("/a/b/..", "/a/"),
        ("/caf%c3%a9", "/caf%C3%A9"),
        ("/café", "/caf%C3%A9"),
        ("/a%20b", "/a%20b"),
        ("/odata/%24batch", "/odata/$batch"),
        ("/jobs%3apurge", "/jobs:purge"),
        ("/a%2b%40b", "/a+@b"),
        ("/a%25%3F%23b", "/a%25%3F%23b"),
        ("/a\"b{c}", "/a%22b%7Bc%7D"),
        ("/", "/"),
        ("/..", "/"),
        ("/a/", "/a/"),
    ];
    for (input, expected) in cases {
        assert_eq!(normal(input), expected, "{input}");
    }
    assert!(normalize_path("/plain").unwrap().is_unchanged());
    assert!(normalize_path("/plain/").unwrap().is_unchanged());
    assert!(!normalize_path("/a//b").unwrap().is_unchanged());
    assert!(normalize_path("/caf%C3%A9").unwrap().is_unchanged(), "an escape that stays one");
    assert!(!normalize_path("/caf%c3%a9").unwrap().is_unchanged());
}

#[test]
fn paths_without_one_meaning_are_refused() {
    let cases = [
        ("*", PathError::NotAbsolute),
        ("/bad%zz", PathError::Malformed),
        ("/trunc%2", PathError::Malformed),
        ("/a b", PathError::Malformed),
        ("/public/..\\admin/x", PathError::Backslash),
        ("/public/..%5Cadmin/x", PathError::Backslash),
        ("/public/..%5cadmin/x", PathError::Backslash),
        ("/admin%00.css", PathError::Nul),
        ("/admin%+1", PathError::Malformed),
        ("/x%+a", PathError::Malformed),
        ("/x%0a", PathError::Malformed),
    ];
    for (input, expected) in cases {
        assert_eq!(normalize_path(input), Err(expected), "{input}");
    }
}

#[test]
fn encoded_slashes_and_parameters_need_the_upstream_to_opt_in() {
    let strict = PathOptions::default();
    let slashes = normalize_path("/files/a%2fb/x").unwrap();
    assert_eq!(slashes.forward(), "/files/a%2Fb/x", "one segment, kept encoded");
    assert_eq!(strict.permit(slashes.needs()), Err(PathError::EncodedSlash));
    let allowed = PathOptions { encoded_slashes: true, ..strict };
    assert_eq!(allowed.permit(slashes.needs()), Ok(()));

    // A dot segment behind an encoded slash or `;`: refused whatever the upstream allows.
    assert_eq!(normalize_path("/public/..%2Fadmin/x"), Err(PathError::EncodedDotSegment));
    assert_eq!(normalize_path("/public/..%3B/admin"), Err(PathError::EncodedDotSegment));
    assert_eq!(normalize_path("/public/..%3bx/admin"), Err(PathError::EncodedDotSegment));
    assert!(normalize_path("/public/a%3B../admin").is_ok(), "only a leading dot segment");
    assert_eq!(normalize_path("/a%2F.%2Fb"), Err(PathError::EncodedDotSegment));

    let params = normalize_path("/public/..;/admin/x").unwrap();
    assert_eq!(strict.permit(params.needs()), Err(PathError::MatrixParams));
    // Matched and forwarded as Tomcat reads it: `..;` is `..`.
    assert_eq!(params.matching(), "/admin/x");
    assert_eq!(params.forward(), "/admin/x");
    let session = normalize_path("/admin;jsessionid=1/x").unwrap();
    assert_eq!(session.matching(), "/admin/x");
    assert_eq!(session.forward(), "/admin;jsessionid=1/x", "the app keeps its parameter");
    let encoded = normalize_path("/internal%3B/x").unwrap();
    assert_eq!(strict.permit(encoded.needs()), Err(PathError::MatrixParams));
}

#[test]
fn paths_as_sent_differ_only_in_spelling() {
    let as_sent = |path: &str| normalize_path(path).unwrap().is_as_sent(path);
    for same in [
        "/a/b",
        "/caf%c3%a9",
        "/users/a%40b.com",
        "/search/c%2B%2B",
        "/odata/%24batch",
        "/a%2fb",
        "/admin;jsessionid=1/x",
    ] {
        assert!(as_sent(same), "{same}");
    }
    for changed in
        ["/admin/../x", "/admin/%2e%2e/x", "/a//b", "/a/./b", "/a%2E", "/public/..;/admin"]
    {
        let normal = normalize_path(changed).unwrap();
        assert!(!normal.is_as_sent(changed), "{changed}");
    }
}

#[test]
fn literals_of_patterns_are_normalized_or_refused() {
    assert_eq!(normalize_literal("caf%c3%a9"), Ok("caf%C3%A9".to_owned()));
    assert_eq!(normalize_literal("%7Euser"), Ok("~user".to_owned()));
    assert_eq!(normalize_literal("a;b"), Err(PathError::MatrixParams));
    assert_eq!(normalize_literal("a%2Fb"), Err(PathError::EncodedSlash));
    assert_eq!(normalize_literal(".."), Err(PathError::Malformed));
}

// --- How other servers read a forwarded path -------------------------------------------------

/// Percent-decodes every escape (Latin-1 for non-UTF-8, which only matters for equality).
fn decode(path: &str) -> String {
    percent_encoding::percent_decode_str(path).decode_utf8_lossy().into_owned()
}

/// Dot segments resolved and empty segments dropped, on `/` only.
fn resolve(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            _ => kept.push(segment),
        }
    }
    format!("/{}", kept.join("/"))
}

/// Tomcat and Spring: `;` parameters dropped from each segment before decoding, then decoded,
/// then (generously) `\` read as `/` and dot segments resolved.
fn tomcat(path: &str) -> String {
    let stripped: Vec<&str> =
        path.split('/').map(|segment| segment.split(';').next().unwrap_or("")).collect();
    resolve(&decode(&stripped.join("/")).replace('\\', "/"))
}

/// IIS: decoded, `\` is `/`, dot segments resolved.
fn iis(path: &str) -> String {
    resolve(&decode(path).replace('\\', "/"))
}

/// nginx with slashes decoded (`merge_slashes`, a decoded `$uri` passed on).
fn nginx_decoding_slashes(path: &str) -> String {
    resolve(&decode(path))
}

/// The rules the forwarded paths are checked against, in order (as `[[routes]]` would give them:
/// `/public/*` public, `/admin/*` for admins, `/internal/*` denied, `/api/*/items` with the
/// `write` scope).
fn rules() -> RouteTable {
    let route = |path: &str, access: Access| Route {
        pattern: PathPattern::parse(path).unwrap(),
        access,
        ..Route::fallback()
    };
    RouteTable::new(vec![
        route("/public/*", Access::Public),
        Route { roles: vec!["admin".to_owned()], ..route("/admin/*", Access::Authenticated) },
        route("/internal/*", Access::Deny),
        Route { scopes: vec!["write".to_owned()], ..route("/api/*/items", Access::Authenticated) },
    ])
}

/// Pieces hostile paths are made of.
const PIECES: &[&str] = &[
    "/", "/", "/", ".", "..", ";", ";x=1", "%2e", "%2E", "%2f", "%2F", "%5c", "%5C", "\\", "%00",
    "%3b", "%3B", "a", "admin", "Admin", "%61dmin", "public", "internal", "api", "items", "%20",
    "é",
];

fn hostile_path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 0..14)
        .prop_map(|pieces| format!("/{}", pieces.concat()))
}

fn rule_for(table: &RouteTable, path: &str) -> String {
    table.find(&Method::GET, path).0.pattern.as_str().to_owned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever Portcullis forwards, Tomcat, IIS and an nginx that decodes slashes place under
    /// the rule that allowed it: for strict upstreams, and for upstreams that take matrix
    /// parameters (nginx and IIS keep parameters in the segment, Tomcat drops them).
    #[test]
    fn forwarded_paths_land_under_the_rule_that_allowed_them(path in hostile_path()) {
        let table = rules();
        let Ok(normal) = normalize_path(&path) else { return Ok(()) };
        for options in [PathOptions::default(), PathOptions { matrix_params: true, encoded_slashes: false }] {
            if options.permit(normal.needs()).is_err() {
                continue;
            }
            let decided = rule_for(&table, normal.matching());
            let forwarded = normal.forward();
            prop_assert_eq!(&rule_for(&table, &tomcat(forwarded)), &decided, "Tomcat, {} → {}", path, forwarded);
            if !options.matrix_params {
                prop_assert_eq!(&rule_for(&table, &iis(forwarded)), &decided, "IIS, {} → {}", path, forwarded);
                prop_assert_eq!(&rule_for(&table, &nginx_decoding_slashes(forwarded)), &decided, "nginx, {} → {}", path, forwarded);
            }
        }
    }

    /// Normalizing twice changes nothing, and what is forwarded holds nothing ambiguous.
    #[test]
    fn normal_paths_are_stable_and_plain(path in hostile_path()) {
        let Ok(normal) = normalize_path(&path) else { return Ok(()) };
        let again = normalize_path(normal.forward()).unwrap();
        prop_assert_eq!(again.forward(), normal.forward());
        prop_assert!(again.is_unchanged());
        let forwarded = normal.forward();
        prop_assert!(!forwarded.contains('\\') && !forwarded.contains("%00") && !forwarded.contains("%5C"));
        prop_assert!(!forwarded.contains("//"));
        prop_assert!(forwarded.split('/').all(|s| s != "." && s != ".."));
        prop_assert!(forwarded.is_ascii());
    }

    /// Any string at all: an answer, never a panic.
    #[test]
    fn any_input_is_answered(path in "\\PC{0,40}") {
        let _ = normalize_path(&path);
        let _ = normalize_path(&format!("/{path}"));
    }
}
