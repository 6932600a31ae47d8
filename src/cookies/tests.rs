//! Tests of `cookies`.
use super::*;

fn jar() -> CookieJar {
    CookieJar::new("portcullis_session", true, Some("example.com".into()))
}

#[test]
fn session_cookie_has_the_secure_defaults() {
    let text = jar()
        .session("v1.abc".into(), std::time::Duration::from_secs(60))
        .to_str()
        .unwrap()
        .to_owned();
    for part in [
        "portcullis_session=v1.abc",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
        "Secure",
        "Domain=example.com",
        "Max-Age=60",
    ] {
        assert!(text.contains(part), "{part} missing in {text}");
    }
    let cleared = CookieJar::new("s", false, None).clear_session();
    let plain = cleared[0].to_str().unwrap();
    assert!(!plain.contains("Secure") && plain.contains("Max-Age=0"), "{plain}");
}

#[test]
fn finds_cookies_across_headers_and_beside_other_bytes() {
    let jar = CookieJar::new("portcullis_session", false, None);
    let mut headers = HeaderMap::new();
    headers.append(COOKIE, HeaderValue::from_static("a=1; portcullis_session=v1.x"));
    headers.append(COOKIE, HeaderValue::from_static("b=2"));
    assert_eq!(jar.read(&headers, Own::Session), Found::One("v1.x"));
    assert_eq!(jar.read(&headers, Own::Csrf), Found::Absent);
    // A value of the app's that is not UTF-8 hides nothing of ours.
    let mut mixed = HeaderMap::new();
    mixed.insert(
        COOKIE,
        HeaderValue::from_bytes(b"portcullis_session=v1.y; pref=caf\xc3\xa9").unwrap(),
    );
    assert_eq!(jar.read(&mixed, Own::Session), Found::One("v1.y"));
    strip_own(&mut mixed, &jar);
    assert_eq!(mixed[COOKIE].as_bytes(), b"pref=caf\xc3\xa9");
    let mut ours_unreadable = HeaderMap::new();
    ours_unreadable.insert(COOKIE, HeaderValue::from_bytes(b"portcullis_session=v1.\xff").unwrap());
    assert_eq!(jar.read(&ours_unreadable, Own::Session), Found::Conflict);
}

#[test]
fn strips_only_our_cookies() {
    let mut headers = HeaderMap::new();
    headers.append(
        COOKIE,
        HeaderValue::from_static("app=1; portcullis_session=v1.x; portcullis_csrf=n"),
    );
    headers.append(COOKIE, HeaderValue::from_static("theme=dark"));
    strip_own(&mut headers, &jar());
    assert_eq!(headers.get_all(COOKIE).iter().count(), 1);
    assert_eq!(headers[COOKIE], "app=1; theme=dark");

    let mut only_ours = HeaderMap::new();
    only_ours.insert(COOKIE, HeaderValue::from_static("portcullis_session=v1.x"));
    strip_own(&mut only_ours, &jar());
    assert!(only_ours.get(COOKIE).is_none());

    let mut untouched = HeaderMap::new();
    untouched.insert(COOKIE, HeaderValue::from_static("app=1"));
    strip_own(&mut untouched, &jar());
    assert_eq!(untouched[COOKIE], "app=1");
}

#[test]
fn apps_cannot_set_our_cookies() {
    let mut headers = HeaderMap::new();
    headers.append(SET_COOKIE, HeaderValue::from_static("portcullis_session=evil; Path=/"));
    headers.append(SET_COOKIE, HeaderValue::from_static("app=1; Path=/"));
    headers.append(SET_COOKIE, HeaderValue::from_static("=portcullis_session=v1.evil; Path=/"));
    headers.append(SET_COOKIE, HeaderValue::from_static("portcullis_session_v1_evil"));
    headers.append(
        SET_COOKIE,
        HeaderValue::from_bytes(b" portcullis_session=v1.evil; Path=/; X=\xc3\xa9").unwrap(),
    );
    let https = CookieJar::new("portcullis_session", true, None);
    headers.append(SET_COOKIE, HeaderValue::from_static("__Host-portcullis_session=v1.e; Secure"));
    strip_own_set_cookie(&mut headers, &https);
    let left: Vec<_> = headers.get_all(SET_COOKIE).iter().collect();
    assert_eq!(left, [HeaderValue::from_static("app=1; Path=/")]);
}

