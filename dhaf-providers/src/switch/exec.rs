//! The `exec` switcher: the operator's own scripts do the switching.
//!
//! ```yaml
//! switcher:
//!   type: exec
//!   init: /etc/dhaf/init.sh        # run once when the node starts
//!   switch: /etc/dhaf/switch.sh    # called as `switch.sh <name> <ip>`
//!   current: /etc/dhaf/current.sh  # optional: prints the current entry point's name
//!   timeout: 10                    # seconds per run (default 10)
//! ```
//!
//! `init` is the original's provider initialisation: it runs once when the node starts, its output
//! is ignored, and a failure stops the node. `switch` gets the entry point's name and IP as
//! arguments. `current`, when given, is how the leader reads the live state back (after every
//! switch and periodically, to repair drift): the first line of its stdout names the entry point
//! the service points at now, or its IP; an empty line or a name dhaf does not know means "none of
//! them". Without `current` the switcher cannot read back: dhaf trusts its own switches, repairs no
//! drift, and status says the live state is unknown. All scripts get `DHAF_SERVICE`, `DHAF_DOMAIN`,
//! and `switch` also gets `DHAF_FENCING_TOKEN` (the leader term, a number) so it can record which
//! term made the change.
//!
//! Paths are absolute or relative to the config file's directory. Scripts get a clean environment
//! (see `dhaf-providers`'s `script` module): `PATH`, `HOME`, `LANG`, the `DHAF_*` variables above and what `env:`
//! names (`env: { ZONE_FILE: /var/dns/zone }`), nothing else of the node's.
//!
//! A non-zero exit or an overrun is a failed switch whose reason is the script's last stderr line;
//! the leader retries it with backoff. Each script runs in its own process group and the whole group
//! is killed on a timeout (or when the caller gives up), so a hung script and whatever it started do
//! not linger.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use async_trait::async_trait;
use dhaf_core::config::{ConfigError, ProviderConfig};
use dhaf_core::model::{EntryPoint, FencingToken};
use dhaf_core::provider::{BuildContext, ProviderError, Switcher};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::script::{command, env_setting, executable, exit_text, GroupGuard, ScriptEnv};

/// Keep at most this much of a script's output: enough for any sane message, bounded for a
/// script that floods its pipes.
const OUTPUT_CAP: usize = 64 * 1024;

/// Printed output is quoted in errors up to this many characters.
const QUOTE_CAP: usize = 80;

/// A switcher that runs the operator's `init`, `switch` and (optionally) `current` scripts.
#[derive(Debug, Clone)]
pub struct ExecSwitcher {
    service: String,
    domain: String,
    entry_points: Vec<EntryPoint>,
    init: PathBuf,
    switch: PathBuf,
    /// `current:`; without it the live state cannot be read back.
    current: Option<PathBuf>,
    timeout: Duration,
    /// `env:`.
    env: ScriptEnv,
}

impl ExecSwitcher {
    /// Build from the service's `switcher` section; checks that the scripts exist and are executable.
    pub fn from_config(section: &ProviderConfig, ctx: &BuildContext) -> Result<Self, ConfigError> {
        let f = section.fields();
        let init = executable(&f, "init", &ctx.base_dir);
        let switch = executable(&f, "switch", &ctx.base_dir);
        let current = f.has("current").then(|| executable(&f, "current", &ctx.base_dir)).flatten();
        let timeout = f.seconds("timeout", 10, 1, 3600);
        let env = env_setting(&f);
        f.finish();
        let svc = ctx.service();
        f.into_result(ExecSwitcher {
            service: svc.name.clone(),
            domain: svc.domain.clone(),
            entry_points: svc.entry_points.clone(),
            init: init.unwrap_or_default(),
            switch: switch.unwrap_or_default(),
            current,
            timeout,
            env,
        })
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![("DHAF_SERVICE", self.service.clone()), ("DHAF_DOMAIN", self.domain.clone())]
    }

