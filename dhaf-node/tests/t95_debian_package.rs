//! The Debian package installs, runs and goes away cleanly: `dpkg -i` gives both binaries, the
//! `dhaf` system user, a starter config that passes `--check` as that user, and a unit systemd
//! accepts; the node the unit starts fails over with the shipped config; `dpkg --purge` removes it
//! all again.
//!
//! The package is `$DHAF_DEB` (`cargo xtask test` builds it with `cargo deb`); installing needs
//! root, as the fault-injection suite does.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const UNIT: &str = "/usr/lib/systemd/system/dhaf-node.service";
const CONFIG: &str = "/etc/dhaf/config.yaml";

fn deb() -> PathBuf {
    let path = std::env::var_os("DHAF_DEB")
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("DHAF_DEB is not set: run the tests with `cargo xtask test`, which builds the package"));
    assert!(path.is_file(), "DHAF_DEB={} does not exist", path.display());
    let uid = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:").map(|r| r.split_whitespace().next().unwrap().to_string()));
    assert_eq!(uid.as_deref(), Some("0"), "installing the package needs root");
    path
}

fn sh(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

fn ok(program: &str, args: &[&str]) -> String {
    let out = sh(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn user_exists(name: &str) -> bool {
    sh("getent", &["passwd", name]).status.success()
}

/// The unit's `ExecStart` as installed.
fn exec_start() -> Vec<String> {
    let unit = std::fs::read_to_string(UNIT).expect("the package installs the unit");
    let line = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart= in the unit");
    line.split_whitespace().map(str::to_string).collect()
}

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<String>) -> String {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_package_installs_runs_its_starter_config_and_purges_cleanly() {
    let deb = deb();
    // A run that failed half-way may have left it installed.
    let _ = sh("dpkg", &["--purge", "dhaf"]);

    ok("dpkg", &["-i", deb.to_str().unwrap()]);
    for bin in ["/usr/bin/dhaf-node", "/usr/bin/dhaf-cli"] {
        let mode = std::fs::metadata(bin).unwrap_or_else(|e| panic!("{bin}: {e}")).permissions().mode();
        assert_eq!(mode & 0o111, 0o111, "{bin} is executable");
    }
    assert!(user_exists("dhaf"), "the package creates the dhaf system user");
    let config = std::fs::metadata(CONFIG).unwrap();
    assert_eq!(config.mode() & 0o777, 0o640, "{CONFIG} is not world-readable");
    let dhaf_gid = ok("getent", &["group", "dhaf"]).split(':').nth(2).unwrap().parse::<u32>().unwrap();
    assert_eq!(config.gid(), dhaf_gid, "{CONFIG} is readable by the dhaf group");
    assert!(ok("dhaf-node", &["--help"]).contains("high-availability failover"), "--help says what the program is");

    // The shipped config is valid as the service user sees it.
    let check = ok("runuser", &["-u", "dhaf", "--", "/usr/bin/dhaf-node", "--config", CONFIG, "--check"]);
    assert!(check.contains("configuration is valid"), "{check}");

    // systemd accepts the unit, where systemd-analyze exists.
    match Command::new("systemd-analyze").args(["verify", UNIT]).output() {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
            // Without a running systemd (a container) verify still parses the unit; only complaints
            // about this unit's own settings count.
            let own: Vec<&str> = text.lines().filter(|l| l.contains("dhaf-node.service")).collect();
            assert!(own.is_empty(), "systemd-analyze verify finds fault with the unit:\n{text}");
        }
        Err(e) if e.kind() == ErrorKind::NotFound => eprintln!("systemd-analyze not found; the unit is not verified"),
        Err(e) => panic!("systemd-analyze: {e}"),
    }

    // Start the node as the unit does (its user, working directory and command line). The starter
    // config checks TCP port 80 on ep-1 (127.0.0.1) and ep-2 (127.0.0.2): only ep-2 answers, so the
    // node points the public entry (the state file its switch script writes) at ep-2.
    let _ep2 = TcpListener::bind("127.0.0.2:80").expect("bind 127.0.0.2:80 (root)");
    let argv = exec_start();
    assert_eq!(argv[0], "/usr/bin/dhaf-node", "the unit runs the packaged binary");
    let dhaf_uid = ok("getent", &["passwd", "dhaf"]).split(':').nth(2).unwrap().parse::<u32>().unwrap();
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).uid(dhaf_uid).gid(dhaf_gid).current_dir("/var/lib/dhaf").stdout(Stdio::null()).stderr(Stdio::null());
    let mut node = Node(cmd.spawn().expect("start dhaf-node"));
    let state = Path::new("/var/lib/dhaf/main.current");
    let live = wait_for("the node to point main at ep-2", Duration::from_secs(90), || {
        if let Ok(Some(status)) = node.0.try_wait() {
            panic!("dhaf-node exited early: {status}");
        }
        std::fs::read_to_string(state).ok().and_then(|s| s.lines().next().map(str::to_string)).filter(|l| l == "ep-2")
    });
    assert_eq!(live, "ep-2");
    let status = wait_for("the CLI to show ep-2 as current", Duration::from_secs(30), || {
        let out = sh("/usr/bin/dhaf-cli", &["status-service", "--service", "main", "--config", CONFIG]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && text.contains("Current entry point: ep-2")).then_some(text)
    });
    assert!(status.contains("Service: main"), "{status}");
    // SIGTERM, the unit's KillSignal: a clean stop.
    ok("kill", &["-TERM", &node.0.id().to_string()]);
    let exit = wait_for("dhaf-node to stop on SIGTERM", Duration::from_secs(30), || node.0.try_wait().unwrap().map(|s| s.to_string()));
    assert!(exit.contains("exit status: 0"), "dhaf-node stopped with {exit}");
    drop(node);

    ok("dpkg", &["--purge", "dhaf"]);
    for gone in ["/usr/bin/dhaf-node", "/usr/bin/dhaf-cli", UNIT, CONFIG, "/etc/dhaf", "/var/lib/dhaf"] {
        assert!(!Path::new(gone).exists(), "{gone} is left after purge");
    }
    assert!(!user_exists("dhaf"), "purge removes the dhaf user");
}
