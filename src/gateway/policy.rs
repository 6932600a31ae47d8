//! Route policy: which rule applies to a request, and whether its identity may pass.
//!
//! [`decide`] is a pure function of the rule, the path match and the identity. Only it can
//! make a [`Permit`], and forwarding requires one, so a request cannot be forwarded without
//! having been decided.
//!
//! Its tests read `[[routes]]` snippets, so they sit with the compiler of that section
//! (`config/compile/routes/tests.rs`), the layer that sees both the TOML and the decision.

use std::sync::Arc;

use http::Method;

use super::identify::{Identified, Rejection};
use super::pattern::{PathMatch, PathPattern};
use crate::model::Identity;

/// What a rule lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone; an identity is forwarded when there is one.
    Public,
    /// A valid credential that meets the rule's restrictions.
    Authenticated,
    /// Nobody.
    Deny,
}

/// How an unauthenticated request on a protected route is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnauthenticated {
    /// Browsers are redirected to sign in; everything else gets 401 JSON.
    Auto,
    /// Always 401 JSON.
    Status401,
    /// Always a redirect to sign in.
    Redirect,
}

/// One compiled `[[routes]]` rule.
#[derive(Debug, Clone)]
pub struct Route {
    /// Path pattern.
    pub pattern: PathPattern,
    /// Methods the rule applies to; empty for all.
    pub methods: Vec<Method>,
    /// Access level.
    pub access: Access,
    /// Global roles, any of.
    pub roles: Vec<String>,
    /// Scopes, all of.
    pub scopes: Vec<String>,
    /// Organization roles, any of (in the organization the path names, or the active one).
    pub org_roles: Vec<String>,
    /// Whether the user's email must be verified.
    pub verified_email: bool,
    /// How to answer when unauthenticated.
    pub on_unauthenticated: OnUnauthenticated,
}

impl Route {
    /// The rule for unmatched paths: authentication required.
    pub fn fallback() -> Self {
        Self {
            pattern: PathPattern::parse("*")
                .unwrap_or_else(|_| unreachable!("`*` is a valid pattern")),
            methods: Vec::new(),
            access: Access::Authenticated,
            roles: Vec::new(),
            scopes: Vec::new(),
            org_roles: Vec::new(),
            verified_email: false,
            on_unauthenticated: OnUnauthenticated::Auto,
        }
    }

    fn applies_to(&self, method: &Method) -> bool {
        self.methods.is_empty() || self.methods.contains(method)
    }
}

/// The ordered rules; the first that matches path and method wins.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<Route>,
    fallback: Route,
}

impl RouteTable {
    /// A table of `routes` in order, with the authenticated fallback after them.
    pub fn new(routes: Vec<Route>) -> Self {
        Self { routes, fallback: Route::fallback() }
    }

    /// The rule for a request and what its pattern captured.
    pub fn find<'t, 'p>(
        &'t self,
        method: &Method,
        path: &'p str,
    ) -> (&'t Route, PathMatch<'t, 'p>) {
        if self.routes.is_empty() {
            return (&self.fallback, PathMatch::default());
        }
        // Split once for every rule; paths are short, so the segments live on the stack.
        let mut stack = [""; 24];
        let mut count = 0;
        let mut heap = Vec::new();
        for part in path.split('/').filter(|part| !part.is_empty()) {
            if count < stack.len() {
                stack[count] = part;
            } else {
                if heap.is_empty() {
                    heap.extend_from_slice(&stack);
                }
                heap.push(part);
            }
            count += 1;
        }
        let segments: &[&str] = if heap.is_empty() { &stack[..count] } else { &heap };
        for route in &self.routes {
            if !route.applies_to(method) {
                continue;
            }
            if let Some(matched) = route.pattern.matches_segments(segments) {
                return (route, matched);
            }
        }
        (&self.fallback, PathMatch::default())
    }

    /// The same table with every rule asking for a verified email, the fallback too: with an
    /// email-domain allow-list, an address is in the domain only once its owner proved it. On
    /// public rules an unverified identity is not forwarded (the request passes as anonymous).
    #[must_use]
    pub fn requiring_verified_email(mut self) -> Self {
        for route in self.routes.iter_mut().chain([&mut self.fallback]) {
            route.verified_email = true;
        }
        self
    }

