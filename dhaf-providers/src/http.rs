//! What the HTTP-speaking providers (cloudflare, route53, webhook) share.

use std::time::Duration;

use dhaf_core::config::Fields;

/// An HTTP client whose requests (and connects) end after `timeout`; a client that cannot be
/// built is a problem of the section `f`.
pub(crate) fn client(f: &Fields, timeout: Duration) -> reqwest::Client {
    match reqwest::Client::builder().timeout(timeout).connect_timeout(timeout).build() {
        Ok(h) => h,
        Err(e) => {
            f.problem(f.path(), format!("cannot set up an HTTP client: {e}"));
            reqwest::Client::new()
        }
    }
}

/// An error with every cause behind it, `outer: inner: …`, on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(&format!(": {s}"));
        source = s.source();
    }
    out
}
