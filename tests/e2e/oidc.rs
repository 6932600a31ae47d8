//! Sign-in through providers: an OpenID Connect provider (the in-process one in
//! `support::idp`) for new and existing users, roles from a claim, linking and unlinking, and
//! every way the flow can fail; Microsoft's multi-tenant issuers; GitHub (`support::github`).

use std::collections::BTreeMap;
use std::time::Duration;

use portcullis::testing::clock::ManualClock;
use portcullis::testing::config::raw::RawProvider;
use portcullis::testing::config::values::StringList;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::github::{FakeGithub, GithubAccount};
use crate::support::idp::{CLIENT_ID, CLIENT_SECRET, FakeIdp, Faults, IdpUser};
use crate::support::steam::FakeSteam;
use crate::support::{PASSWORD, TestApp, error_code, log_out, password_login};

fn corp(idp: &FakeIdp) -> RawProvider {
    RawProvider {
        kind: Some("oidc".into()),
        issuer: Some(idp.issuer()),
        client_id: Some(CLIENT_ID.into()),
        client_secret: Some(CLIENT_SECRET.into()),
        roles_claim: Some("groups".into()),
        roles_map: BTreeMap::from([
            ("engineering".into(), "engineering".into()),
            ("corp-admins".into(), "admin".into()),
        ]),
        display_name: Some("Corp SSO".into()),
        scopes: StringList(Vec::new()),
        ..RawProvider::default()
    }
}

async fn app_with(idp: &FakeIdp, clock: Option<ManualClock>) -> TestApp {
    let provider = corp(idp);
    let mut builder = TestApp::builder()
        .config(move |raw| raw.providers = BTreeMap::from([("corp".into(), provider)]));
    if let Some(clock) = clock {
        builder = builder.clock(clock);
    }
    builder.spawn().await
}

fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_owned()
}

/// Drives a browser through `start` (a Portcullis path) → the provider → the callback; returns
/// the callback's answer.
async fn through_provider(
    app: &TestApp,
    browser: &reqwest::Client,
    start: &str,
) -> reqwest::Response {
    let started = browser.get(app.url(start)).send().await.unwrap();
    assert_eq!(started.status(), StatusCode::FOUND, "{start}");
    let at_provider = browser.get(location(&started)).send().await.unwrap();
    assert!(at_provider.status().is_redirection(), "the provider answers with a redirect");
    browser.get(location(&at_provider)).send().await.unwrap()
}

