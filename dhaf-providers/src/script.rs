//! Operators' scripts, shared by the `exec` health checker and the `exec` switcher: checking at
//! start that a script exists and may run, killing a script's whole process group, and saying how
//! a script ended.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use dhaf_core::config::Fields;

use crate::check::io_reason;

/// The required executable at `key`, checked now so a typo stops the node at start, not at the
/// first check or switch.
pub(crate) fn executable(f: &Fields, key: &str) -> Option<PathBuf> {
    let path = PathBuf::from(f.required_string(key)?);
    match executable_problem(&path) {
        None => Some(path),
        Some(problem) => {
            f.problem(f.key(key), problem);
            None
        }
    }
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