fn cookies(values: &[&'static str]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for value in values {
        headers.append(COOKIE, HeaderValue::from_static(value));
    }
    headers
}

#[test]
fn host_prefix_where_browsers_allow_it_and_old_names_still_read() {
    let https = CookieJar::new("portcullis_session", true, None);
    assert_eq!(https.session_name(), "__Host-portcullis_session");
    assert_eq!(https.name(Own::Csrf), "__Host-portcullis_csrf");
    let set = https.session("v1.a".into(), std::time::Duration::from_secs(1));
    let set = set.to_str().unwrap();
    assert!(set.starts_with("__Host-portcullis_session=v1.a") && set.contains("Secure"));
    assert!(!set.contains("Domain"), "{set}");
    assert_eq!(https.clear_session().len(), 2, "both names are cleared");
    // A sibling subdomain can share cookies only with Domain, and http has no Secure.
    assert_eq!(jar().session_name(), "portcullis_session");
    assert_eq!(CookieJar::new("s", false, None).session_name(), "s");

    let old = cookies(&["portcullis_session=v1.old"]);
    assert_eq!(https.read(&old, Own::Session), Found::Unprefixed("v1.old"), "transition");
    let both = cookies(&["portcullis_session=v1.old; __Host-portcullis_session=v1.new"]);
    assert_eq!(https.read(&both, Own::Session), Found::One("v1.new"), "prefixed wins");
    let csrf = cookies(&["portcullis_csrf=planted"]);
    assert_eq!(https.read(&csrf, Own::Csrf), Found::Absent, "only the session transitions");
    assert!(https.is_own(b"portcullis_session") && https.is_own(b"__Host-portcullis_csrf"));

    // Unprefixed, only sessions issued before the switch.
    let switched = https.clone().prefixed_since(1_800_000_000_000);
    let before = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, 1_700_000_000, 0));
    let after = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, 1_900_000_000, 0));
    assert!(switched.accepts_unprefixed(Some(before)));
    assert!(!switched.accepts_unprefixed(Some(after)));
    assert!(!switched.accepts_unprefixed(None));
    assert!(!https.accepts_unprefixed(Some(before)), "no switch recorded: none");

    // A session name that has the prefix already: the other cookies get it too.
    let named = CookieJar::new("__Host-sid", true, None);
    assert_eq!(named.session_name(), "__Host-sid");
    assert_eq!(named.name(Own::Csrf), "__Host-portcullis_csrf");
}

#[test]
fn a_cookie_sent_twice_with_different_values_is_a_conflict() {
    let plain = CookieJar::new("portcullis_session", false, None);
    let tossed = cookies(&["portcullis_session=v1.planted", "a=1; portcullis_session=v1.mine"]);
    assert_eq!(plain.read(&tossed, Own::Session), Found::Conflict);
    assert_eq!(plain.read(&tossed, Own::Session).one(), None);
    let repeated = cookies(&["portcullis_session=v1.x; portcullis_session=\"v1.x\""]);
    assert_eq!(plain.read(&repeated, Own::Session), Found::One("v1.x"));
    assert_eq!(plain.read(&cookies(&["a=1"]), Own::Session), Found::Absent);
    // Under the prefix, the unprefixed duplicates do not matter once a prefixed one is sent.
    let https = CookieJar::new("portcullis_session", true, None);
    let mixed = cookies(&[
        "portcullis_session=v1.a; portcullis_session=v1.b; __Host-portcullis_session=v1.c",
    ]);
    assert_eq!(https.read(&mixed, Own::Session), Found::One("v1.c"));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 10_000, failure_persistence: None, ..proptest::prelude::ProptestConfig::default() })]

    /// Any `Cookie` header: an answer, never a panic; a value found is part of the header;
    /// after stripping, none of ours is left.
    #[test]
    fn any_cookie_header_is_read_and_stripped(text in "[ -~]{0,80}") {
        let jar = CookieJar::new("portcullis_session", true, None);
        let Ok(value) = HeaderValue::from_str(&text) else { return Ok(()) };
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, value);
        if let Some(found) = jar.read(&headers, Own::Session).one() {
            proptest::prop_assert!(text.contains(found));
        }
        strip_own(&mut headers, &jar);
        for own in Own::ALL {
            proptest::prop_assert_eq!(jar.read(&headers, own), Found::Absent);
        }
    }
}
