//! `[[upstreams]]` and `[[routes]]`: where requests go and the rule each one meets.

use super::Errors;
use crate::config::raw::{RawRoute, RawUpstream};
use crate::gateway::path::PathOptions;
use crate::gateway::pattern::PathPattern;
use crate::gateway::policy::{Access, OnUnauthenticated, Route, canonical_method};
use crate::gateway::upstream::Upstream;
use crate::model::org::OrgRoles;

pub(super) fn upstreams(raw: &[RawUpstream], errors: &mut Errors) -> Vec<Upstream> {
    let mut names = std::collections::HashSet::new();
    raw.iter()
        .enumerate()
        .filter_map(|(index, upstream)| {
            let key = format!("upstreams[{index}]");
            if !names.insert(upstream.name.clone()) {
                errors.push(format!("{key}.name"), format!("`{}` is used twice", upstream.name));
            }
            errors.check(
                &key,
                Upstream::new(
                    &upstream.name,
                    &upstream.url,
                    &upstream.hosts.0,
                    upstream.path_prefix.as_deref().unwrap_or("/"),
                    upstream.http2.0,
                )
                .map(|parsed| {
                    parsed.with_path_options(PathOptions {
                        encoded_slashes: upstream.allow_encoded_slashes.0,
                        matrix_params: upstream.allow_matrix_params.0,
                    })
                }),
            )
        })
        .collect()
}

pub(super) fn route(
    index: usize,
    raw: &RawRoute,
    org_roles: &OrgRoles,
    errors: &mut Errors,
) -> Option<Route> {
    let key = format!("routes[{index}]");
    let pattern = errors
        .check(&format!("{key}.path"), PathPattern::parse(&raw.path))?
        .case_insensitive(raw.case_insensitive.0);
    let access = match raw.access.as_deref() {
        None | Some("authenticated") => Access::Authenticated,
        Some("public") => Access::Public,
        Some("deny") => Access::Deny,
        Some(other) => {
            errors.push(
                format!("{key}.access"),
                format!("`{other}` is not one of: public, authenticated, deny"),
            );
            return None;
        }
    };
    let on_unauthenticated = match raw.on_unauthenticated.as_deref() {
        None | Some("auto") => OnUnauthenticated::Auto,
        Some("401") => OnUnauthenticated::Status401,
        Some("redirect") => OnUnauthenticated::Redirect,
        Some(other) => {
            errors.push(
                format!("{key}.on_unauthenticated"),
                format!("`{other}` is not one of: auto, 401, redirect"),
            );
            return None;
        }
    };
    let mut methods = Vec::new();
    for method in &raw.methods.0 {
        // Methods are matched upper case (requests in another case are canonicalized, or
        // refused for extension methods).
        match http::Method::from_bytes(method.trim().to_ascii_uppercase().as_bytes()) {
            Ok(method) => methods.push(canonical_method(&method).unwrap_or(method)),
            Err(_) => {
                errors.push(format!("{key}.methods"), format!("`{method}` is not an HTTP method"))
            }
        }
    }
    // A HEAD request runs the GET handler in most frameworks: a rule on GET covers HEAD.
    if methods.contains(&http::Method::GET) && !methods.contains(&http::Method::HEAD) {
        methods.push(http::Method::HEAD);
    }
    let restricts = !raw.roles.is_empty()
        || !raw.scopes.is_empty()
        || !raw.org_roles.is_empty()
        || raw.verified_email.0;
    if access != Access::Authenticated && restricts {
        errors.push(
            format!("{key}.access"),
            "roles, scopes, org_roles and verified_email need access = \"authenticated\"",
        );
    }
    // A public route would admit everyone whatever the path names: no tenant isolation.
    if access == Access::Public && raw.path.contains("{org_id}") {
        errors.push(
            format!("{key}.access"),
            "a path holding {org_id} admits only members: it needs access = \"authenticated\"",
        );
    }
    for role in &raw.org_roles.0 {
        if !org_roles.contains(role) {
            errors.push(
                format!("{key}.org_roles"),
                format!("`{role}` is not one of the organization roles in [orgs] roles"),
            );
        }
    }
    Some(Route {
        pattern,
        methods,
        access,
        roles: raw.roles.0.clone(),
        scopes: raw.scopes.0.clone(),
        org_roles: raw.org_roles.0.clone(),
        verified_email: raw.verified_email.0,
        on_unauthenticated,
    })
}

#[cfg(test)]
mod tests;
