//! The `exec` switcher against real scripts: ones that succeed, fail, hang and print garbage.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dhaf_core::config::ConfigError;
use dhaf_core::model::FencingToken;
use dhaf_core::provider::{ProviderError, Switcher};

/// Every test gets its own directory with its scripts and the state they keep.
struct Scripts {
    dir: tempfile::TempDir,
}

impl Scripts {
    fn new() -> Self {
        Scripts { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Write an executable shell script; `$DIR` in the body is this test's directory.
    fn script(&self, name: &str, body: &str) -> PathBuf {
        script_support::script(self.dir.path(), name, &format!("DIR='{}'\n{body}", self.dir.path().display()))
    }

    /// Scripts that keep the "live" entry point in a file: `switch` writes it, `current` prints
    /// it, and `init` (as the original's: it prints what it likes) counts its runs.
    fn stateful(&self) -> Trio {
        let init = self.script("init.sh", r#"echo "initialising $DHAF_SERVICE"; echo run >> "$DIR/init-runs""#);
        let current = self.script("current.sh", r#"cat "$DIR/current" 2>/dev/null; exit 0"#);
        let switch = self.script(
            "switch.sh",
            r#"echo "$1 $2 token=$DHAF_FENCING_TOKEN service=$DHAF_SERVICE domain=$DHAF_DOMAIN args=$#" >> "$DIR/calls"
echo "$1" > "$DIR/current""#,
        );
        Trio { init, switch, current }
    }

    fn init_runs(&self) -> usize {
        std::fs::read_to_string(self.path("init-runs")).map_or(0, |t| t.lines().count())
    }
}

struct Trio {
    init: PathBuf,
    switch: PathBuf,
    current: PathBuf,
}

#[path = "support/common.rs"]
mod common;
#[path = "support/script.rs"]
mod script_support;
#[path = "support/switcher.rs"]
mod switcher_support;

use common::ep;

fn config() -> String {
    switcher_support::config("foo.com", &[("ep-1", "10.0.0.1"), ("ep-2", "2001:db8::2")], "exec")
}

fn build_with(settings: &str) -> Result<Arc<dyn Switcher>, ConfigError> {
    switcher_support::build(&format!("{}{settings}", config()))
}

/// A switcher with `init` and `switch` only, as the original's.
fn build(init: &Path, switch: &Path, timeout: u64) -> Arc<dyn Switcher> {
    let settings = format!("      init: '{}'\n      switch: '{}'\n      timeout: {timeout}\n", init.display(), switch.display());
    build_with(&settings).expect("valid exec settings")
}

/// A switcher that reads back with `current`.
fn build_reading(init: &Path, switch: &Path, current: &Path, timeout: u64) -> Arc<dyn Switcher> {
    let settings = format!(
        "      init: '{}'\n      switch: '{}'\n      current: '{}'\n      timeout: {timeout}\n",
        init.display(),
        switch.display(),
        current.display()
    );
    build_with(&settings).expect("valid exec settings")
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet, which holds nothing).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(") ").next().is_some_and(|rest| rest.starts_with('Z')),
    }
}

async fn wait_gone(pid: u32) {
    let start = Instant::now();
    while !gone(pid) {
        assert!(start.elapsed() < Duration::from_secs(10), "process {pid} still runs after the script was given up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn read_pid(path: &Path) -> u32 {
    std::fs::read_to_string(path).unwrap().trim().parse().unwrap()
}

#[tokio::test]
async fn switch_passes_name_ip_token_and_service_and_current_reads_it_back() {
    let s = Scripts::new();
    let t = s.stateful();
    let sw = build_reading(&t.init, &t.switch, &t.current, 10);
    assert!(sw.reads_back());

    sw.init().await.expect("init succeeds with no state yet");
    assert_eq!(sw.current().await.unwrap(), None, "nothing printed: no current entry point");

    sw.switch(&ep("ep-2", "2001:db8::2"), FencingToken(42)).await.unwrap();
    assert_eq!(sw.current().await.unwrap().as_deref(), Some("ep-2"));
    sw.switch(&ep("ep-1", "10.0.0.1"), FencingToken(43)).await.unwrap();
    assert_eq!(sw.current().await.unwrap().as_deref(), Some("ep-1"));

    let calls = std::fs::read_to_string(s.path("calls")).unwrap();
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        ["ep-2 2001:db8::2 token=42 service=web domain=foo.com args=2", "ep-1 10.0.0.1 token=43 service=web domain=foo.com args=2",]
    );
    assert_eq!(s.init_runs(), 1, "init is the provider's initialisation: it runs once, at start, and never to read back");
}

#[tokio::test]
async fn the_originals_init_and_switch_work_as_its_readme_defines_them() {
    let s = Scripts::new();
    let t = s.stateful();
    // The original's pair: `init` prints whatever it likes, and there is no `current`.
    let sw = build(&t.init, &t.switch, 10);
    sw.init().await.expect("an init that prints a greeting starts fine");
    assert!(!sw.reads_back(), "without `current` the live state cannot be read back");
    let err = sw.current().await.unwrap_err();
    assert!(matches!(err, ProviderError::Permanent(_)), "{err:?}");
    assert!(err.to_string().contains("cannot read back") && err.to_string().contains("`current`"), "{err}");

    sw.switch(&ep("ep-2", "2001:db8::2"), FencingToken(7)).await.unwrap();
    sw.switch(&ep("ep-1", "10.0.0.1"), FencingToken(7)).await.unwrap();
    assert_eq!(std::fs::read_to_string(s.path("calls")).unwrap().lines().count(), 2);
    assert_eq!(s.init_runs(), 1, "switching never runs init again");
}

#[tokio::test]
async fn a_current_script_that_fails_at_start_stops_the_node() {
    let s = Scripts::new();
    let t = s.stateful();
    let broken = s.script("current.sh", "echo 'no access to the balancer' >&2; exit 4");
    let err = build_reading(&t.init, &t.switch, &broken, 10).init().await.unwrap_err();
    assert!(matches!(err, ProviderError::Permanent(_)), "{err:?}");
    assert!(err.to_string().contains("current script") && err.to_string().contains("no access to the balancer"), "{err}");
}

#[tokio::test]
async fn an_unknown_name_means_no_current_entry_point() {
    let s = Scripts::new();
    let init = s.script("init.sh", "exit 0");
    let current = s.script("current.sh", "echo ep-9");
    let switch = s.script("switch.sh", "exit 0");
    let sw = build_reading(&init, &switch, &current, 10);
    sw.init().await.unwrap();
    assert_eq!(sw.current().await.unwrap(), None);
}

#[tokio::test]
async fn a_failing_switch_reports_its_exit_code_and_stderr() {
    let s = Scripts::new();
    let init = s.script("init.sh", "echo ep-1");
    let switch = s.script("switch.sh", "echo 'calling the load balancer' >&2\necho 'no route to host' >&2\nexit 3");
    let sw = build(&init, &switch, 10);
    let err = sw.switch(&ep("ep-2", "2001:db8::2"), FencingToken(1)).await.unwrap_err();
    assert!(matches!(err, ProviderError::Transient { .. }), "a failed switch is retried: {err:?}");
    let text = err.to_string();
    assert!(text.contains("exit 3: no route to host"), "{text}");
    assert!(text.contains("switch.sh"), "the message names the script: {text}");

    let silent = s.script("silent.sh", "exit 7");
    let sw = build(&init, &silent, 10);
    let text = sw.switch(&ep("ep-2", "2001:db8::2"), FencingToken(1)).await.unwrap_err().to_string();
    assert!(text.contains("exit 7 (nothing on stderr)"), "{text}");
}

#[tokio::test]
async fn a_hung_switch_is_killed_at_the_timeout_with_its_children() {
    let s = Scripts::new();
    let init = s.script("init.sh", "echo ep-1");
    // The script's own child keeps the pipes open: killing only the shell would not end the call.
    let switch = s.script("switch.sh", r#"echo $$ > "$DIR/shell.pid"; sleep 300 & echo $! > "$DIR/child.pid"; wait"#);
    let sw = build(&init, &switch, 1);
    let start = Instant::now();
    let err = sw.switch(&ep("ep-2", "2001:db8::2"), FencingToken(1)).await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(8), "the call must end near its 1 s timeout, took {:?}", start.elapsed());
    assert!(matches!(err, ProviderError::Transient { .. }), "{err:?}");
    assert!(err.to_string().contains("timed out after 1 s"), "{err}");
    wait_gone(read_pid(&s.path("shell.pid"))).await;
    wait_gone(read_pid(&s.path("child.pid"))).await;
}

#[tokio::test]
async fn a_switch_given_up_by_the_caller_is_killed_too() {
    let s = Scripts::new();
    let init = s.script("init.sh", "echo ep-1");
    let switch = s.script("switch.sh", r#"sleep 300 & echo $! > "$DIR/child.pid"; wait"#);
    let sw = build(&init, &switch, 60);
    let to = ep("ep-2", "2001:db8::2");
    let call = sw.switch(&to, FencingToken(1));
    // The leader bounds every switch by its lease; dropping the call must not leave the script behind.
    assert!(tokio::time::timeout(Duration::from_millis(500), call).await.is_err());
    let pid_file = s.path("child.pid");
    let start = Instant::now();
    while !pid_file.exists() {
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_gone(read_pid(&pid_file)).await;
}

#[tokio::test]
async fn a_hung_init_fails_start() {
    let s = Scripts::new();
    let init = s.script("init.sh", "exec sleep 300");
    let switch = s.script("switch.sh", "exit 0");
    let sw = build(&init, &switch, 1);
    let err = sw.init().await.unwrap_err().to_string();
    assert!(err.contains("init script") && err.contains("timed out after 1 s"), "{err}");
}

#[tokio::test]
async fn a_failing_init_fails_start() {
    let s = Scripts::new();
    let init = s.script("init.sh", "echo 'cannot reach the balancer API' >&2; exit 2");
    let switch = s.script("switch.sh", "exit 0");
    let sw = build(&init, &switch, 10);
    let err = sw.init().await.unwrap_err().to_string();
    assert!(err.contains("exit 2: cannot reach the balancer API"), "{err}");
}

#[tokio::test]
async fn garbage_from_current_is_a_clear_error_quoting_it() {
    let s = Scripts::new();
    let switch = s.script("switch.sh", "exit 0");
    let init = s.script("init.sh", "exit 0");

    let current = s.script("words.sh", "echo 'current entry point is ep-1'");
    let err = build_reading(&init, &switch, &current, 10).current().await.unwrap_err().to_string();
    assert!(err.contains("current script") && err.contains("words.sh"), "{err}");
    assert!(err.contains("printed \"current entry point is ep-1\""), "{err}");
    assert!(err.contains("one of: ep-1, ep-2"), "{err}");

    let current = s.script("binary.sh", r"printf '\001\377\376ep-1\000junk'");
    let sw = build_reading(&init, &switch, &current, 10);
    let err = sw.current().await.unwrap_err().to_string();
    assert!(err.contains("printed \"\\u{1}"), "binary shown escaped: {err}");
    assert!(sw.init().await.is_err(), "garbage at start stops the node");

    let current = s.script("long.sh", r#"i=0; while [ $i -lt 100 ]; do printf 'garbage '; i=$((i+1)); done; echo"#);
    let err = build_reading(&init, &switch, &current, 10).current().await.unwrap_err().to_string();
    assert!(err.contains('…') && err.len() < 400, "long output is truncated: {err}");
}

#[tokio::test]
async fn missing_or_non_executable_scripts_are_config_errors_with_their_key_path() {
    let s = Scripts::new();
    let plain = s.path("plain.sh");
    std::fs::write(&plain, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
    let missing = s.path("missing.sh");
    let settings = format!(
        "      init: '{}'\n      switch: '{}'\n      current: '{}'\n      timeout: 0\n",
        missing.display(),
        plain.display(),
        plain.display()
    );
    let Err(err) = build_with(&settings) else { panic!("bad settings must not build") };
    let text: Vec<String> = err.problems.iter().map(ToString::to_string).collect();
    let expect = [
        format!("services[0].switcher.init: no such file: {}", missing.display()),
        format!("services[0].switcher.switch: {} is not executable", plain.display()),
        format!("services[0].switcher.current: {} is not executable", plain.display()),
        "services[0].switcher.timeout: must be a duration from 1s to 1h (a bare number is seconds), not 0s".to_string(),
    ];
    for e in &expect {
        assert!(text.iter().any(|t| t.starts_with(e.as_str())), "missing {e:?} in {text:#?}");
    }

    let Err(err) = build_with("      swtich: /bin/true\n") else { panic!("bad settings must not build") };
    let text: Vec<String> = err.problems.iter().map(ToString::to_string).collect();
    assert!(text.iter().any(|t| t == "services[0].switcher.init: is required"), "{text:#?}");
    assert!(text.iter().any(|t| t.starts_with("services[0].switcher.swtich: unknown key")), "{text:#?}");
}
