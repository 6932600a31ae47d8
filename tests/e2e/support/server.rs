//! `Server`: a running Portcullis that the request helpers talk to, whether the in-process
//! [`TestApp`] or the real binary ([`Binary`]).

use super::TestApp;
use super::binary::Binary;

/// A running Portcullis, named by the URL of a path on its HTTP listener.
pub trait Server {
    /// `http://127.0.0.1:port` + `path`.
    fn url(&self, path: &str) -> String;
}

impl Server for TestApp {
    fn url(&self, path: &str) -> String {
        Self::url(self, path)
    }
}

impl Server for Binary {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}