#[tokio::test]
async fn a_new_user_signs_in_with_the_provider() {
    let idp = FakeIdp::start().await;
    let app = app_with(&idp, None).await;
    let providers: Value =
        app.client().get(app.url("/auth/providers")).send().await.unwrap().json().await.unwrap();
    assert_eq!(providers["providers"], json!(["corp", "magic_link", "password"]));
    let page =
        app.client().get(app.url("/auth/sign-in")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Sign in with Corp SSO"));

    let browser = app.client();
    let done = through_provider(&app, &browser, "/auth/login/corp?redirect_uri=/dashboard").await;
    assert_eq!(done.status(), StatusCode::FOUND);
    assert_eq!(location(&done), "/dashboard");
    let echoed = app.echo(&browser, "/dashboard").await;
    assert_eq!(echoed.header("x-auth-email"), Some("ada@corp.example"));
    assert_eq!(echoed.header("x-auth-name"), Some("Ada Lovelace"));
    assert_eq!(echoed.header("x-auth-roles"), Some("engineering"), "roles from the groups claim");
    let me: Value = browser.get(app.url("/auth/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["user"]["email_verified"], true);
    assert_eq!(
        me["user"]["avatar_url"], "https://cdn.corp.example/ada.png",
        "picture from userinfo"
    );
    let linked: Value =
        browser.get(app.url("/auth/providers/linked")).send().await.unwrap().json().await.unwrap();
    assert_eq!(linked["providers"][0]["provider"], "corp");

    // The same person again: the same account.
    let again = app.client();
    through_provider(&app, &again, "/auth/login/corp").await;
    let me_again: Value =
        again.get(app.url("/auth/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me_again["user"]["id"], me["user"]["id"]);
    assert_eq!(app.user_count().await, 1);

    // The only way this user signs in: unlinking it is refused.
    let csrf = app.csrf(&browser).await;
    let refused = browser
        .delete(app.url("/auth/providers/linked/corp"))
        .header("x-csrf-token", csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(refused).await, (StatusCode::CONFLICT, "conflict".into()));
}

#[tokio::test]
async fn a_verified_email_joins_the_existing_account_and_an_unverified_one_does_not() {
    let idp = FakeIdp::start().await;
    let app = app_with(&idp, None).await;
    let owner = app.signed_in("ada@corp.example").await;
    let me: Value = owner.get(app.url("/auth/me")).send().await.unwrap().json().await.unwrap();
    // The account's own address is verified (its owner clicked the link).
    let state = app.running().state();
    let id = uuid::Uuid::parse_str(me["user"]["id"].as_str().unwrap()).unwrap();
    state.services.users.mark_email_verified(id, state.clock.now()).await.unwrap();

    idp.set_user(IdpUser {
        sub: "unverified-1".into(),
        email: "ada@corp.example".into(),
        email_verified: false,
        name: "Mallory".into(),
        groups: Vec::new(),
    });
    let browser = app.client();
    let refused = through_provider(&app, &browser, "/auth/login/corp").await;
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    assert!(refused.text().await.unwrap().contains("sign in to it, then link"));

    idp.set_user(IdpUser {
        sub: "verified-1".into(),
        email: "ada@corp.example".into(),
        email_verified: true,
        name: "Ada".into(),
        groups: Vec::new(),
    });
    let browser = app.client();
    let done = through_provider(&app, &browser, "/auth/login/corp").await;
    assert_eq!(done.status(), StatusCode::FOUND);
    let joined: Value =
        browser.get(app.url("/auth/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(joined["user"]["id"], me["user"]["id"]);
    assert_eq!(app.user_count().await, 1);
}

#[tokio::test]
async fn a_signed_in_user_links_and_unlinks_a_provider_and_cannot_take_anothers() {
    let idp = FakeIdp::start().await;
    let app = app_with(&idp, None).await;
    let bob = app.signed_in("bob@example.com").await;
    idp.set_user(IdpUser {
        sub: "bob-at-corp".into(),
        email: "bob@corp.example".into(),
        email_verified: true,
        name: "Bob".into(),
        groups: Vec::new(),
    });
    let linked = through_provider(&app, &bob, "/auth/link/corp?redirect_uri=/settings").await;
    assert_eq!(location(&linked), "/settings");
    let list: Value =
        bob.get(app.url("/auth/providers/linked")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["providers"][0]["provider"], "corp");

    // Signing in with that identity now lands in Bob's account.
    let elsewhere = app.client();
    through_provider(&app, &elsewhere, "/auth/login/corp").await;
    let me: Value = elsewhere.get(app.url("/auth/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["user"]["email"], "bob@example.com");

    // Eve cannot link Bob's identity to her account.
    let eve = app.signed_in("eve@example.com").await;
    let stolen = through_provider(&app, &eve, "/auth/link/corp").await;
    assert_eq!(stolen.status(), StatusCode::CONFLICT);

    // Bob has a password too, so unlinking is allowed.
    let csrf = app.csrf(&bob).await;
    let unlinked = bob
        .delete(app.url("/auth/providers/linked/corp"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(unlinked.status(), 200);
    let gone = bob
        .delete(app.url("/auth/providers/linked/corp"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    let anonymous = app.client().get(app.url("/auth/link/corp")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

/// The status and page text of a sign-in that fails at the callback with `faults`.
async fn failing(app: &TestApp, idp: &FakeIdp, faults: Faults) -> (StatusCode, String) {
    idp.set_faults(faults);
    let browser = app.client();
    let response = through_provider(app, &browser, "/auth/login/corp").await;
    let status = response.status();
    assert!(
        response
            .headers()
            .get("set-cookie")
            .is_none_or(|c| !c.to_str().unwrap().starts_with("portcullis_session=v1"))
    );
    let text = response.text().await.unwrap();
    idp.set_faults(Faults::default());
    (status, text)
}

#[tokio::test]
async fn every_failure_ends_on_the_sign_in_page_without_a_session() {
    let idp = FakeIdp::start().await;
    let clock = ManualClock::new();
    let app = app_with(&idp, Some(clock.clone())).await;

    let (status, page) = failing(&app, &idp, Faults { deny: true, ..Faults::default() }).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(page.contains("Corp SSO did not sign you in: The user said no"), "{page}");
    for faults in [
        Faults { wrong_audience: true, ..Faults::default() },
        Faults { wrong_nonce: true, ..Faults::default() },
        Faults { unknown_signing_key: true, ..Faults::default() },
        Faults { authorized_party_elsewhere: true, ..Faults::default() },
        Faults { issued_in_the_future: true, ..Faults::default() },
    ] {
        let (status, page) = failing(&app, &idp, faults.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{faults:?}");
        assert!(page.contains("answer was not valid"), "{faults:?}: {page}");
    }
    let (status, page) =
        failing(&app, &idp, Faults { token_endpoint_fails: true, ..Faults::default() }).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(page.contains("provider is unavailable"));
    assert_eq!(app.user_count().await, 0);

    // A state we never issued, a replayed callback, and an expired sign-in.
    let forged =
        app.client().get(app.url("/auth/callback/corp?code=x&state=made-up")).send().await.unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    assert!(forged.text().await.unwrap().contains("expired or was already used"));
    let browser = app.client();
    let started = browser.get(app.url("/auth/login/corp")).send().await.unwrap();
    let at_provider = browser.get(location(&started)).send().await.unwrap();
    let callback = location(&at_provider);
    assert_eq!(browser.get(&callback).send().await.unwrap().status(), StatusCode::FOUND);
    let replayed = app.client().get(&callback).send().await.unwrap();
    assert_eq!(replayed.status(), StatusCode::UNAUTHORIZED);
    let slow = app.client();
    let started = slow.get(app.url("/auth/login/corp")).send().await.unwrap();
    let at_provider = slow.get(location(&started)).send().await.unwrap();
    clock.advance(Duration::from_secs(11 * 60));
    let late = slow.get(location(&at_provider)).send().await.unwrap();
    assert_eq!(late.status(), StatusCode::UNAUTHORIZED);

    // API clients get JSON.
    let json_error = app
        .client()
        .get(app.url("/auth/callback/corp?error=access_denied&state=x"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(json_error).await, (StatusCode::UNAUTHORIZED, "unauthorized".into()));
    let unknown = app.client().get(app.url("/auth/login/nope")).send().await.unwrap();
    assert_eq!(
        error_code(unknown).await,
        (StatusCode::NOT_FOUND, "provider_not_configured".into())
    );
}

#[tokio::test]
async fn a_key_rotation_at_the_provider_is_picked_up() {
    let idp = FakeIdp::start().await;
    let app = app_with(&idp, None).await;
    let first = app.client();
    assert_eq!(
        through_provider(&app, &first, "/auth/login/corp").await.status(),
        StatusCode::FOUND
    );
    idp.rotate_key();
    // The JWKS was fetched moments ago; refetches on an unknown kid are rate-limited (a few
    // seconds), so wait that out once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = app.client();
    assert_eq!(
        through_provider(&app, &second, "/auth/login/corp").await.status(),
        StatusCode::FOUND
    );
}

#[tokio::test]
async fn email_first_sign_in_sends_sso_domains_to_their_provider() {
    let idp = FakeIdp::start().await;
    let provider = corp(&idp);
    let app = TestApp::builder()
        .config(move |raw| {
            raw.providers = BTreeMap::from([("corp".into(), provider)]);
            raw.sso_domains = vec![portcullis::testing::config::raw::RawSsoDomain {
                domain: "corp.example".into(),
                provider: "corp".into(),
            }];
        })
        .spawn()
        .await;
    let ask = |email: &'static str| {
        app.client()
            .post(app.url("/auth/sign-in"))
            .json(&json!({ "email": email, "redirect_uri": "/inbox" }))
            .send()
    };
    // The answer is the provider's authorization URL and the flow's state, with the cookie that
    // binds the flow to this browser: the browser goes on to the provider and back.
    let browser = app.client();
    let answer = browser
        .post(app.url("/auth/sign-in"))
        .json(&json!({ "email": "Ada@Corp.Example", "redirect_uri": "/inbox" }))
        .send()
        .await
        .unwrap();
    let set_cookie = answer.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.starts_with("portcullis_flow="), "{set_cookie}");
    let sso: Value = answer.json().await.unwrap();
    assert_eq!(sso["auth_method"], "sso");
    let url = sso["redirect_url"].as_str().unwrap();
    assert!(url.starts_with(&idp.issuer()), "{url}");
    assert!(url.contains("login_hint=ada%40corp.example"), "{url}");
    assert!(url.contains(&format!("state={}", sso["state"].as_str().unwrap())), "{url}");
    let at_provider = browser.get(url).send().await.unwrap();
    let done = browser.get(location(&at_provider)).send().await.unwrap();
    assert_eq!(location(&done), "/inbox");
    for email in ["someone@elsewhere.example", "nobody@corp.example.org"] {
        let other: Value = ask(email).await.unwrap().json().await.unwrap();
        assert_eq!(other["auth_method"], "magic_link", "{email}");
    }
    let page = app.client().get(app.url("/auth/sign-in")).send().await.unwrap();
    assert_eq!(page.status(), 200, "GET /auth/sign-in is still the page");
}

#[tokio::test]
async fn microsoft_multi_tenant_tokens_are_checked_against_their_tenant() {
    let idp = FakeIdp::start().await;
    idp.set_tenant("9188040d-6c67-4c5b-b112-36a304b66dad");
    let provider = RawProvider {
        kind: Some("microsoft".into()),
        tenant: Some("common".into()),
        issuer: Some(format!("{}/common/v2.0", idp.issuer())),
        client_id: Some(CLIENT_ID.into()),
        client_secret: Some(CLIENT_SECRET.into()),
        ..RawProvider::default()
    };
    let app = TestApp::builder()
        .config(move |raw| raw.providers = BTreeMap::from([("microsoft".into(), provider)]))
        .spawn()
        .await;
    let page =
        app.client().get(app.url("/auth/sign-in")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Sign in with Microsoft"));
    let browser = app.client();
    let done = through_provider(&app, &browser, "/auth/login/microsoft").await;
    assert_eq!(done.status(), StatusCode::FOUND);
    assert_eq!(app.echo(&browser, "/x").await.header("x-auth-email"), Some("ada@corp.example"));

    idp.set_faults(Faults { issuer_of_another_tenant: true, ..Faults::default() });
    let refused = through_provider(&app, &app.client(), "/auth/login/microsoft").await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
}

fn github_app(fake: &FakeGithub, orgs: &[&str], teams: &[&str]) -> RawProvider {
    RawProvider {
        client_id: Some(crate::support::github::CLIENT_ID.into()),
        client_secret: Some(crate::support::github::CLIENT_SECRET.into()),
        auth_url: Some(fake.url("/login/oauth/authorize")),
        token_url: Some(fake.url("/login/oauth/access_token")),
        api_url: Some(fake.url("/api")),
        allowed_orgs: StringList(orgs.iter().map(|org| (*org).to_owned()).collect()),
        allowed_teams: StringList(teams.iter().map(|team| (*team).to_owned()).collect()),
        ..RawProvider::default()
    }
}

#[tokio::test]
async fn github_signs_in_with_the_verified_primary_email_and_enforces_orgs_and_teams() {
    let fake = FakeGithub::start().await;
    let provider = github_app(&fake, &["acme"], &[]);
    let app = TestApp::builder()
        .config(move |raw| raw.providers = BTreeMap::from([("github".into(), provider)]))
        .spawn()
        .await;
    let page =
        app.client().get(app.url("/auth/sign-in")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Sign in with GitHub"));
    let browser = app.client();
    let done = through_provider(&app, &browser, "/auth/login/github?redirect_uri=/repos").await;
    assert_eq!(location(&done), "/repos");
    let echoed = app.echo(&browser, "/repos").await;
    assert_eq!(echoed.header("x-auth-email"), Some("octocat@github.example"));
    assert_eq!(echoed.header("x-auth-name"), Some("The Octocat"));

    // Outside the allowed organizations: refused, no account.
    fake.set_account(GithubAccount {
        id: 7,
        login: "stranger".into(),
        name: None,
        emails: vec![("stranger@elsewhere.example".into(), true, true)],
        orgs: vec!["other".into()],
        teams: Vec::new(),
    });
    let refused = through_provider(&app, &app.client(), "/auth/login/github").await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.text().await.unwrap().contains("not in an allowed organization"));
    assert_eq!(app.user_count().await, 1);

    // An unverified primary email never joins the existing account with that address.
    fake.set_account(GithubAccount {
        id: 8,
        login: "imposter".into(),
        name: None,
        emails: vec![("octocat@github.example".into(), true, false)],
        orgs: vec!["acme".into()],
        teams: Vec::new(),
    });
    let imposter = through_provider(&app, &app.client(), "/auth/login/github").await;
    assert_eq!(imposter.status(), StatusCode::CONFLICT);
}

/// A member of many organizations is admitted when the allowed one is past GitHub's first page.
#[tokio::test]
async fn github_organizations_are_read_past_the_first_page() {
    let fake = FakeGithub::start().await;
    let provider = github_app(&fake, &["acme"], &[]);
    let app = TestApp::builder()
        .config(move |raw| raw.providers = BTreeMap::from([("github".into(), provider)]))
        .spawn()
        .await;
    let mut orgs: Vec<String> = (0..150).map(|n| format!("org-{n}")).collect();
    orgs.push("acme".into());
    fake.set_account(GithubAccount {
        id: 9,
        login: "busy".into(),
        name: None,
        emails: vec![("busy@github.example".into(), true, true)],
        orgs,
        teams: Vec::new(),
    });
    let done = through_provider(&app, &app.client(), "/auth/login/github").await;
    assert_eq!(done.status(), StatusCode::FOUND, "acme is the 151st organization");
}

#[tokio::test]
async fn github_team_members_get_in() {
    let fake = FakeGithub::start().await;
    let provider = github_app(&fake, &[], &["acme/ops"]);
    let app = TestApp::builder()
        .config(move |raw| raw.providers = BTreeMap::from([("github".into(), provider)]))
        .spawn()
        .await;
    let browser = app.client();
    assert_eq!(
        through_provider(&app, &browser, "/auth/login/github").await.status(),
        StatusCode::FOUND
    );
    fake.set_account(GithubAccount {
        id: 9,
        login: "dev".into(),
        name: Some("Dev".into()),
        emails: vec![("dev@acme.example".into(), true, true)],
        orgs: vec!["acme".into()],
        teams: vec![("acme".into(), "frontend".into())],
    });
    let refused = through_provider(&app, &app.client(), "/auth/login/github").await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
}

fn steam(fake: &FakeSteam) -> RawProvider {
    RawProvider {
        endpoint: Some(fake.url("/openid/login")),
        issuer: Some(fake.url("/openid/id/")),
        api_url: Some(fake.url("")),
        api_key: Some(crate::support::steam::API_KEY.into()),
        ..RawProvider::default()
    }
}

#[tokio::test]
async fn steam_signs_in_verifies_with_steam_and_links_to_an_existing_account() {
    let fake = FakeSteam::start().await;
    let provider = steam(&fake);
    let app = TestApp::builder()
        .config(move |raw| raw.providers = BTreeMap::from([("steam".into(), provider)]))
        .spawn()
        .await;
    let browser = app.client();
    let done = through_provider(&app, &browser, "/auth/login/steam?redirect_uri=/play").await;
    assert_eq!(location(&done), "/play");
    let echoed = app.echo(&browser, "/play").await;
    assert_eq!(echoed.header("x-auth-name"), Some("gaben"), "persona name from the Web API");
    assert_eq!(echoed.header("x-auth-email"), Some("76561197960287930@steam.invalid"));
    let me: Value = browser.get(app.url("/auth/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["user"]["avatar_url"], "https://avatars.steamstatic.example/gaben_full.jpg");

    // A forged assertion (another Steam id swapped into Steam's answer) is refused by Steam.
    let forger = app.client();
    let started = forger.get(app.url("/auth/login/steam")).send().await.unwrap();
    let at_steam = forger.get(location(&started)).send().await.unwrap();
    let callback = location(&at_steam).replace("76561197960287930", "76561197960287931");
    let forged = forger.get(&callback).send().await.unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);

    // An existing account links its Steam id, then signs in with it.
    fake.set_steam_id("76561198000000042");
    let player = app.signed_in("player@example.com").await;
    let linked = through_provider(&app, &player, "/auth/link/steam?redirect_uri=/settings").await;
    assert_eq!(location(&linked), "/settings");
    let later = app.client();
    through_provider(&app, &later, "/auth/login/steam").await;
    let me: Value = later.get(app.url("/auth/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["user"]["email"], "player@example.com");
}

#[tokio::test]
async fn with_require_selection_a_provider_sign_in_chooses_an_organization() {
    use crate::orgs::{choose_on_page, create_org};
    use portcullis::testing::config::values::Flag;
    let idp = FakeIdp::start().await;
    let provider = corp(&idp);
    let app = TestApp::builder()
        .config(move |raw| {
            raw.providers = BTreeMap::from([("corp".into(), provider)]);
            raw.orgs.require_selection = Flag(true);
        })
        .spawn()
        .await;
    let first = app.client();
    let done = through_provider(&app, &first, "/auth/login/corp").await;
    assert_eq!(done.status(), StatusCode::FOUND, "no organization yet: nothing to choose");
    create_org(&app, &first, "Acme").await;
    let beta = create_org(&app, &first, "Beta").await;

    let browser = app.client();
    let done = through_provider(&app, &browser, "/auth/login/corp?redirect_uri=/dashboard").await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&done), "/auth/orgs/select");
    let chosen = choose_on_page(&app, &browser, &beta).await;
    assert_eq!(location(&chosen), "/dashboard");
    let echoed = app.echo(&browser, "/dashboard").await;
    assert_eq!(echoed.header("x-auth-org-id"), Some(beta.as_str()));
    assert_eq!(echoed.header("x-auth-org-role"), Some("owner"));
}

/// Login CSRF (RFC 9700 §4.7): an attacker completes the provider step and sends the callback
/// URL to a victim. The victim's browser does not hold the flow's binding cookie, so it is
/// signed in as nobody, and the flow is spent.
#[tokio::test]
async fn a_callback_from_another_browser_signs_nobody_in() {
    let idp = FakeIdp::start().await;
    let app = app_with(&idp, None).await;
    let attacker = app.client();
    let started = attacker.get(app.url("/auth/login/corp")).send().await.unwrap();
    let at_provider = attacker.get(location(&started)).send().await.unwrap();
    let callback = location(&at_provider);

    let victim = app.client();
    let refused = victim.get(&callback).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.text().await.unwrap().contains("started in another browser"));
    let me = victim.get(app.url("/auth/me")).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED, "the victim has no session");
    assert_eq!(app.user_count().await, 0);
    // The flow was spent: not even its own browser can finish it now.
    let replay = attacker.get(&callback).send().await.unwrap();
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);

    // Two flows in two tabs of one browser both work (one binding per browser).
    let browser = app.client();
    let first = browser.get(app.url("/auth/login/corp")).send().await.unwrap();
    let second = browser.get(app.url("/auth/login/corp")).send().await.unwrap();
    let first = browser.get(location(&first)).send().await.unwrap();
    let second = browser.get(location(&second)).send().await.unwrap();
    assert_eq!(browser.get(location(&second)).send().await.unwrap().status(), StatusCode::FOUND);
    assert_eq!(browser.get(location(&first)).send().await.unwrap().status(), StatusCode::FOUND);
}

/// Link hijack: an attacker starts linking GitHub to their own account and sends the provider
/// URL to a victim, who is signed in to GitHub. The victim's identity must not end up linked to
/// the attacker's account: the callback needs the attacker's browser and session.
#[tokio::test]
async fn a_link_is_finished_only_by_the_account_that_started_it() {
    let idp = FakeIdp::start().await;
    let app = app_with(&idp, None).await;
    let attacker = app.signed_in("mallory@example.com").await;
    let started = attacker.get(app.url("/auth/link/corp")).send().await.unwrap();
    let provider_url = location(&started);

    // The victim, signed in to Portcullis in their own browser, follows the provider URL.
    idp.set_user(IdpUser {
        sub: "victim-1".into(),
        email: "ada@corp.example".into(),
        email_verified: true,
        name: "Ada".into(),
        groups: Vec::new(),
    });
    let victim = app.signed_in("ada@example.com").await;
    let at_provider = victim.get(&provider_url).send().await.unwrap();
    let refused = victim.get(location(&at_provider)).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let linked: Value =
        attacker.get(app.url("/auth/providers/linked")).send().await.unwrap().json().await.unwrap();
    assert_eq!(linked["providers"], json!([]), "nothing was linked to the attacker");

    // The same browser signed in as someone else cannot finish a link either.
    let started = attacker.get(app.url("/auth/link/corp")).send().await.unwrap();
    let at_provider = attacker.get(location(&started)).send().await.unwrap();
    log_out(&app, &attacker).await;
    app.sign_up(&attacker, "other@example.com").await;
    let refused = attacker.get(location(&at_provider)).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
}

/// Steam's assertion must be for the very flow it finishes, fresh, and signed over every field
/// that matters, before Steam is even asked.
#[tokio::test]
async fn steam_assertions_are_bound_to_their_flow_fresh_and_fully_signed() {
    let fake = FakeSteam::start().await;
    let provider = steam(&fake);
    let app = TestApp::builder()
        .config(move |raw| raw.providers = BTreeMap::from([("steam".into(), provider)]))
        .spawn()
        .await;
    let browser = app.client();
    // An assertion made for one flow, presented with another flow's state.
    let first = browser.get(app.url("/auth/login/steam")).send().await.unwrap();
    let second = browser.get(app.url("/auth/login/steam")).send().await.unwrap();
    let state_of = |response: &reqwest::Response| {
        let url = url::Url::parse(&location(response)).unwrap();
        let return_to = url.query_pairs().find(|(k, _)| k == "openid.return_to").unwrap().1;
        return_to.split("state=").nth(1).unwrap().to_owned()
    };
    let (first_state, second_state) = (state_of(&first), state_of(&second));
    let at_steam = browser.get(location(&first)).send().await.unwrap();
    let swapped = location(&at_steam).replacen(
        &format!("?state={first_state}"),
        &format!("?state={second_state}"),
        1,
    );
    let refused = browser.get(&swapped).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "another flow's assertion");

    for (age, signed, why) in [
        (Duration::from_secs(3600), None, "a stale nonce"),
        (
            Duration::ZERO,
            Some("signed,op_endpoint,claimed_id,identity,return_to"),
            "unsigned fields",
        ),
    ] {
        fake.set_nonce_age(age);
        fake.set_signed(signed);
        let refused = through_provider(&app, &app.client(), "/auth/login/steam").await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{why}");
    }
    assert_eq!(app.user_count().await, 0);
    fake.set_nonce_age(Duration::ZERO);
    fake.set_signed(None);
    let done = through_provider(&app, &app.client(), "/auth/login/steam").await;
    assert_eq!(done.status(), StatusCode::FOUND, "a good assertion still signs in");
}

/// Pre-account takeover: an attacker signs up the victim's address with a password and waits.
/// The victim's provider sign-in is not merged into that unverified account; once the victim
/// proves the mailbox (a magic link), everything the attacker set up is gone.
#[tokio::test]
async fn an_unverified_sign_up_is_never_handed_over_with_its_credentials() {
    let idp = FakeIdp::start().await;
    let sink = crate::support::smtp::SmtpSink::start().await;
    let provider = corp(&idp);
    let url = sink.url();
    let app = TestApp::builder()
        .config(move |raw| {
            raw.providers = BTreeMap::from([("corp".into(), provider)]);
            raw.email.transport = "smtp".into();
            raw.email.smtp_url = Some(url);
        })
        .spawn()
        .await;
    let attacker = app.signed_in("ada@corp.example").await;
    let csrf = app.csrf(&attacker).await;
    let key: Value = attacker
        .post(app.url("/auth/api-keys"))
        .header("x-csrf-token", csrf)
        .json(&json!({ "name": "backdoor", "scopes": ["read", "account"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = key["key"].as_str().unwrap().to_owned();

    // The real Ada signs in through the company IdP, which vouches for the address.
    idp.set_user(IdpUser {
        sub: "ada-at-corp".into(),
        email: "ada@corp.example".into(),
        email_verified: true,
        name: "Ada".into(),
        groups: Vec::new(),
    });
    let victim = app.client();
    let refused = through_provider(&app, &victim, "/auth/login/corp").await;
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    assert!(refused.text().await.unwrap().contains("never verified"));

    // She proves the mailbox with a magic link: the account is hers alone from then on.
    let sent = victim
        .post(app.url("/auth/magic-link"))
        .json(&json!({ "email": "ada@corp.example" }))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    // The attacker's verification mail went out first, but mails are sent in the background:
    // which one the sink has second is not certain.
    let mail = sink.nth_about(1, "Sign in").await;
    let link = mail.link().expect("a magic link");
    assert_eq!(app.confirm_magic_link(&victim, &link).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(attacker.get(app.url("/auth/me")).send().await.unwrap().status(), 401);
    let password =
        password_login(&app, &crate::support::http(), "ada@corp.example", PASSWORD).await;
    assert_eq!(password.status(), StatusCode::UNAUTHORIZED, "the attacker's password is gone");
    let with_key =
        crate::support::http().get(app.url("/x")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(with_key.status(), StatusCode::UNAUTHORIZED, "the attacker's key is revoked");
    // Now verified, the provider sign-in joins it.
    let joined = through_provider(&app, &app.client(), "/auth/login/corp").await;
    assert_eq!(joined.status(), StatusCode::FOUND);
    assert_eq!(app.user_count().await, 1);
}

/// With an email-domain allow-list, an address counts only once proven: a provider that did
/// not verify it makes no account, and a password sign-up reaches the app only after the
/// verification link.
#[tokio::test]
async fn a_domain_allow_list_admits_only_verified_addresses() {
    let idp = FakeIdp::start().await;
    let provider = corp(&idp);
    let app = TestApp::builder()
        .config(move |raw| {
            raw.providers = BTreeMap::from([("corp".into(), provider)]);
            raw.auth.allowed_email_domains = StringList(vec!["corp.example".into()]);
        })
        .routes("[[routes]]\npath = \"/public/*\"\naccess = \"public\"\n")
        .spawn()
        .await;
    idp.set_user(IdpUser {
        sub: "anyone".into(),
        email: "anyone@corp.example".into(),
        email_verified: false,
        name: "Anyone".into(),
        groups: Vec::new(),
    });
    let refused = through_provider(&app, &app.client(), "/auth/login/corp").await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.user_count().await, 0);

    let signed_up = app.signed_in("someone@corp.example").await;
    let gated = signed_up.get(app.url("/dashboard")).send().await.unwrap();
    assert_eq!(error_code(gated).await, (StatusCode::FORBIDDEN, "forbidden".into()));
    let public: crate::support::Echoed =
        signed_up.get(app.url("/public/x")).send().await.unwrap().json().await.unwrap();
    assert!(public.header("x-auth-user-id").is_none(), "an unverified identity is not forwarded");
    let state = app.running().state();
    let me: Value = signed_up.get(app.url("/auth/me")).send().await.unwrap().json().await.unwrap();
    let id = uuid::Uuid::parse_str(me["user"]["id"].as_str().unwrap()).unwrap();
    state.services.users.mark_email_verified(id, state.clock.now()).await.unwrap();
    state.services.sessions.refresh_user(id);
    assert_eq!(signed_up.get(app.url("/dashboard")).send().await.unwrap().status(), 200);
}

/// IdP groups become roles only through `roles_map`: a group anyone can create named `admin`
/// gives nothing, and roles an operator set survive every sign-in.
#[tokio::test]
async fn only_mapped_groups_become_roles_and_operator_roles_stay() {
    let idp = FakeIdp::start().await;
    let app = app_with(&idp, None).await;
    let user = |groups: &[&str]| IdpUser {
        sub: "ada-1".into(),
        email: "ada@corp.example".into(),
        email_verified: true,
        name: "Ada".into(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
    };
    idp.set_user(user(&["engineering", "admin", "wheel"]));
    let browser = app.client();
    through_provider(&app, &browser, "/auth/login/corp").await;
    let echoed = app.echo(&browser, "/x").await;
    assert_eq!(echoed.header("x-auth-roles"), Some("engineering"), "`admin` is no listed group");

    // An operator gives Ada `support`; the next sign-in keeps it, and maps `corp-admins`.
    let state = app.running().state();
    let me: Value = browser.get(app.url("/auth/me")).send().await.unwrap().json().await.unwrap();
    let id = uuid::Uuid::parse_str(me["user"]["id"].as_str().unwrap()).unwrap();
    state.services.users.set_roles(id, &["support".into()], state.clock.now()).await.unwrap();
    idp.set_user(user(&["corp-admins"]));
    let again = app.client();
    through_provider(&app, &again, "/auth/login/corp").await;
    let echoed = app.echo(&again, "/x").await;
    assert_eq!(echoed.header("x-auth-roles"), Some("admin,support"));
    // Leaving the group at the IdP takes its role away at the next sign-in; `support` stays.
    idp.set_user(user(&[]));
    let later = app.client();
    through_provider(&app, &later, "/auth/login/corp").await;
    let echoed = app.echo(&later, "/x").await;
    assert_eq!(echoed.header("x-auth-roles"), Some("support"));
}

/// A provider sign-in replaces whatever session the browser had (a planted one included).
#[tokio::test]
async fn a_provider_sign_in_ends_the_browsers_previous_session() {
    let idp = FakeIdp::start().await;
    let app = app_with(&idp, None).await;
    let browser = app.client();
    let planted = app.session_cookie(&browser, "planted@example.com").await;
    let done = through_provider(&app, &browser, "/auth/login/corp").await;
    assert_eq!(done.status(), StatusCode::FOUND);
    let old = crate::support::http()
        .get(app.url("/auth/me"))
        .header("cookie", &planted)
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED, "the earlier session ended");
}
