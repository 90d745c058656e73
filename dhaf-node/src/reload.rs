//! Reloading the node's config file without a restart: on SIGHUP, `dhaf-cli reload` or
//! `POST /api/v1/reload`.
//!
//! The file is read and validated in full first (every problem named by key path), the providers
//! are built from it, and only then is it handed to the running node, which applies it in place
//! or refuses it (a setting only a restart can change). Whatever fails, the node goes on with the
//! config it had; the outcome is logged, kept for the metrics and answered to the caller.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use dhaf_core::config::{Config, ConfigError};
use dhaf_core::dcs::Dcs;
use dhaf_core::registry::Registry;
use dhaf_core::runtime::{NodeHandle, ReloadReport};
use serde::Serialize;

use crate::tls::ApiTls;

/// The last reload's outcome, for metrics and status.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReloadState {
    /// Whether the last reload was applied (true before any).
    pub last_successful: bool,
    /// When the config in force was loaded (start or last good reload), Unix seconds.
    pub last_success_at: f64,
    /// Why the last reload was refused, if it was.
    pub last_error: Option<String>,
}

/// Reloads one node's config file.
pub struct Reloader {
    path: PathBuf,
    registry: Registry,
    dcs: Arc<dyn Dcs>,
    handle: NodeHandle,
    tls: Option<Arc<ApiTls>>,
    state: Mutex<ReloadState>,
    // One reload at a time: a second waits for the first.
    running: tokio::sync::Mutex<()>,
}

impl Reloader {
    /// A reloader of `path` for the node behind `handle`, building providers from `registry`.
    pub fn new(path: PathBuf, registry: Registry, dcs: Arc<dyn Dcs>, handle: NodeHandle, tls: Option<Arc<ApiTls>>) -> Self {
        let state = ReloadState { last_successful: true, last_success_at: unix_now(), last_error: None };
        Reloader { path, registry, dcs, handle, tls, state: Mutex::new(state), running: tokio::sync::Mutex::new(()) }
    }

    /// The last reload's outcome.
    pub fn state(&self) -> ReloadState {
        self.state.lock().unwrap().clone()
    }

    /// Re-read the file and apply it. `Err` says why it was refused; the old config goes on.
    pub async fn reload(&self) -> Result<ReloadReport, String> {
        let _one = self.running.lock().await;
        tracing::info!(file = %self.path.display(), "reloading the config");
        let outcome = self.try_reload().await;
        let mut state = self.state.lock().unwrap();
        match &outcome {
            Ok(report) => {
                tracing::info!(%report, "config reload applied");
                *state = ReloadState { last_successful: true, last_success_at: unix_now(), last_error: None };
            }
            Err(e) => {
                tracing::error!(error = %e, "config reload refused; the node goes on with the config it had");
                state.last_successful = false;
                state.last_error = Some(e.clone());
            }
        }
        outcome
    }

    async fn try_reload(&self) -> Result<ReloadReport, String> {
        // Every problem, on one line: it goes to the log and into one API answer.
        let invalid = |e: ConfigError| {
            let problems: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
            format!("{}: invalid configuration: {}", self.path.display(), problems.join("; "))
        };
        let config = Config::load(&self.path).map_err(invalid)?;
        let providers = self.registry.build(&config, self.dcs.clone()).map_err(invalid)?;
        let report = self.handle.reload(config, providers).await.map_err(|e| e.to_string())?;
        if let Some(tls) = &self.tls {
            if tls.reload_if_changed() {
                tracing::info!("rest api: TLS certificate reloaded");
            }
        }
        Ok(report)
    }
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}
