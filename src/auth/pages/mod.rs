//! Server-rendered pages (no JavaScript needed): sign-in and device approval.
//!
//! Templates are embedded at build time and auto-escaped; every page is sent with a strict
//! Content-Security-Policy, no framing and a same-origin referrer policy.

use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, SET_COOKIE, X_FRAME_OPTIONS,
};
use http::{HeaderValue, StatusCode};
use minijinja::{Environment, context};
use serde::Deserialize;

mod error;

pub(crate) use self::error::{ErrorPage, PageError};
use super::csrf::SiteContext;
use super::error::{AuthError, BadRequest, Spent};
use super::extract::ApiQuery;
use crate::auth::state::AppState;
use crate::config::Branding;
use crate::cookies::Own;
use crate::error::ApiError;
use crate::identity::password_policy::MIN_LENGTH;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The page templates and branding.
#[derive(Debug)]
pub struct Pages {
    env: Environment<'static>,
    product_name: String,
    branding: Branding,
}

/// What the sign-in form shows again after a failed post.
#[derive(Debug, Default)]
pub(crate) struct SignInForm {
    /// Email to pre-fill.
    pub email: Option<String>,
    /// Where to go after signing in.
    pub redirect_uri: Option<String>,
    /// Whether the sign-up form was the one posted (shown open).
    pub signing_up: bool,
}

impl Pages {
    /// Loads the embedded templates.
    ///
    /// # Errors
    /// A template does not parse (a bug caught by the tests).
    pub fn new(product_name: &str, branding: Branding) -> Result<Self, minijinja::Error> {
        let mut env = Environment::new();
        env.add_template("layout.html", include_str!("templates/layout.html"))?;
        env.add_template("sign_in.html", include_str!("templates/sign_in.html"))?;
        env.add_template("device.html", include_str!("templates/device.html"))?;
        env.add_template("magic_link_sent.html", include_str!("templates/magic_link_sent.html"))?;
        env.add_template(
            "magic_link_confirm.html",
            include_str!("templates/magic_link_confirm.html"),
        )?;
        env.add_template("reset_password.html", include_str!("templates/reset_password.html"))?;
        env.add_template("org_select.html", include_str!("templates/org_select.html"))?;
        env.add_template("sign_out.html", include_str!("templates/sign_out.html"))?;
        Ok(Self { env, product_name: product_name.to_owned(), branding })
    }

    fn render(&self, name: &str, ctx: minijinja::Value) -> Result<String, minijinja::Error> {
        let base = context! {
            product_name => &self.product_name,
            logo_url => &self.branding.logo_url,
            accent_color => self.branding.accent_color.as_deref().unwrap_or("#2f54eb"),
        };
        self.env.get_template(name)?.render(context! { ..base, ..ctx })
    }
}

/// Routes: `GET /sign-in`.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(sign_in))
}

#[derive(Debug, Deserialize)]
struct SignInQuery {
    redirect_uri: Option<String>,
}

#[utoipa::path(
    get,
    path = "/sign-in",
    tag = "pages",
    params(
        ("redirect_uri" = Option<String>, Query, description = "Where to go after signing in"),
    ),
    responses(
        (status = 200, description = "The sign-in page", content_type = "text/html"),
    ),
)]
async fn sign_in(
    State(state): State<AppState>,
    site: SiteContext,
    ApiQuery(query): ApiQuery<SignInQuery>,
) -> Response {
    let refused = query.redirect_uri.as_deref().map(|target| state.redirects.check(target));
    if let Some(Err(reason)) = refused {
        let error = AuthError::from(BadRequest::Redirect(reason));
        return PageError::link(error).render(&state, &site, false).await;
    }
    let form = SignInForm { email: None, redirect_uri: query.redirect_uri, signing_up: false };
    sign_in_response(&state, &site, form, None)
}

/// The sign-in page, with `error` shown (and its status) when there is one.
pub(crate) fn sign_in_response(
    state: &AppState,
    site: &SiteContext,
    form: SignInForm,
    error: Option<&ApiError>,
) -> Response {
    let ctx = context! {
            redirect_uri => form.redirect_uri.unwrap_or_default(),
            email => form.email.unwrap_or_default(),
            signing_up => form.signing_up,
            error => error.map(ApiError::message),
            password => true,
            signup => state.config.auth.signup,
            min_password_length => MIN_LENGTH,
            providers => state
                .oauth
                .iter()
                .map(|provider| context! { name => &provider.name, display_name => &provider.display_name })
                .collect::<Vec<_>>(),
    };
    let status = error.map_or(StatusCode::OK, |error| error.code().status());
    render_form_page(state, site, "sign_in.html", ctx, status)
}