    /// Run `script`; `Ok` only for exit status 0.
    async fn run_ok(&self, what: &str, script: &Path, args: &[String], env: &[(&'static str, String)]) -> Result<Output, ProviderError> {
        let mut cmd = command(script, env, &self.env);
        cmd.args(args);
        let out = match run(cmd, self.timeout).await {
            Ok(out) => out,
            Err(RunError::Spawn(e)) => {
                let message = format!("{what} script {}: cannot run it: {e}", script.display());
                // A script gone or not executable stays so until someone fixes it; out of
                // processes or descriptors is this node's passing trouble.
                return Err(match e.kind() {
                    io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => ProviderError::permanent(message),
                    _ => ProviderError::transient(message),
                });
            }
            Err(RunError::TimedOut) => {
                return Err(ProviderError::transient(format!(
                    "{what} script {}: timed out after {} (killed)",
                    script.display(),
                    crate::check::secs(self.timeout)
                )))
            }
        };
        if out.status.success() {
            return Ok(out);
        }
        let why = exit_text(&out.status);
        let line = last_line(&out.stderr);
        let reason = if line.is_empty() { format!("{why} (nothing on stderr)") } else { format!("{why}: {line}") };
        Err(ProviderError::transient(format!("{what} script {}: {reason}", script.display())))
    }

    /// Map the first line `current` printed to an entry point.
    fn parse_current(&self, script: &Path, stdout: &[u8]) -> Result<Option<String>, ProviderError> {
        let first = stdout.split(|b| *b == b'\n').next().unwrap_or_default();
        let garbage = || {
            let known: Vec<&str> = self.entry_points.iter().map(|ep| ep.name.as_str()).collect();
            ProviderError::permanent(format!(
                "current script {} printed {}, expected the name of the current entry point (one of: {}) or an empty line",
                script.display(),
                quote(first),
                known.join(", ")
            ))
        };
        let Ok(line) = std::str::from_utf8(first) else { return Err(garbage()) };
        let word = line.trim();
        if word.is_empty() {
            return Ok(None);
        }
        if let Some(ep) = self.entry_points.iter().find(|ep| ep.name == word) {
            return Ok(Some(ep.name.clone()));
        }
        // An address is accepted too: scripts that read DNS know the IP, not dhaf's name for it.
        if let Ok(ip) = word.parse::<IpAddr>() {
            return Ok(self.entry_points.iter().find(|ep| ep.ip == ip).map(|ep| ep.name.clone()));
        }
        let name_like = word.len() <= 64 && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if name_like {
            tracing::debug!(service = %self.service, printed = word, "current script names no configured entry point");
            Ok(None)
        } else {
            Err(garbage())
        }
    }
}

#[async_trait]
impl Switcher for ExecSwitcher {
    async fn init(&self) -> Result<(), ProviderError> {
        // A failing start is for someone to fix, not to retry: the node stops with the reason.
        let permanent = |e: ProviderError| ProviderError::permanent(e.to_string());
        self.run_ok("init", &self.init, &[], &self.env()).await.map_err(permanent)?;
        match &self.current {
            Some(_) => {
                let current = self.current().await.map_err(permanent)?;
                tracing::info!(service = %self.service, current = current.as_deref().unwrap_or("(none)"), "exec switcher ready");
            }
            None => tracing::info!(service = %self.service, "exec switcher ready (no `current` script: the live state is not read back)"),
        }
        Ok(())
    }

    fn reads_back(&self) -> bool {
        self.current.is_some()
    }

    async fn current(&self) -> Result<Option<String>, ProviderError> {
        let Some(script) = &self.current else {
            return Err(ProviderError::permanent("cannot read back: the exec switcher has no `current` script"));
        };
        let out = self.run_ok("current", script, &[], &self.env()).await?;
        self.parse_current(script, &out.stdout)
    }

    async fn switch(&self, to: &EntryPoint, token: FencingToken) -> Result<(), ProviderError> {
        let mut env = self.env();
        env.push(("DHAF_FENCING_TOKEN", token.0.to_string()));
        let out = self.run_ok("switch", &self.switch, &[to.name.clone(), to.ip.to_string()], &env).await?;
        tracing::debug!(service = %self.service, to = %to.name, stdout = %last_line(&out.stdout), "switch script succeeded");
        Ok(())
    }
}

/// The last non-empty line, lossily decoded and shortened: the part of stderr that says why.
fn last_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or_default();
    truncate(line, 200)
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Quote what a script printed so binary and control characters stay readable in one line.
fn quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let shown = truncate(&text, QUOTE_CAP);
    format!("\"{}\"", shown.escape_debug())
}

/// What a finished script left behind.
struct Output {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

enum RunError {
    Spawn(io::Error),
    TimedOut,
}

async fn run(mut cmd: tokio::process::Command, timeout: Duration) -> Result<Output, RunError> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true).process_group(0);
    let mut child = cmd.spawn().map_err(RunError::Spawn)?;
    let mut guard = GroupGuard::new(child.id());
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    // Reading to EOF as well as waiting: a script's children that keep the pipes open count as the
    // script still running.
    let work = async { tokio::join!(read_capped(stdout), read_capped(stderr), child.wait()) };
    match tokio::time::timeout(timeout, work).await {
        Ok((stdout, stderr, status)) => {
            guard.disarm();
            Ok(Output { status: status.map_err(RunError::Spawn)?, stdout, stderr })
        }
        Err(_) => {
            guard.kill();
            let _ = child.kill().await;
            Err(RunError::TimedOut)
        }
    }
}

