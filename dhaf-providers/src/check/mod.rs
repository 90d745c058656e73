//! The built-in health checkers: `web` (HTTP/HTTPS), `tcp` (a TCP connect) and `exec` (a script).
//!
//! Each is built once per service from its `health-checker` section by a factory registered in
//! [`register`]. Building parses every setting with [`dhaf_core::config::Fields`], so a bad
//! section is reported whole, with key paths, before the node starts; building does no I/O
//! beyond looking at the files an `exec` section names.
//!
//! A check never fails: every outcome is a [`dhaf_core::model::Health`], and an unhealthy one
//! carries a reason meant for the person reading the status or a notification ("connection
//! refused", "HTTP 503, expected 2XX", "exit 1: disk full"). Rise/fall hysteresis is the core's
//! job, so the checkers report every single observation as it is.
//!
//! ```
//! use dhaf_core::registry::Registry;
//! let mut registry = Registry::new();
//! dhaf_providers::check::register(&mut registry);
//! assert_eq!(registry.checker_types(), ["exec", "tcp", "web"]);
//! ```

use std::time::Duration;

use dhaf_core::registry::Registry;

#[cfg(feature = "exec")]
pub mod exec;
#[cfg(feature = "tcp")]
pub mod tcp;
#[cfg(feature = "web")]
pub mod web;

/// Register the checkers compiled in (`web`, `tcp` and `exec`).
pub fn register(registry: &mut Registry) {
    #[cfg(feature = "web")]
    registry.checker("web", web::WebChecker::from_config);
    #[cfg(feature = "tcp")]
    registry.checker("tcp", tcp::TcpChecker::from_config);
    #[cfg(feature = "exec")]
    registry.checker("exec", exec::ExecChecker::from_config);
    let _ = registry;
}

/// The range of every checker's `timeout` setting: down to 50 ms, up to the original web
/// checker's 86400 s.
const TIMEOUT_RANGE: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(86400));

/// Default `timeout` of every checker.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Headroom added to a checker's own bound in [`dhaf_core::provider::HealthChecker::timeout`], so
/// the runtime's outer bound only fires when a checker itself failed to stop in time.
const SLACK: Duration = Duration::from_secs(2);

/// "5 s", "1.5 s": a duration as people read it in a reason.
pub(crate) fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{} s", d.as_secs())
    } else if s < 1.0 {
        format!("{} ms", d.as_millis())
    } else {
        format!("{s:.1} s")
    }
}

/// The text of an I/O error without Rust's " (os error 111)" suffix, starting lowercase.
/// Whether an I/O error is this node's own trouble rather than anything about the far end: out
/// of file descriptors (EMFILE, ENFILE), memory (ENOMEM, ENOBUFS) or processes (EAGAIN from
/// fork). A check failing so is no evidence about the entry point (the node abstains).
pub(crate) fn local_trouble(e: &std::io::Error) -> bool {
    // Linux's errno values; other systems classify by kind only.
    const ENOMEM: i32 = 12;
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    const EAGAIN: i32 = 11;
    const ENOBUFS: i32 = 105;
    e.kind() == std::io::ErrorKind::OutOfMemory
        || (cfg!(target_os = "linux") && matches!(e.raw_os_error(), Some(ENOMEM | ENFILE | EMFILE | EAGAIN | ENOBUFS)))
}

pub(crate) fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionRefused => return "connection refused".into(),
        ErrorKind::ConnectionReset => return "connection reset".into(),
        ErrorKind::ConnectionAborted => return "connection aborted".into(),
        ErrorKind::TimedOut => return "timed out".into(),
        ErrorKind::AddrNotAvailable => return "address not available".into(),
        ErrorKind::PermissionDenied => return "permission denied".into(),
        _ => {}
    }
    let text = e.to_string();
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text,
    };
    lowercase_first(text)
}

fn lowercase_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// At most `max` characters of `s`, with "…" when cut.
fn bounded(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(secs(Duration::from_secs(5)), "5 s");
        assert_eq!(secs(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(secs(Duration::from_millis(250)), "250 ms");
    }

    #[test]
    fn io_errors_lose_their_os_code() {
        let e = std::io::Error::from_raw_os_error(111);
        assert_eq!(io_reason(&e), "connection refused");
        let e = std::io::Error::from_raw_os_error(113);
        assert_eq!(io_reason(&e), "no route to host");
    }

    #[test]
    fn long_text_is_cut() {
        assert_eq!(bounded("abcdef", 3), "abc…");
        assert_eq!(bounded("abc", 3), "abc");
    }
}
