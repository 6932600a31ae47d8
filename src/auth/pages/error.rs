//! Errors shown to browsers on our pages. A failed link or form post is answered on the page
//! it came from, with the error's message and status and what the visitor typed; API callers
//! get the JSON error. [`PageError::render`] is the one place that decides which.

use axum::response::{IntoResponse, Response};

use super::{SignInForm, link_sent_page, org_choice_page, sign_in_response};
use crate::auth::csrf::SiteContext;
use crate::auth::state::AppState;
use crate::error::ApiError;

/// The page an error is shown on.
#[derive(Debug)]
pub(crate) enum ErrorPage {
    /// The sign-in page, with the form as it was posted.
    SignIn(SignInForm),
    /// "Check your email" after a magic link was asked for, with the code form.
    LinkSent {
        /// The address the link went to.
        email: String,
        /// Where the sign-in goes afterwards.
        redirect: String,
    },
    /// The choice of organization of the pending sign-in named by the choice cookie.
    OrgChoice,
}

/// An error answered with a page to browsers and with the API error to API callers.
#[derive(Debug)]
pub(crate) struct PageError {
    error: ApiError,
    page: ErrorPage,
}

impl PageError {
    /// `error`, shown on `page`.
    pub(crate) fn new(error: impl Into<ApiError>, page: ErrorPage) -> Self {
        Self { error: error.into(), page }
    }

    /// A followed link (emailed, or minted by an operator) that failed: shown on the sign-in
    /// page, where the visitor can start again.
    pub(crate) fn link(error: impl Into<ApiError>) -> Self {
        Self::new(error, ErrorPage::SignIn(SignInForm::default()))
    }

    /// The answer: the JSON error when `json` (an API call), else the page with the error's
    /// message and status.
    pub(crate) async fn render(self, state: &AppState, site: &SiteContext, json: bool) -> Response {
        if json {
            return self.error.into_response();
        }
        match self.page {
            ErrorPage::SignIn(form) => sign_in_response(state, site, form, Some(&self.error)),
            ErrorPage::LinkSent { email, redirect } => {
                link_sent_page(state, site, &email, &redirect, Some(&self.error), false)
            }
            ErrorPage::OrgChoice => org_choice_page(state, site, Some(self.error)).await,
        }
    }
}