    /// How many rules the table holds (besides the fallback).
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether the table has no rules.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

impl Default for RouteTable {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

/// The standard methods (RFC 9110 §9 and PATCH): matched whatever their case.
const STANDARD_METHODS: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::CONNECT,
    Method::OPTIONS,
    Method::TRACE,
    Method::PATCH,
];

/// The method as rules see it and the app receives it: a standard method in any case becomes
/// its upper-case form (`delete` is `DELETE`, as Django and Werkzeug read it); an extension
/// method stays exactly as sent and matches only a rule that names it so. `None` when the
/// method is already in that form.
pub(crate) fn canonical_method(method: &Method) -> Option<Method> {
    if STANDARD_METHODS.contains(method) {
        return None;
    }
    STANDARD_METHODS
        .iter()
        .find(|standard| standard.as_str().eq_ignore_ascii_case(method.as_str()))
        .cloned()
}

/// Proof that a request was allowed, with the identity to forward (none for anonymous access
/// to a public route). Only [`decide`] makes one, and it cannot be copied.
#[derive(Debug)]
pub struct Permit {
    identity: Option<Arc<Identity>>,
}

impl Permit {
    /// The identity to forward, if any.
    pub fn identity(&self) -> Option<&Arc<Identity>> {
        self.identity.as_ref()
    }
}

/// The outcome of [`decide`].
#[derive(Debug)]
pub enum Decision {
    /// Forward.
    Allow(Permit),
    /// Refuse, for this reason.
    Deny(Denial),
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No usable credential on a protected route.
    Unauthenticated {
        /// What was wrong with the credential that was sent, if one was.
        problem: Option<Rejection>,
        /// How to answer.
        on_unauthenticated: OnUnauthenticated,
    },
    /// The credential could not be checked because the store is down.
    StoreUnavailable,
    /// The credential was not checked: the client failed too many checks lately.
    Throttled,
    /// Authenticated but not allowed.
    Forbidden(Forbidden),
}

/// Which restriction refused an authenticated request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forbidden {
    /// The rule denies everyone.
    RouteDenied,
    /// None of the required global roles.
    MissingRole,
    /// Not every required scope.
    MissingScope,
    /// The email is not verified.
    EmailNotVerified,
    /// Not a member of the organization the path names, or of any active one.
    NotOrgMember,
    /// Not one of the required organization roles.
    MissingOrgRole,
}

impl Forbidden {
    /// The public message.
    pub fn message(self) -> &'static str {
        match self {
            Self::RouteDenied => "This path is not available",
            Self::MissingRole => "Your account lacks a role this route requires",
            Self::MissingScope => "This credential lacks a scope this route requires",
            Self::EmailNotVerified => "Verify your email address to use this route",
            Self::NotOrgMember => "You are not a member of this organization",
            Self::MissingOrgRole => "Your role in this organization does not allow this route",
        }
    }
}

/// Decides whether `identified` may use `route` (matched as `matched`).
pub fn decide(route: &Route, matched: &PathMatch<'_, '_>, identified: &Identified) -> Decision {
    match route.access {
        Access::Deny => return Decision::Deny(Denial::Forbidden(Forbidden::RouteDenied)),
        Access::Public => {
            let identity = match identified {
                Identified::Known(identity) if route.verified_email && !identity.email_verified => {
                    None
                }
                Identified::Known(identity) => Some(Arc::clone(identity)),
                Identified::Anonymous | Identified::Rejected(_) => None,
            };
            return Decision::Allow(Permit { identity });
        }
        Access::Authenticated => {}
    }
    let identity = match identified {
        Identified::Known(identity) => identity,
        Identified::Anonymous => {
            return Decision::Deny(Denial::Unauthenticated {
                problem: None,
                on_unauthenticated: route.on_unauthenticated,
            });
        }
        Identified::Rejected(Rejection::StoreUnavailable) => {
            return Decision::Deny(Denial::StoreUnavailable);
        }
        Identified::Rejected(Rejection::Throttled) => {
            return Decision::Deny(Denial::Throttled);
        }
        Identified::Rejected(problem) => {
            return Decision::Deny(Denial::Unauthenticated {
                problem: Some(*problem),
                on_unauthenticated: route.on_unauthenticated,
            });
        }
    };
    if let Some(reason) = restriction_failed(route, matched, identity) {
        return Decision::Deny(Denial::Forbidden(reason));
    }
    Decision::Allow(Permit { identity: Some(Arc::clone(identity)) })
}

fn restriction_failed(
    route: &Route,
    matched: &PathMatch<'_, '_>,
    identity: &Identity,
) -> Option<Forbidden> {
    if !route.roles.is_empty() && !route.roles.iter().any(|role| identity.has_role(role)) {
        return Some(Forbidden::MissingRole);
    }
    if !route.scopes.iter().all(|scope| identity.scopes.grants(scope)) {
        return Some(Forbidden::MissingScope);
    }
    if route.verified_email && !identity.email_verified {
        return Some(Forbidden::EmailNotVerified);
    }
    // Tenant isolation: a path naming an organization admits only its members.
    let org_role = match matched.param("org_id") {
        Some(org_id) => {
            // Parsed once; a segment that is no id names no organization anyone belongs to.
            let org_id = uuid::Uuid::try_parse(org_id).ok();
            let membership = identity.orgs.iter().find(|org| Some(org.org_id) == org_id);
            match membership {
                Some(membership) => Some(membership.role.as_str()),
                None => return Some(Forbidden::NotOrgMember),
            }
        }
        None => identity.active_org.as_ref().map(|org| org.role.as_str()),
    };
    if !route.org_roles.is_empty() {
        let Some(role) = org_role else { return Some(Forbidden::NotOrgMember) };
        if !route.org_roles.iter().any(|allowed| allowed == role) {
            return Some(Forbidden::MissingOrgRole);
        }
    }
    None
}