async fn read_capped(mut r: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = OUTPUT_CAP.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn switcher() -> ExecSwitcher {
        ExecSwitcher {
            service: "main".into(),
            domain: "foo.com".into(),
            entry_points: vec![
                EntryPoint { name: "ep-1".into(), ip: "10.0.0.1".parse().unwrap() },
                EntryPoint { name: "ep-2".into(), ip: "10.0.0.2".parse().unwrap() },
            ],
            init: "/x/init".into(),
            switch: "/x/switch".into(),
            current: Some("/x/current".into()),
            timeout: Duration::from_secs(1),
            env: ScriptEnv::default(),
        }
    }

    #[test]
    fn first_line_names_the_entry_point() {
        let s = switcher();
        let table: &[(&[u8], Option<&str>)] = &[
            (b"ep-2\n", Some("ep-2")),
            (b"  ep-1  \r\nignored second line\n", Some("ep-1")),
            (b"10.0.0.2\n", Some("ep-2")),
            (b"", None),
            (b"\nep-1\n", None),
            (b"ep-9\n", None),
            (b"10.9.9.9", None),
        ];
        for (printed, want) in table {
            assert_eq!(
                s.parse_current(Path::new("/x/current"), printed).unwrap().as_deref(),
                *want,
                "{:?}",
                String::from_utf8_lossy(printed)
            );
        }
    }

    #[test]
    fn garbage_is_an_error_quoting_it() {
        let s = switcher();
        let e = s.parse_current(Path::new("/x/current"), b"the current one is ep-1\n").unwrap_err().to_string();
        assert!(e.contains("printed \"the current one is ep-1\""), "{e}");
        assert!(e.contains("one of: ep-1, ep-2"), "{e}");
        let e = s.parse_current(Path::new("/x/current"), b"\x00\xff\xfe binary").unwrap_err().to_string();
        assert!(e.contains("\\0"), "{e}");
        let long = "x".repeat(500) + " y";
        let e = s.parse_current(Path::new("/x/current"), long.as_bytes()).unwrap_err().to_string();
        assert!(e.len() < 300 && e.contains('…'), "{e}");
    }
}
