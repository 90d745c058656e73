//! The node's log: plain text (the default) or one JSON object per line (`--log-format json`,
//! for journald, Loki or Elastic), on standard output.
//!
//! Text carries terminal colours only when standard output is a terminal (and `NO_COLOR` is
//! unset), so files and the journal get clean lines. The filter is `RUST_LOG` when set, else
//! dhaf's own crates at `info` and everything else at `warn`; either way the HTTP/2, HTTP and
//! gRPC libraries stay at `warn` unless `RUST_LOG` names them, so `RUST_LOG=debug` shows dhaf's
//! debug lines, not the etcd client's frames.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `message`, `target` and the event's fields.
    Json,
}

/// The filter when `RUST_LOG` is unset.
pub const DEFAULT_FILTER: &str = "warn,dhaf=info,dhaf_core=info,dhaf_providers=info,dhaf_node=info,dhaf_cli=info";

/// Libraries whose debug output is wire traffic, kept at `warn` unless named.
const NOISY: &[&str] = &["h2", "hyper", "hyper_util", "tonic", "tower", "rustls", "reqwest"];

/// The filter directives for `rust_log` (the `RUST_LOG` value, if any).
pub fn directives(rust_log: Option<&str>) -> String {
    let user = rust_log.map(str::trim).filter(|s| !s.is_empty()).unwrap_or(DEFAULT_FILTER);
    let named = |target: &str| {
        user.split(',').any(|d| {
            let t = d.split(['=', '[']).next().unwrap_or("").trim();
            t == target || t.starts_with(&format!("{target}::"))
        })
    };
    let mut all = user.to_string();
    for target in NOISY.iter().filter(|t| !named(t)) {
        all.push_str(&format!(",{target}=warn"));
    }
    all
}

/// Install the global subscriber. A `RUST_LOG` that does not parse is said on standard error,
/// naming it, and the default filter is used.
pub fn init(format: LogFormat) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = match EnvFilter::builder().parse(directives(rust_log.as_deref())) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("RUST_LOG: {e}; logging with the default filter ({DEFAULT_FILTER})");
            EnvFilter::new(directives(None))
        }
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => {
            let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            builder.with_target(false).with_ansi(colour).init();
        }
        LogFormat::Json => {
            builder.json().flatten_event(true).with_current_span(false).with_span_list(false).with_ansi(false).init();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_libraries_stay_quiet_unless_named() {
        assert_eq!(directives(Some("debug")), "debug,h2=warn,hyper=warn,hyper_util=warn,tonic=warn,tower=warn,rustls=warn,reqwest=warn");
        let named = directives(Some("debug,h2=trace"));
        assert!(named.contains("h2=trace") && !named.contains("h2=warn") && named.contains("hyper=warn"), "{named}");
        assert!(directives(None).starts_with(DEFAULT_FILTER));
        assert!(directives(Some("  ")).starts_with(DEFAULT_FILTER));
    }
}
