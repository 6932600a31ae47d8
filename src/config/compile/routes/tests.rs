//! Route tables compiled from `[[routes]]` snippets: a snippet, an identity and a request →
//! the gateway's decision and reason, so that what a rule says in TOML is what it enforces.

use std::sync::Arc;

use http::Method;

use crate::clock::Timestamp;
use crate::config::Config;
use crate::gateway::identify::{Identified, Rejection};
use crate::gateway::policy::{
    Decision, Denial, Forbidden, OnUnauthenticated, RouteTable, canonical_method, decide,
};
use crate::model::Identity;
use crate::model::headers::HeaderNames;
use crate::model::{Email, IdentityParts, OrgRole, Scopes, User};

fn table(routes: &str) -> RouteTable {
    Config::from_toml(routes).unwrap().routes
}

fn user(roles: &[&str], verified: bool) -> Identified {
    let user = User {
        email_verified_at: verified.then(|| Timestamp::from_millis(1)),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        ..User::new(
            uuid::Uuid::nil(),
            Email::parse("ada@example.com").unwrap(),
            Timestamp::from_millis(0),
        )
    };
    let parts = IdentityParts::session(user, None, Timestamp::from_millis(i64::MAX));
    Identified::Known(Arc::new(Identity::new(parts, &HeaderNames::default())))
}

fn with(identified: Identified, change: impl FnOnce(&mut Identity)) -> Identified {
    let Identified::Known(identity) = identified else { unreachable!() };
    let mut identity = (*identity).clone();
    change(&mut identity);
    Identified::Known(Arc::new(identity))
}

fn check(table: &RouteTable, method: &str, path: &str, who: &Identified) -> Result<bool, Denial> {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let method = canonical_method(&method).unwrap_or(method);
    let (route, matched) = table.find(&method, path);
    match decide(route, &matched, who) {
        Decision::Allow(permit) => Ok(permit.identity().is_some()),
        Decision::Deny(denial) => Err(denial),
    }
}

const EXAMPLE: &str = r#"
[[routes]]
path = "/public/*"
access = "public"
[[routes]]
path = "/admin/*"
roles = ["admin", "support"]
[[routes]]
path = "/api/*"
methods = ["POST", "PUT", "PATCH", "DELETE"]
scopes = ["write"]
on_unauthenticated = "401"
[[routes]]
path = "/internal/*"
access = "deny"
[[routes]]
path = "/verified/*"
verified_email = true
[[routes]]
path = "/orgs/{org_id}/*"
org_roles = ["admin"]
[[routes]]
path = "/billing"
org_roles = ["owner"]
"#;

fn unauthenticated(on: OnUnauthenticated) -> Denial {
    Denial::Unauthenticated { problem: None, on_unauthenticated: on }
}

#[test]
fn public_routes_admit_anyone_and_forward_a_known_identity() {
    let t = table(EXAMPLE);
    assert_eq!(check(&t, "GET", "/public/x", &Identified::Anonymous), Ok(false));
    assert_eq!(check(&t, "GET", "/public/x", &Identified::Rejected(Rejection::Unknown)), Ok(false));
    assert_eq!(check(&t, "GET", "/public/x", &user(&[], false)), Ok(true));
}

#[test]
fn unmatched_paths_need_authentication() {
    let t = table(EXAMPLE);
    assert_eq!(
        check(&t, "GET", "/", &Identified::Anonymous),
        Err(unauthenticated(OnUnauthenticated::Auto))
    );
    assert_eq!(check(&t, "GET", "/anything", &user(&[], false)), Ok(true));
    assert_eq!(
        check(&t, "GET", "/x", &Identified::Rejected(Rejection::Malformed)),
        Err(Denial::Unauthenticated {
            problem: Some(Rejection::Malformed),
            on_unauthenticated: OnUnauthenticated::Auto
        })
    );
    assert_eq!(
        check(&t, "GET", "/x", &Identified::Rejected(Rejection::StoreUnavailable)),
        Err(Denial::StoreUnavailable)
    );
}

#[test]
fn roles_are_any_of() {
    let t = table(EXAMPLE);
    assert_eq!(check(&t, "GET", "/admin/users", &user(&["support"], false)), Ok(true));
    assert_eq!(
        check(&t, "GET", "/admin/users", &user(&["dev"], false)),
        Err(Denial::Forbidden(Forbidden::MissingRole))
    );
    assert_eq!(
        check(&t, "GET", "/admin", &user(&[], false)),
        Err(Denial::Forbidden(Forbidden::MissingRole)),
        "the bare prefix is covered too"
    );
}

#[test]
fn methods_limit_where_a_rule_applies_and_scopes_are_all_of() {
    let t = table(EXAMPLE);
    let reader = with(user(&[], false), |i| i.scopes = Scopes::Only(Box::new(["read".to_owned()])));
    assert_eq!(
        check(&t, "GET", "/api/items", &reader),
        Ok(true),
        "GET falls through to the fallback"
    );
    assert_eq!(
        check(&t, "POST", "/api/items", &reader),
        Err(Denial::Forbidden(Forbidden::MissingScope))
    );
    assert_eq!(
        check(&t, "POST", "/api/items", &user(&[], false)),
        Ok(true),
        "sessions carry every scope"
    );
    assert_eq!(
        check(&t, "DELETE", "/api/items", &Identified::Anonymous),
        Err(unauthenticated(OnUnauthenticated::Status401))
    );
}

