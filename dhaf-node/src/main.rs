//! `dhaf-node`: run one dhaf node from a config file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Distributed high-availability failover: one node of a dhaf cluster.
#[derive(Parser)]
#[command(name = "dhaf-node", version, about)]
struct Args {
    /// The node's config file (YAML).
    #[arg(long, short)]
    config: PathBuf,
    /// Only validate the config (and every provider section), then exit.
    #[arg(long)]
    check: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let shutdown = shutdown();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_target(false)
        .init();
    let prepared = match dhaf_node::prepare(&args.config, &dhaf_providers::registry()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{}: {e}", args.config.display());
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("{}: configuration is valid", args.config.display());
        return ExitCode::SUCCESS;
    }
    match dhaf_node::run(prepared, shutdown, |_| {}).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "node stopped");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C (SIGINT) or SIGTERM. SIGHUP, whose default action would kill the node without
/// resigning or revoking its lease, is answered with a warning instead.
///
/// The handlers are installed at once, not when the future is first polled (after the
/// providers' init), so no signal finds the default action in place.
fn shutdown() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        let handler = |kind| signal(kind).expect("signal handler");
        (handler(SignalKind::interrupt()), handler(SignalKind::terminate()), handler(SignalKind::hangup()))
    };
    async move {
        #[cfg(unix)]
        {
            let (mut int, mut term, mut hup) = signals;
            loop {
                tokio::select! {
                    _ = int.recv() => break,
                    _ = term.recv() => break,
                    _ = hup.recv() => {
                        tracing::warn!("configuration reload is not supported yet; restart the node to apply changes");
                    }
                }
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested");
    }
}
