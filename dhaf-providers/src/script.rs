//! Operators' scripts, shared by the `exec` health checker and the `exec` switcher: where a script
//! is, checking at start that it exists and may run, the environment it gets, killing its whole
//! process group, and saying how it ended.
//!
//! A script path is absolute, or relative to the config file's directory; it is resolved once, when
//! the provider is built, so what `dhaf-node --check` validated is exactly what runs (never a
//! lookup through `$PATH`). A script's environment is clean: `PATH`, `HOME` and `LANG` from the
//! node, the documented `DHAF_*` variables and what the section's `env:` names, nothing else, so
//! the node's secrets (`CF_TOKEN`, `ETCD_PASSWORD`, …) stay out of operators' scripts.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use dhaf_core::config::Fields;

use crate::check::io_reason;

/// Passed on from the node's own environment: what a script needs to find programs and behave.
const INHERITED: [&str; 3] = ["PATH", "HOME", "LANG"];

/// `PATH` for scripts when the node has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The required executable at `key`, resolved against `base_dir` and checked now, so a typo stops
/// the node at start, not at the first check or switch.
pub(crate) fn executable(f: &Fields, key: &str, base_dir: &Path) -> Option<PathBuf> {
    let written = PathBuf::from(f.required_string(key)?);
    let path = base_dir.join(&written);
    match executable_problem(&path) {
        None => Some(path),
        Some(problem) if written.is_relative() => {
            f.problem(f.key(key), format!("{problem} (relative to the config file's directory {})", base_dir.display()));
            None
        }
        Some(problem) => {
            f.problem(f.key(key), problem);
            None
        }
    }
}

/// The variables of a section's `env:`. Values may come from secrets (`${VAR}`), so Debug output
/// shows only the names.
#[derive(Clone, Default)]
pub(crate) struct ScriptEnv(Vec<(String, String)>);

impl fmt::Debug for ScriptEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(name, _)| name)).finish()
    }
}

/// The section's optional `env:`: variables the operator hands to its scripts (values may use
/// `${VAR}` like any config value).
pub(crate) fn env_setting(f: &Fields) -> ScriptEnv {
    let vars = f.string_map("env");
    for (name, _) in &vars {
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            f.problem(
                format!("{}.{name}", f.key("env")),
                "not a valid environment variable name (A-Z a-z 0-9 _, not starting with a digit)",
            );
        }
    }
    ScriptEnv(vars)
}

/// A command for `program` with a clean environment: [`INHERITED`] from the node, then `dhaf`'s
/// own variables, then the operator's `env:` (which may override both).
pub(crate) fn command(program: &Path, dhaf: &[(&str, String)], configured: &ScriptEnv) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.env_clear();
    for name in INHERITED {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
    if std::env::var_os("PATH").is_none() {
        cmd.env("PATH", DEFAULT_PATH);
    }
    cmd.envs(dhaf.iter().map(|(k, v)| (*k, v.as_str())));
    cmd.envs(configured.0.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    cmd
}

fn executable_problem(path: &Path) -> Option<String> {
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(format!("no such file: {shown}")),
        Err(e) => return Some(format!("cannot read {shown}: {}", io_reason(&e))),
    };
    if meta.is_dir() {
        return Some(format!("{shown} is a directory, not an executable"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o111 == 0 {
            return Some(format!("{shown} is not executable (chmod +x it)"));
        }
    }
    None
}

/// How a script that did not succeed ended: `exit N`, or `killed by signal N`.
pub(crate) fn exit_text(status: &ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!("killed by signal {sig}");
        }
    }
    format!("{status}")
}

/// Kills a script's process group when dropped (a timeout, or a caller that gave up), unless
/// disarmed once the script was reaped: from then on the group id may be reused.
pub(crate) struct GroupGuard {
    #[cfg_attr(not(unix), allow(dead_code))]
    pgid: Option<u32>,
}

impl GroupGuard {
    /// A guard over the group led by the process `pgid` (the script started with
    /// `process_group(0)`).
    pub(crate) fn new(pgid: Option<u32>) -> Self {
        GroupGuard { pgid }
    }

    /// The script was reaped: never signal its group id again.
    pub(crate) fn disarm(&mut self) {
        self.pgid = None;
    }

    /// Kill the whole group now (once).
    pub(crate) fn kill(&mut self) {
        #[cfg(unix)]
        if let Some(pid) = self.pgid.take().and_then(|p| i32::try_from(p).ok()).and_then(rustix::process::Pid::from_raw) {
            // ESRCH (already gone) is the common, harmless case.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}
