//! The `exec` health checker: an entry point is healthy when a script says so (exit code 0).
//!
//! Settings:
//!
//! | key | | default |
//! |---|---|---|
//! | `init` | executable run once when the node starts, without arguments; non-zero exit stops the node | required |
//! | `check` | executable run per check with arguments `[entry point name, entry point ip]` | required |
//! | `timeout` | how long a script may run before it is killed, 50ms–24h (`500ms`, `5s`; a bare number is seconds) | `5` |
//! | `env` | variables for the scripts, `NAME: value` | none |
//!
//! Paths are absolute or relative to the config file's directory. Scripts get a clean environment
//! (see `dhaf-providers`'s `script` module): `PATH`, `HOME`, `LANG`, `DHAF_SERVICE`, `DHAF_DOMAIN` and `env:`.
//!
//! A script runs in its own process group, so a hung script is killed together with whatever it
//! started (a `sleep`, a `curl`), also when the runtime abandons the check. The last non-empty line
//! of its stderr becomes the reason: `exit 1: disk full`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dhaf_core::config::{ConfigError, ProviderConfig};
use dhaf_core::model::{EntryPoint, Health};
use dhaf_core::provider::{BuildContext, HealthChecker, ProviderError};
use tokio::io::AsyncReadExt;

use super::{bounded, io_reason, local_trouble, secs, DEFAULT_TIMEOUT, SLACK, TIMEOUT_RANGE};
use crate::script::{command, env_setting, executable, exit_text, GroupGuard, ScriptEnv};

/// How much of a script's stderr is kept (its tail): enough for the last line of any sane script.
const STDERR_TAIL: usize = 16 * 1024;

/// The longest stderr line quoted in a reason.
const REASON_LINE: usize = 200;

/// How long to wait for the rest of stderr after the script exited; a background process it left
/// behind may hold the pipe open forever.
const STDERR_GRACE: Duration = Duration::from_millis(500);

/// Checks entry points by running a script.
#[derive(Debug, Clone)]
pub struct ExecChecker {
    init: PathBuf,
    check: PathBuf,
    timeout: Duration,
    /// `DHAF_SERVICE` and `DHAF_DOMAIN`.
    dhaf_env: Vec<(&'static str, String)>,
    /// `env:`.
    env: ScriptEnv,
}

impl ExecChecker {
    /// A checker running `check` per entry point (after `init` once), each bounded by `timeout`.
    pub fn new(init: impl Into<PathBuf>, check: impl Into<PathBuf>, timeout: Duration) -> Self {
        ExecChecker { init: init.into(), check: check.into(), timeout, dhaf_env: Vec::new(), env: ScriptEnv::default() }
    }
}

impl ExecChecker {
    /// Build an [`ExecChecker`] from a `health-checker` section of type `exec`.
    pub fn from_config(section: &ProviderConfig, ctx: &BuildContext) -> Result<ExecChecker, ConfigError> {
        let f = section.fields();
        let init = executable(&f, "init", &ctx.base_dir);
        let check = executable(&f, "check", &ctx.base_dir);
        let timeout = f.duration("timeout", DEFAULT_TIMEOUT, TIMEOUT_RANGE.0, TIMEOUT_RANGE.1);
        let env = env_setting(&f);
        f.finish();
        let svc = ctx.service();
        let mut checker = ExecChecker::new(init.unwrap_or_default(), check.unwrap_or_default(), timeout);
        checker.dhaf_env = vec![("DHAF_SERVICE", svc.name.clone()), ("DHAF_DOMAIN", svc.domain.clone())];
        checker.env = env;
        f.into_result(checker)
    }
}

#[async_trait]
impl HealthChecker for ExecChecker {
    async fn init(&self) -> Result<(), ProviderError> {
        run(command(&self.init, &self.dhaf_env, &self.env), &self.init, self.timeout)
            .await
            .map_err(|f| ProviderError::permanent(format!("init script {}: {}", self.init.display(), f.reason())))
    }

