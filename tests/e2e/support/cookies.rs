//! Cookies read off an answer, for clients that send the `Cookie` header by hand.

use reqwest::Response;

/// The first cookie `response` sets, as `name=value` (its attributes cut off).
pub fn cookie_pair(response: &Response) -> String {
    let set_cookie = response.headers()["set-cookie"].to_str().unwrap();
    set_cookie.split(';').next().unwrap().to_owned()
}
