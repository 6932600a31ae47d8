#![allow(missing_docs)] // criterion_main! generates undocumented items
#![allow(clippy::expect_used)] // a benchmark that cannot set up should stop
//! Micro-benchmarks of the gateway's hot-path pieces: path normalization, policy lookup in a
//! 100-rule table, an org-scoped policy decision, credential extraction (cookie, API key, JWT
//! cache key), identity-header recognition, the header rewrite, an access line, an identity
//! cache hit, and an
//! `X-Auth-Assertion` cache hit (with signing and JWT verification, the cache-miss costs, for
//! scale). Run with `cargo bench --bench hot_path`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use portcullis::testing::clock::{SystemClock, Timestamp};
use portcullis::testing::config::{Config, LogFormat};
use portcullis::testing::cookies;
use portcullis::testing::crypto::signing::SigningAlgorithm;
use portcullis::testing::gateway::assertion::AssertionSigner;
use portcullis::testing::gateway::identify::Identified;
use portcullis::testing::gateway::path::normalize_path;
use portcullis::testing::gateway::policy::{Decision, decide};
use portcullis::testing::identity::api_key;
use portcullis::testing::identity::cache::{CredentialHash, IdentityCache};
use portcullis::testing::identity::key_ring::KeyRing;
use portcullis::testing::identity::{Email, Identity, IdentityParts, OrgRole, User};
use portcullis::testing::model::headers::HeaderNames;
use portcullis::testing::server::access_log::{AccessLine, AccessLog};
use portcullis::testing::store::sql::Database;

fn hundred_rules() -> Config {
    let mut toml = String::new();
    for index in 0..99 {
        toml.push_str(&format!(
            "[[routes]]\npath = \"/service-{index}/*\"\nroles = [\"role-{index}\"]\n"
        ));
    }
    toml.push_str("[[routes]]\npath = \"/app/*\"\naccess = \"authenticated\"\n");
    Config::from_toml(&toml).expect("valid bench config")
}

fn identity() -> Arc<Identity> {
    let email = Email::parse("ada@example.com").expect("valid email");
    let user = User {
        name: Some("Ada Lovelace".into()),
        roles: vec!["admin".into()],
        ..User::new(uuid::Uuid::now_v7(), email, Timestamp::from_millis(0))
    };
    let parts = IdentityParts::session(user, None, Timestamp::from_millis(i64::MAX));
    Arc::new(Identity::new(parts, &HeaderNames::default()))
}

/// An org-scoped route table, built once.
fn orgs_config() -> &'static Config {
    static CONFIG: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
    CONFIG.get_or_init(|| {
        let toml = "[[routes]]\npath = \"/orgs/{org_id}/*\"\norg_roles = [\"admin\"]\n";
        Config::from_toml(toml).expect("valid bench config")
    })
}

/// A session identity that is admin in five organizations.
fn org_member() -> (Vec<uuid::Uuid>, Identified) {
    let orgs: Vec<uuid::Uuid> = (0..5).map(|_| uuid::Uuid::now_v7()).collect();
    let roles = orgs.iter().map(|&org_id| OrgRole { org_id, role: "admin".into() }).collect();
    let email = Email::parse("ada@example.com").expect("valid email");
    let user = User::new(uuid::Uuid::now_v7(), email, Timestamp::from_millis(0));
    let parts = IdentityParts::session(user, None, Timestamp::from_millis(i64::MAX))
        .in_orgs(roles, Some(orgs[0]));
    (orgs, Identified::Known(Arc::new(Identity::new(parts, &HeaderNames::default()))))
}

fn browser_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("host", "app.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120 Safari/537.36",
        ),
        ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        ("accept-language", "en-GB,en;q=0.9"),
        ("accept-encoding", "gzip, deflate, br"),
        (
            "cookie",
            "theme=dark; _ga=GA1.2.3; portcullis_session=v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ),
        ("x-request-id", "abc"),
        ("sec-fetch-site", "same-origin"),
    ] {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    headers
}