#[test]
fn standard_methods_match_in_any_case_and_extension_methods_only_as_named() {
    let t = table(
        r#"
[[routes]]
path = "/api/*"
methods = ["post", "PUT", "Patch", "DELETE"]
scopes = ["write"]
[[routes]]
path = "/cache/*"
methods = ["purge"]
access = "deny"
[[routes]]
path = "/reports/*"
methods = ["GET"]
access = "deny"
"#,
    );
    let reader = with(user(&[], false), |i| i.scopes = Scopes::Only(Box::new(["read".to_owned()])));
    for method in ["delete", "Delete", "DELETE", "put", "patch", "POST", "pOsT"] {
        assert_eq!(
            check(&t, method, "/api/items", &reader),
            Err(Denial::Forbidden(Forbidden::MissingScope)),
            "{method}"
        );
    }
    assert_eq!(canonical_method(&Method::from_bytes(b"delete").unwrap()), Some(Method::DELETE));
    assert_eq!(canonical_method(&Method::GET), None);
    assert_eq!(canonical_method(&Method::from_bytes(b"purge").unwrap()), None);
    assert_eq!(
        check(&t, "HEAD", "/reports/x", &reader),
        Err(Denial::Forbidden(Forbidden::RouteDenied)),
        "a rule on GET covers HEAD"
    );
    assert_eq!(
        check(&t, "PURGE", "/cache/x", &reader),
        Err(Denial::Forbidden(Forbidden::RouteDenied))
    );
    assert_eq!(
        check(&t, "PURGE", "/cache/x", &reader),
        Err(Denial::Forbidden(Forbidden::RouteDenied)),
        "rules name methods in any case"
    );
}

#[test]
fn case_insensitive_routes_match_any_case() {
    let t = table(
        r#"
[[routes]]
path = "/internal/*"
access = "deny"
case_insensitive = true
[[routes]]
path = "/Strict/*"
access = "deny"
"#,
    );
    let who = user(&[], false);
    for path in ["/internal/x", "/INTERNAL/x", "/Internal"] {
        assert_eq!(check(&t, "GET", path, &who), Err(Denial::Forbidden(Forbidden::RouteDenied)));
    }
    assert_eq!(check(&t, "GET", "/strict/x", &who), Ok(true));
}

#[test]
fn deny_refuses_everyone() {
    let t = table(EXAMPLE);
    for who in [Identified::Anonymous, user(&["admin"], true)] {
        assert_eq!(
            check(&t, "GET", "/internal/x", &who),
            Err(Denial::Forbidden(Forbidden::RouteDenied))
        );
    }
}

#[test]
fn verified_email_is_enforced() {
    let t = table(EXAMPLE);
    assert_eq!(check(&t, "GET", "/verified/x", &user(&[], true)), Ok(true));
    assert_eq!(
        check(&t, "GET", "/verified/x", &user(&[], false)),
        Err(Denial::Forbidden(Forbidden::EmailNotVerified))
    );
}

#[test]
fn org_paths_admit_only_members_with_the_role() {
    let t = table(EXAMPLE);
    let org_a = uuid::Uuid::from_u128(1);
    let org_b = uuid::Uuid::from_u128(2);
    let member = with(user(&[], false), |i| {
        i.orgs = Box::new([
            OrgRole { org_id: org_a, role: "admin".into() },
            OrgRole { org_id: org_b, role: "member".into() },
        ]);
        i.active_org = Some(Box::new(OrgRole { org_id: org_b, role: "member".into() }));
    });
    assert_eq!(check(&t, "GET", &format!("/orgs/{org_a}/settings"), &member), Ok(true));
    assert_eq!(
        check(&t, "GET", &format!("/orgs/{org_b}/settings"), &member),
        Err(Denial::Forbidden(Forbidden::MissingOrgRole))
    );
    let stranger = uuid::Uuid::from_u128(3);
    assert_eq!(
        check(&t, "GET", &format!("/orgs/{stranger}/settings"), &member),
        Err(Denial::Forbidden(Forbidden::NotOrgMember))
    );
    assert_eq!(
        check(&t, "GET", "/billing", &member),
        Err(Denial::Forbidden(Forbidden::MissingOrgRole)),
        "without a path org, the active org's role counts"
    );
    assert_eq!(
        check(&t, "GET", "/billing", &user(&[], false)),
        Err(Denial::Forbidden(Forbidden::NotOrgMember))
    );
}

#[test]
fn first_match_wins() {
    let t = table(
        r#"
        [[routes]]
        path = "/docs/private/*"
        roles = ["staff"]
        [[routes]]
        path = "/docs/*"
        access = "public"
        "#,
    );
    assert_eq!(
        check(&t, "GET", "/docs/private/a", &user(&[], false)),
        Err(Denial::Forbidden(Forbidden::MissingRole))
    );
    assert_eq!(check(&t, "GET", "/docs/a", &Identified::Anonymous), Ok(false));
}

#[test]
fn deep_paths_match_like_short_ones() {
    let t = table(
        "[[routes]]\npath = \"/deep/*\"\naccess = \"public\"\n[[routes]]\npath = \"/x/*/y\"\naccess = \"deny\"\n",
    );
    let deep = format!("/deep{}", "/segment".repeat(40));
    assert_eq!(check(&t, "GET", &deep, &Identified::Anonymous), Ok(false));
    let other = format!("/other{}", "/segment".repeat(40));
    assert_eq!(
        check(&t, "GET", &other, &Identified::Anonymous),
        Err(unauthenticated(OnUnauthenticated::Auto))
    );
    assert_eq!(
        check(&t, "GET", "/x/1/y", &Identified::Anonymous),
        Err(Denial::Forbidden(Forbidden::RouteDenied))
    );
}
