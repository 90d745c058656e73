//! `dhaf-node`: run one dhaf node from a config file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dhaf_node::logging::LogFormat;

/// dhaf-node: one node of a dhaf cluster (distributed high-availability failover). The nodes
/// health-check every entry point of each service, agree by majority which are healthy, and the
/// elected leader points the public entry at the highest-priority healthy one.
#[derive(Parser)]
#[command(name = "dhaf-node", version)]
struct Args {
    /// The node's config file (YAML).
    #[arg(long, short)]
    config: PathBuf,
    /// Only validate the config (and every provider section), then exit.
    #[arg(long)]
    check: bool,
    /// With --check: also show what reloading this file would change on the node running now
    /// (asked of its REST API; token from $DHAF_API_TOKEN or the file, CA from $DHAF_CA_FILE).
    #[arg(long, requires = "check")]
    diff: bool,
    /// How log lines are written: `text` for people, `json` (one object per line) for log
    /// collectors. The filter is $RUST_LOG (default: dhaf at info, the rest at warn).
    #[arg(long, value_enum, env = "DHAF_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let (shutdown, hangups) = signals();
    dhaf_node::logging::init(args.log_format);
    let prepared = match dhaf_node::prepare(&args.config, &dhaf_providers::registry()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{}: {e}", args.config.display());
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("{}: configuration is valid", args.config.display());
        if args.diff {
            match dhaf_node::diff::against_running(&prepared.config).await {
                Ok(text) => print!("{text}"),
                Err(e) => {
                    eprintln!("--diff: {e}");
                    return ExitCode::from(3);
                }
            }
        }
        return ExitCode::SUCCESS;
    }
    tokio::spawn(reload_on_hangup(hangups, prepared.reloader.clone()));
    match dhaf_node::run(prepared, shutdown, |_| {}).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "node stopped");
            ExitCode::FAILURE
        }
    }
}

/// SIGINT (Ctrl-C) and SIGTERM stop the node gracefully (resign, revoke the lease, exit 0);
/// SIGHUP reloads its config file (systemd's `ExecReload`). SIGPIPE is ignored by the Rust
/// runtime; nothing else is sent by a service manager but SIGKILL, which nothing can handle.
///
/// The handlers are installed at once, not when the futures are first polled (after the
/// providers' init), so no signal finds the default action in place: a SIGHUP during start is
/// kept and reloads once the node runs.
fn signals() -> (impl std::future::Future<Output = ()>, Hangups) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let handler = |kind| signal(kind).expect("signal handler");
        let (mut int, mut term) = (handler(SignalKind::interrupt()), handler(SignalKind::terminate()));
        let hup = handler(SignalKind::hangup());
        let shutdown = async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            tracing::info!("shutdown requested");
        };
        (shutdown, hup)
    }
    #[cfg(not(unix))]
    {
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutdown requested");
        };
        (shutdown, ())
    }
}

#[cfg(unix)]
type Hangups = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangups = ();

/// Reload the config file on every SIGHUP; a refused reload is logged and the node goes on.
async fn reload_on_hangup(mut hangups: Hangups, reloader: std::sync::Arc<dhaf_node::reload::Reloader>) {
    #[cfg(unix)]
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the config");
        let _ = reloader.reload().await;
    }
    #[cfg(not(unix))]
    {
        let _ = (hangups, reloader);
        std::future::pending::<()>().await
    }
}
