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
    match dhaf_node::run(prepared, shutdown(), |_| {}).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "node stopped");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutdown requested");
}