fn benches(c: &mut Criterion) {
    let config = hundred_rules();
    c.bench_function("normalize_path (already normal)", |b| {
        b.iter(|| normalize_path(black_box("/app/dashboard/settings")).map(|p| p.is_unchanged()))
    });
    c.bench_function("normalize_path (dot segments)", |b| {
        b.iter(|| {
            normalize_path(black_box("/app/./x/../dashboard//settings")).map(|p| p.is_unchanged())
        })
    });
    c.bench_function("policy find, 100 rules, last matches", |b| {
        b.iter(|| config.routes.find(black_box(&Method::GET), black_box("/app/dashboard")).0.access)
    });
    let (orgs, member) = org_member();
    let path = format!("/orgs/{}/projects/7", orgs[4]);
    c.bench_function("policy find + decide, org-scoped path, member of 5 orgs", |b| {
        b.iter(|| {
            let (route, matched) = orgs_config().routes.find(&Method::GET, black_box(&path));
            matches!(decide(route, &matched, black_box(&member)), Decision::Allow(_))
        })
    });
    let headers = browser_headers();
    let jar = cookies::CookieJar::new("portcullis_session", false, None);
    c.bench_function("session cookie extraction", |b| {
        b.iter(|| jar.read(black_box(&headers), cookies::Own::Session).one().map(str::len))
    });
    let names = HeaderNames::default();
    c.bench_function("identity header recognition, 8 headers", |b| {
        b.iter(|| headers.keys().filter(|name| names.is_identity_header(name)).count())
    });

    let identity = identity();
    c.bench_function("header rewrite: strip spoofs, cut our cookie, insert identity", |b| {
        b.iter_batched_ref(
            || {
                let mut headers = browser_headers();
                headers.insert(
                    HeaderName::from_static("x-auth-user-id"),
                    HeaderValue::from_static("spoof"),
                );
                headers
            },
            |headers| {
                let spoofed: Vec<HeaderName> =
                    headers.keys().filter(|name| names.classify(name).is_some()).cloned().collect();
                for name in spoofed {
                    headers.remove(&name);
                }
                cookies::strip_own(headers, &jar);
                names.insert_into(&identity, headers);
            },
            criterion::BatchSize::SmallInput,
        )
    });

    let cache = IdentityCache::new(Duration::from_secs(30), 1000, Arc::new(SystemClock));
    let key = CredentialHash::from_bytes([7u8; 32]);
    cache.insert(key, Arc::clone(&identity), std::time::Instant::now());
    let access_log = AccessLog::new(LogFormat::Json);
    let method = Method::GET;
    let line = AccessLine {
        request_id: "0123456789abcdef0123456789abcdef",
        class: "proxy",
        method: &method,
        path: "/dashboard/reports/2026",
        status: 200,
        latency: Duration::from_micros(321),
        auth_method: "session",
        user_id: Some(uuid::Uuid::now_v7()),
    };
    let mut out = Vec::with_capacity(64 * 1024);
    c.bench_function("access line (JSON, clock read included)", |b| {
        b.iter(|| {
            out.clear();
            access_log.render(black_box(&line), SystemTime::now(), &mut out);
        });
    });
    c.bench_function("identity cache hit", |b| b.iter(|| cache.get(black_box(&key)).is_some()));
    c.bench_function("credential hash (sha256 of a token)", |b| {
        b.iter(|| {
            portcullis::testing::crypto::sha256(black_box(
                b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            ))
        })
    });
    let tags = portcullis::testing::crypto::tags::TokenTags::random();
    let api_key = api_key::generate(&tags);
    c.bench_function("API key check: format, hash (a cache hit)", |b| {
        b.iter(|| api_key::hash_of(black_box(&api_key)))
    });
    let session = tags.mint(portcullis::testing::crypto::tags::TagKind::Session);
    let now = portcullis::testing::clock::Timestamp::from_millis(0);
    c.bench_function("credential tag check (a cache miss only)", |b| {
        b.iter(|| {
            tags.admits(
                portcullis::testing::crypto::tags::TagKind::Session,
                black_box(&session),
                now,
            )
        })
    });
    tokens(c, &identity);
}

/// The signing side: an assertion cache hit (the per-request cost with assertions on), and
/// for scale what a miss costs: signing, and verifying an access JWT the first time it is seen.
fn tokens(c: &mut Criterion, identity: &Arc<Identity>) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let keys = runtime.block_on(async {
        let db = Database::connect("sqlite::memory:", 1).await.expect("database");
        let clock = Arc::new(SystemClock);
        KeyRing::open(db, SigningAlgorithm::EdDsa, clock, Duration::from_secs(900))
            .await
            .expect("keys")
    });
    let keys = Arc::new(keys);
    let signer = AssertionSigner::new(
        Arc::clone(&keys),
        "https://auth.example.com".into(),
        Duration::from_secs(300),
        Arc::new(SystemClock),
    );
    let audience: Arc<str> = Arc::from("app");
    signer.header(identity, &audience).expect("signed");
    c.bench_function("assertion cache hit", |b| {
        b.iter(|| signer.header(black_box(identity), &audience))
    });

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Claims {
        sub: String,
        email: String,
        roles: Vec<String>,
        exp: u64,
    }
    let claims = Claims {
        sub: uuid::Uuid::now_v7().to_string(),
        email: "ada@example.com".into(),
        roles: vec!["admin".into()],
        exp: 4_000_000_000,
    };
    c.bench_function("EdDSA sign (assertion or token, cache miss)", |b| {
        b.iter(|| keys.sign(black_box(&claims)).expect("signed"))
    });
    let token = keys.sign(&claims).expect("signed");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.validate_aud = false;
    c.bench_function("EdDSA verify (bearer JWT, cache miss)", |b| {
        b.iter(|| keys.verify::<Claims>(black_box(&token), &validation).is_ok())
    });
    c.bench_function("JWT cache key (sha256 of the token)", |b| {
        b.iter(|| portcullis::testing::crypto::sha256(black_box(token.as_bytes())))
    });
}

criterion_group!(hot_path, benches);
criterion_main!(hot_path);