    async fn check(&self, entry_point: &EntryPoint) -> Health {
        let ip = entry_point.ip.to_string();
        let mut cmd = command(&self.check, &self.dhaf_env, &self.env);
        cmd.args([&entry_point.name, &ip]);
        match run(cmd, &self.check, self.timeout).await {
            Ok(()) => Health::Healthy,
            // This node could not start the script (no descriptors, processes or memory left):
            // that says nothing about the entry point.
            Err(ScriptFailure::CannotStart(reason)) => Health::abstain(reason),
            Err(ScriptFailure::Failed(reason)) => Health::unhealthy(reason),
        }
    }

    fn timeout(&self) -> Duration {
        self.timeout + SLACK
    }
}

/// Why a script did not succeed.
#[derive(Debug)]
pub(crate) enum ScriptFailure {
    /// It could not be started on this node for a reason of the node's own.
    CannotStart(String),
    /// It ran and failed, or could not be run as configured, or timed out.
    Failed(String),
}

impl ScriptFailure {
    /// The reason, for people.
    pub(crate) fn reason(&self) -> &str {
        match self {
            ScriptFailure::CannotStart(r) | ScriptFailure::Failed(r) => r,
        }
    }
}

/// Run `cmd` (the script `program`); `Err` says why it did not succeed.
pub(crate) async fn run(mut cmd: tokio::process::Command, program: &Path, timeout: Duration) -> Result<(), ScriptFailure> {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
    #[cfg(unix)]
    cmd.process_group(0);
    let mut child = cmd.spawn().map_err(|e| {
        let reason = format!("cannot run {}: {}", program.display(), io_reason(&e));
        if local_trouble(&e) {
            ScriptFailure::CannotStart(reason)
        } else {
            ScriptFailure::Failed(reason)
        }
    })?;
    let mut group = GroupGuard::new(child.id());

    let tail = Arc::new(Mutex::new(Vec::new()));
    let mut reader = tokio::spawn(read_tail(child.stderr.take().expect("stderr is piped"), tail.clone()));

    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Err(ScriptFailure::Failed(format!("cannot wait for {}: {}", program.display(), io_reason(&e)))),
        Err(_) => {
            drop(group); // kills the whole group while the leader is not yet reaped
            let _ = child.kill().await;
            reader.abort();
            return Err(ScriptFailure::Failed(format!("timed out after {} (killed)", secs(timeout))));
        }
    };
    // Reaped: the group id may be reused from now on, so it must not be signalled any more.
    group.disarm();
    let _ = tokio::time::timeout(STDERR_GRACE, &mut reader).await;
    reader.abort();
    if status.success() {
        return Ok(());
    }
    let stderr = tail.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let line = last_line(&stderr);
    let what = exit_text(&status);
    Err(ScriptFailure::Failed(match line {
        Some(line) => format!("{what}: {line}"),
        None => what,
    }))
}

async fn read_tail(mut stderr: tokio::process::ChildStderr, tail: Arc<Mutex<Vec<u8>>>) {
    let mut chunk = [0u8; 4096];
    loop {
        match stderr.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                t.extend_from_slice(&chunk[..n]);
                if t.len() > STDERR_TAIL {
                    let cut = t.len() - STDERR_TAIL;
                    t.drain(..cut);
                }
            }
        }
    }
}

/// The last non-empty line of `stderr`, trimmed and bounded.
fn last_line(stderr: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stderr);
    text.lines().rev().map(str::trim).find(|l| !l.is_empty()).map(|l| bounded(l, REASON_LINE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_non_empty_line_is_the_reason() {
        assert_eq!(last_line(b"starting\n  disk full  \n\n \n").as_deref(), Some("disk full"));
        assert_eq!(last_line(b"\n\n"), None);
        assert_eq!(last_line(&[b'x'; 500]).unwrap().chars().count(), REASON_LINE + 1);
    }
}