/// "Check your email" after a magic link was asked for (or a password sign-up that waits
/// for it), with the form for the code.
pub(crate) fn link_sent_page(
    state: &AppState,
    site: &SiteContext,
    email: &str,
    redirect: &str,
    error: Option<&ApiError>,
    signing_up: bool,
) -> Response {
    let status = error.map_or(StatusCode::OK, |error| error.code().status());
    let error = error.map(ApiError::message);
    let ctx = context! { email, redirect_uri => redirect, error, signing_up };
    render_form_page(state, site, "magic_link_sent.html", ctx, status)
}

/// The organizations of the pending sign-in named by the choice cookie, as a form (only the
/// error when the choice is gone).
pub(crate) async fn org_choice_page(
    state: &AppState,
    site: &SiteContext,
    error: Option<ApiError>,
) -> Response {
    let choice = match state.cookies.read(&site.headers, Own::Choice).one() {
        Some(token) => state.choices.peek(token).await,
        None => Ok(None),
    };
    let (orgs, error) = match choice {
        Ok(Some(choice)) => match state.services.orgs.memberships(choice.user_id).await {
            Ok(orgs) => (orgs, error),
            Err(failure) => (Vec::new(), Some(failure.into())),
        },
        Ok(None) => {
            (Vec::new(), Some(error.unwrap_or_else(|| AuthError::from(Spent::Choice).into())))
        }
        Err(failure) => (Vec::new(), Some(failure.into())),
    };
    let status = error.as_ref().map_or(StatusCode::OK, |error| error.code().status());
    let organizations = orgs
        .iter()
        .map(|org| context! { id => org.id.to_string(), name => &org.name, role => &org.role })
        .collect::<Vec<_>>();
    let ctx = context! { organizations, error => error.as_ref().map(ApiError::message) };
    render_form_page(state, site, "org_select.html", ctx, status)
}

/// Renders a page that holds a form: `base_path` and the visitor's anonymous `csrf_token` are
/// added to `ctx`, and the CSRF cookie is set when the visitor has none yet.
pub(crate) fn render_form_page(
    state: &AppState,
    site: &SiteContext,
    template: &str,
    ctx: minijinja::Value,
    status: StatusCode,
) -> Response {
    let (csrf_token, set_cookie) = state.csrf.anonymous_for_page(&site.headers);
    let ctx = context! { base_path => &state.config.auth.base_path, csrf_token, ..ctx };
    let mut response = render_page(state, template, ctx, status);
    if let Some(cookie) = set_cookie {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    response
}

/// Renders `template` with `ctx` as a page answered with `status`.
pub(crate) fn render_page(
    state: &AppState,
    template: &str,
    ctx: minijinja::Value,
    status: StatusCode,
) -> Response {
    page_response(state.pages.render(template, ctx), status)
}

/// A rendered page with the headers every page carries: strict CSP, no framing, referrers
/// only to ourselves, never cached.
fn page_response(rendered: Result<String, minijinja::Error>, status: StatusCode) -> Response {
    let mut response = match rendered {
        Ok(body) => (status, Html(body)).into_response(),
        Err(error) => return ApiError::internal(error).into_response(),
    };
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Same-origin: our own form posts carry a real `Origin`, and nothing (a reset token in the
    // URL) leaks to other sites.
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_and_escape() {
        let pages = Pages::new("Acme <Portal>", Branding::default()).unwrap();
        let html = pages
            .render(
                "sign_in.html",
                context! {
                    base_path => "/auth", csrf_token => "tok", redirect_uri => "/x?a=1&b=\"2\"",
                    email => "", signing_up => false, error => "<script>alert(1)</script>",
                    password => true, signup => true, min_password_length => 10,
                    providers => vec![context! { name => "corp", display_name => "Corp <SSO>" }],
                },
            )
            .unwrap();
        assert!(html.contains("Acme &lt;Portal&gt;"));
        assert!(!html.contains("<script>alert"));
        // Auto-escaping writes `/` as `&#x2f;`, which browsers read back as `/`.
        assert!(html.contains("action=\"&#x2f;auth/login\""), "{html}");
        assert!(html.contains("&quot;2&quot;"));
        assert!(html.contains("<label for=\"login-email\">"));
        assert!(html.contains("Sign in with Corp &lt;SSO&gt;"));
        assert!(html.contains("&#x2f;auth/login/corp?redirect_uri=&#x2f;x%3Fa%3D1%26b"), "{html}");
    }
}
