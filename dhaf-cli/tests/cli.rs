//! The real `dhaf-cli` binary against a running node: an in-process `Node` on the in-memory DCS
//! with scripted health and a fake provider, its REST API on 127.0.0.1:<ephemeral>.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dhaf_core::config::Config;
use dhaf_core::dcs::memory::MemoryDcs;
use dhaf_core::registry::{Providers, ServiceProviders};
use dhaf_core::runtime::{Node, NodeHandle};
use dhaf_core::testing::{FakeProvider, ScriptedChecker};
use serde_json::Value;

#[path = "../../dhaf-node/tests/support/mod.rs"]
mod support;

const TOKEN: &str = "cli-test-token-1";

fn config_yaml(port: u16, token: &str) -> String {
    support::fake_main_yaml(&format!("    host: 127.0.0.1\n    port: {port}\n    token: {token}\n"))
}

fn scratch_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("dhaf-cli-test-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A second service, for commands that must tell services apart.
const SECOND_SERVICE: &str = "  - name: backup
    domain: backup.example.com
    rise: 1
    fall: 1
    entry-points:
      - name: b1
        ip: 10.0.1.1
      - name: b2
        ip: 10.0.1.2
    switcher:
      type: fake
    health-checker:
      type: scripted
";

struct Running {
    _rt: tokio::runtime::Runtime,
    dcs: MemoryDcs,
    port: u16,
    config: PathBuf,
    dir: PathBuf,
    checker: ScriptedChecker,
    provider: FakeProvider,
    handle: NodeHandle,
}

fn start() -> Running {
    start_with(1)
}

/// A switcher that cannot read its live state back (an `exec` switcher without a `current`
/// script), switching through a fake provider.
struct Blind(dhaf_core::testing::RecordingSwitcher);

#[async_trait::async_trait]
impl dhaf_core::provider::Switcher for Blind {
    async fn current(&self) -> Result<Option<String>, dhaf_core::provider::ProviderError> {
        Ok(None)
    }
    fn reads_back(&self) -> bool {
        false
    }
    async fn switch(
        &self,
        to: &dhaf_core::model::EntryPoint,
        token: dhaf_core::model::FencingToken,
    ) -> Result<(), dhaf_core::provider::ProviderError> {
        self.0.switch(to, token).await
    }
}

/// A node with `services` services: `main`, then `backup`.
fn start_with(services: usize) -> Running {
    start_node(services, false)
}

/// A node with `services` services; with `blind`, `main`'s switcher cannot read back.
fn start_node(services: usize, blind: bool) -> Running {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut yaml = config_yaml(port, TOKEN);
    if services > 1 {
        yaml.push_str(SECOND_SERVICE);
    }
    let dir = scratch_dir();
    let config = dir.join("node.yaml");
    std::fs::write(&config, &yaml).unwrap();

    let checker = ScriptedChecker::new();
    let provider = FakeProvider::new(None);
    let switcher: Arc<dyn dhaf_core::provider::Switcher> =
        if blind { Arc::new(Blind(provider.switcher("n1"))) } else { Arc::new(provider.switcher("n1")) };
    let mut providers = Providers { services: vec![ServiceProviders { checker: Arc::new(checker.clone()), switcher }], notifiers: vec![] };
    if services > 1 {
        let backup = FakeProvider::new(None);
        providers.services.push(ServiceProviders { checker: Arc::new(checker.clone()), switcher: Arc::new(backup.switcher("n1")) });
    }
    let dcs = MemoryDcs::new("test");
    let node = Node::new(Config::parse(&yaml).unwrap(), Arc::new(dcs.client("n1")), providers);
    let handle = node.handle();
    let app = dhaf_node::api::router(handle.clone());
    rt.spawn(node.run(std::future::pending()));
    // With the client's address, as dhaf-node serves it: the audit trail and "who asked" name it.
    rt.spawn(async move { axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await });
    let r = Running { _rt: rt, dcs, port, config, dir, checker, provider, handle };
    r.wait_for("the node to lead and point main at ep1", |r| r.handle.is_leader() && r.provider.current().as_deref() == Some("ep1"));
    r
}

impl Running {
    fn wait_for(&self, what: &str, cond: impl Fn(&Running) -> bool) {
        for _ in 0..300 {
            if cond(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out waiting for {what}");
    }

    /// Run the CLI with `--config` pointing at this node.
    fn cli(&self, args: &[&str]) -> Done {
        let mut all = args.to_vec();
        let config = self.config.to_str().unwrap().to_string();
        all.extend(["--config", &config]);
        cli(&all)
    }

    /// Poll `--json` output of a read command until `cond` holds.
    fn wait_json(&self, what: &str, args: &[&str], cond: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..300 {
            let done = self.cli(args);
            if done.code == 0 && cond(&done.json()) {
                return done.json();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out waiting for {what}");
    }
}

impl Running {
    fn wait_maintenance(&self, name: &str) {
        self.wait_json("maintenance", &["status-service", "--service", "main", "--json"], |v| ep(v, name)["maintenance"] == true);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Done {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Done {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("--json printed non-JSON ({e}): {}", self.stdout))
    }

    #[track_caller]
    fn ok(self) -> Done {
        assert_eq!(self.code, 0, "stdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }

    #[track_caller]
    fn failed(self, code: i32, needle: &str) -> Done {
        assert_eq!(self.code, code, "stdout: {}\nstderr: {}", self.stdout, self.stderr);
        assert!(self.stderr.contains(needle), "stderr lacks {needle:?}: {}", self.stderr);
        assert!(!self.stderr.contains(TOKEN) && !self.stdout.contains(TOKEN), "the token leaked");
        self
    }
}

fn cli(args: &[&str]) -> Done {
    let Output { status, stdout, stderr } = Command::new(env!("CARGO_BIN_EXE_dhaf-cli"))
        .args(args)
        .env_remove("DHAF_API_TOKEN")
        .env_remove("DHAF_URL")
        .env_remove("DHAF_CA_FILE")
        .env_remove("DHAF_CLIENT_CERT")
        .env_remove("DHAF_CLIENT_KEY")
        .output()
        .expect("dhaf-cli runs");
    Done {
        code: status.code().expect("exited, not killed"),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

fn ep<'a>(service: &'a Value, name: &str) -> &'a Value {
    service["entry_points"].as_array().unwrap().iter().find(|e| e["name"] == name).unwrap()
}

#[test]
fn t10_status_commands() {
    let r = start();
    let out = r.cli(&["status-dhaf"]).ok().stdout;
    assert!(out.contains("Cluster: test"), "{out}");
    assert!(out.contains("Leader:  n1"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("n1") && l.contains("alive") && l.contains("yes")), "{out}");
    let v = r.cli(&["status-dhaf", "--json"]).ok().json();
    assert_eq!(v["leader"]["node"], "n1");
    assert_eq!(v["nodes"][0]["alive"], true);

    r.checker.down("ep3", "connection refused");
    let v = r.wait_json("ep3 down", &["status-service", "--service", "main", "--json"], |v| ep(v, "ep3")["verdict"] == "unhealthy");
    assert_eq!(v["current"], "ep1");
    let out = r.cli(&["status-service", "--service", "main"]).ok().stdout;
    assert!(out.contains("Service: main (example.com)"), "{out}");
    assert!(out.contains("Current entry point: ep1"), "{out}");
    let ep1 = out.lines().find(|l| l.contains("ep1") && l.contains("10.0.0.1")).unwrap_or_else(|| panic!("{out}"));
    assert!(ep1.contains("healthy") && ep1.contains('*'), "{ep1}");
    let ep3 = out.lines().find(|l| l.contains("ep3")).unwrap();
    assert!(ep3.contains("unhealthy") && ep3.contains("n1: unhealthy (connection refused)"), "{ep3}");

    // Without --service: every service.
    let out = r.cli(&["status-service"]).ok().stdout;
    assert!(out.contains("Service: main"), "{out}");
    let v = r.cli(&["status-service", "--json"]).ok().json();
    assert_eq!(v.as_array().unwrap().len(), 1);

    let out = r.cli(&["status-services"]).ok().stdout;
    let line = out.lines().find(|l| l.starts_with("main")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("example.com") && line.contains("ep1") && line.contains("2/3"), "{line}");
    assert_eq!(r.cli(&["status-services", "--json"]).ok().json()[0]["name"], "main");

    let out = r.cli(&["switchover-candidates", "--service", "main"]).ok().stdout;
    assert!(out.contains("ep1") && out.contains("ep2") && !out.contains("ep3"), "{out}");
    let v = r.cli(&["switchover-candidates", "--service", "main", "--json"]).ok().json();
    let names: Vec<&str> = v.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ep1", "ep2"]);

    r.cli(&["status-service", "--service", "nope"]).failed(1, "unknown_service");
    r.cli(&["switchover-candidates", "--service", "nope"]).failed(1, "unknown service 'nope'");
}

#[test]
fn t20_switchover_purge_and_history() {
    let r = start();
    let out = r.cli(&["switchover-to", "ep2", "--service", "main"]).ok().stdout;
    assert!(out.contains("ep2"), "{out}");
    r.wait_for("the provider to point at ep2", |r| r.provider.current().as_deref() == Some("ep2"));

    let v = r.wait_json("a switchover in history", &["history", "--service", "main", "--json"], |v| {
        v.as_array().unwrap().iter().any(|h| h["kind"] == "switchover" && h["entry_point"] == "ep2")
    });
    assert!(v.as_array().unwrap().len() >= 2, "initial switch and switchover: {v}");
    let out = r.cli(&["history", "--service", "main"]).ok().stdout;
    let line = out.lines().find(|l| l.contains("switchover")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("ep2") && line.contains("n1") && line.starts_with("20"), "{line}");

    let out = r.cli(&["status-service", "--service", "main"]).ok().stdout;
    assert!(out.contains("Switchover: to ep2"), "{out}");

    r.cli(&["switchover-purge", "--service", "main"]).ok();
    r.wait_for("failback to ep1", |r| r.provider.current().as_deref() == Some("ep1"));

    r.cli(&["switchover-to", "ep9", "--service", "main"]).failed(1, "unknown_entry_point");
    r.checker.down("ep3", "HTTP 503");
    r.wait_json("ep3 down", &["status-service", "--service", "main", "--json"], |v| ep(v, "ep3")["verdict"] == "unhealthy");
    r.cli(&["switchover-to", "ep3", "--service", "main"]).failed(1, "unhealthy_target");
    r.cli(&["switchover-purge", "--service", "nope"]).failed(1, "unknown_service");

    // --json on a mutation gives the API's answer.
    let v = r.cli(&["switchover-to", "ep2", "--service", "main", "--json"]).ok().json();
    assert_eq!(v["switchover"], "ep2");
}

#[test]
fn t30_maintenance_and_decommission() {
    let r = start();
    r.cli(&["maintenance-on", "ep1", "--service", "main"]).ok();
    r.wait_for("traffic to leave ep1", |r| r.provider.current().as_deref() == Some("ep2"));
    let out = r.cli(&["status-service", "--service", "main"]).ok().stdout;
    let ep1 = out.lines().find(|l| l.contains("10.0.0.1")).unwrap();
    assert!(ep1.contains("maintenance"), "{out}");
    r.cli(&["switchover-to", "ep1", "--service", "main"]).failed(1, "target_in_maintenance");
    r.cli(&["maintenance-off", "ep1", "--service", "main"]).ok();
    r.wait_for("traffic back on ep1", |r| r.provider.current().as_deref() == Some("ep1"));
    r.cli(&["maintenance-on", "ep9", "--service", "main"]).failed(1, "unknown_entry_point");
    r.cli(&["maintenance-off", "ep1", "--service", "nope"]).failed(1, "unknown_service");

    r.cli(&["node-decommission", "n1"]).failed(1, "node_alive");
    r.cli(&["node-decommission", "ghost"]).failed(1, "unknown_node");
    let v = r.cli(&["node-decommission", "n1", "--json"]).failed(1, "node_alive").json();
    assert_eq!(v["error"]["code"], "node_alive");
}

#[test]
fn t40_tokens_and_config_errors() {
    let r = start();
    // A config with another token: reads and changes are refused with a hint (a node with a
    // token wants it for reads too).
    let wrong = r.dir.join("wrong-token.yaml");
    std::fs::write(&wrong, config_yaml(r.port, "not-the-token")).unwrap();
    let wrong = wrong.to_str().unwrap();
    cli(&["status-dhaf", "--config", wrong]).failed(1, "unauthorized");
    let done = cli(&["switchover-to", "ep2", "--service", "main", "--config", wrong]).failed(1, "unauthorized");
    assert!(done.stderr.contains("dhaf.web-api.token"), "{}", done.stderr);
    cli(&["node-decommission", "n1", "--config", wrong]).failed(1, "unauthorized");
    assert_eq!(r.provider.current().as_deref(), Some("ep1"));
    // $DHAF_API_TOKEN overrides the file's token, for operators who cannot read the node's secrets.
    let status = Command::new(env!("CARGO_BIN_EXE_dhaf-cli"))
        .args(["maintenance-on", "ep3", "--service", "main", "--config", wrong])
        .env("DHAF_API_TOKEN", TOKEN)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    r.wait_maintenance("ep3");

    // Usage and config errors: 2, naming the problem. Without --config, --url or $DHAF_URL the
    // default config file is read (none exists here).
    let done = cli(&["status-dhaf"]).failed(2, "--config");
    assert!(done.stderr.contains("/etc/dhaf/config.yaml") && done.stderr.contains("--url"), "{}", done.stderr);
    let missing = r.dir.join("missing.yaml");
    cli(&["status-dhaf", "--config", missing.to_str().unwrap()]).failed(2, "cannot read");
    let bad = r.dir.join("bad.yaml");
    std::fs::write(&bad, config_yaml(r.port, TOKEN).replace(&format!("port: {}", r.port), "port: 99999")).unwrap();
    cli(&["status-dhaf", "--config", bad.to_str().unwrap()]).failed(2, "dhaf.web-api.port");
    std::fs::write(&bad, "dhaf: [unclosed").unwrap();
    cli(&["status-dhaf", "--config", bad.to_str().unwrap()]).failed(2, "YAML");
    cli(&["no-such-command"]).failed(2, "no-such-command");
    cli(&["switchover-to", "ep2"]).failed(2, "--service");
}

#[test]
fn t45_secrets_of_the_node_are_not_needed_in_the_cli_shell() {
    let r = start();
    // The node's file takes its provider secrets from its own environment (a systemd
    // EnvironmentFile, say); the operator's shell does not have them, and needs only web-api.
    let file = r.dir.join("with-env-secrets.yaml");
    let yaml =
        config_yaml(r.port, TOKEN).replace("      type: fake\n", "      type: fake\n      api-token: ${DHAF_CLI_TEST_UNSET_SECRET}\n");
    assert!(yaml.contains("DHAF_CLI_TEST_UNSET_SECRET"));
    std::fs::write(&file, yaml).unwrap();
    let file = file.to_str().unwrap();
    let status = cli(&["status-services", "--json", "--config", file]).ok().json();
    assert_eq!(status[0]["current"], "ep1", "{status}");
    // A web-api token that is itself unset is not sent as a placeholder: the node says what is missing.
    let yaml = config_yaml(r.port, "${DHAF_CLI_TEST_UNSET_TOKEN}");
    std::fs::write(r.dir.join("unset-token.yaml"), yaml).unwrap();
    let unset = r.dir.join("unset-token.yaml");
    let unset = unset.to_str().unwrap();
    cli(&["status-dhaf", "--config", unset]).failed(1, "unauthorized");
    let done = cli(&["switchover-to", "ep2", "--service", "main", "--config", unset]).failed(1, "unauthorized");
    assert!(done.stderr.contains("Authorization"), "{}", done.stderr);
    // A broken web-api section still names the missing variable.
    let yaml = config_yaml(r.port, TOKEN).replace(&format!("port: {}", r.port), "port: ${DHAF_CLI_TEST_UNSET_PORT}");
    std::fs::write(r.dir.join("unset-port.yaml"), yaml).unwrap();
    let port = r.dir.join("unset-port.yaml");
    cli(&["status-dhaf", "--config", port.to_str().unwrap()]).failed(2, "DHAF_CLI_TEST_UNSET_PORT");
}

#[test]
fn t50_unreachable_node_is_exit_3() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = scratch_dir();
    let config = dir.join("node.yaml");
    std::fs::write(&config, config_yaml(port, TOKEN)).unwrap();
    let config = config.to_str().unwrap();
    let done = cli(&["status-dhaf", "--config", config]).failed(3, &format!("127.0.0.1:{port}"));
    assert!(done.stderr.contains("running"), "{}", done.stderr);
    cli(&["switchover-to", "ep2", "--service", "main", "--config", config]).failed(3, "cannot reach");
    let _ = std::fs::remove_dir_all(dir);
}

/// A port that was just free: nothing listens there.
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Run the CLI with extra environment variables.
fn cli_env(args: &[&str], env: &[(&str, &str)]) -> Done {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dhaf-cli"));
    cmd.args(args).env_remove("DHAF_API_TOKEN").env_remove("DHAF_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let Output { status, stdout, stderr } = cmd.output().expect("dhaf-cli runs");
    Done { code: status.code().unwrap(), stdout: String::from_utf8(stdout).unwrap(), stderr: String::from_utf8(stderr).unwrap() }
}

#[test]
fn t52_url_list_without_a_config_file_skips_a_dead_node() {
    let r = start();
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let live = format!("http://127.0.0.1:{}", r.port);
    let list = format!("{dead},{live}");

    // Reads: the dead node is skipped, the live one answers.
    let v = cli_env(&["status-dhaf", "--json", "--url", &list], &[("DHAF_API_TOKEN", TOKEN)]).ok().json();
    assert_eq!(v["leader"]["node"], "n1");
    // A node with a token wants it for reads too: without $DHAF_API_TOKEN the live node refuses,
    // and the hint names the variable.
    cli(&["status-dhaf", "--url", &list]).failed(1, "$DHAF_API_TOKEN");
    // The same list from $DHAF_URL, the token from $DHAF_API_TOKEN; a mutation goes through.
    let env = [("DHAF_URL", list.as_str()), ("DHAF_API_TOKEN", TOKEN)];
    cli_env(&["switchover-to", "ep2", "--service", "main"], &env).ok();
    r.wait_for("the provider to point at ep2", |r| r.provider.current().as_deref() == Some("ep2"));
    let out = cli_env(&["status-service", "--service", "main"], &env).ok().stdout;
    assert!(out.contains("Switchover: to ep2"), "{out}");
    // A wrong token is a refusal by the live node, not a reason to try elsewhere.
    cli_env(&["switchover-purge", "--service", "main"], &[("DHAF_URL", &list), ("DHAF_API_TOKEN", "nope")]).failed(1, "unauthorized");

    // Every node down: exit 3, and the error names each URL tried.
    let dead2 = format!("http://127.0.0.1:{}", dead_port());
    let done = cli(&["status-dhaf", "--url", &format!("{dead},{dead2}")]).failed(3, &dead);
    assert!(done.stderr.contains(&dead2), "{}", done.stderr);

    // Bad lists are usage errors naming the culprit; --url and --config exclude each other.
    cli(&["status-dhaf", "--url", "ftp://127.0.0.1:1"]).failed(2, "ftp://127.0.0.1:1");
    cli(&["status-dhaf", "--url", &format!("{live},")]).failed(2, "empty URL");
    cli_env(&["status-dhaf"], &[("DHAF_URL", "http://127.0.0.1:1/api?x")]).failed(2, "$DHAF_URL");
    cli(&["status-dhaf", "--url", &live, "--config", r.config.to_str().unwrap()]).failed(2, "--config");
}

#[test]
fn t60_help_version_completions() {
    let done = cli(&["help"]).ok();
    for cmd in [
        "status-dhaf",
        "status-service",
        "status-services",
        "switchover-candidates",
        "switchover-to",
        "switchover-purge",
        "node-decommission",
        "maintenance-on",
        "maintenance-off",
        "history",
        "version",
        "completions",
    ] {
        assert!(done.stdout.contains(cmd), "help lacks {cmd}: {}", done.stdout);
    }
    let done = cli(&["help", "switchover-to"]).ok();
    assert!(done.stdout.contains("--service") && done.stdout.contains("--config"), "{}", done.stdout);
    let done = cli(&["version"]).ok();
    assert_eq!(done.stdout.trim(), format!("dhaf-cli {}", env!("CARGO_PKG_VERSION")));
    let done = cli(&["completions", "bash"]).ok();
    assert!(done.stdout.contains("dhaf-cli") && done.stdout.contains("switchover-to"), "{}", done.stdout);
    cli(&["completions", "tcsh"]).failed(2, "tcsh");
}

#[test]
fn t35_maintenance_of_the_last_healthy_entry_point_needs_force() {
    let r = start();
    r.checker.down("ep3", "connection refused");
    r.wait_json("ep3 down", &["status-service", "--service", "main", "--json"], |v| ep(v, "ep3")["verdict"] == "unhealthy");
    r.cli(&["maintenance-on", "ep1", "--service", "main"]).ok();
    r.wait_maintenance("ep1");
    let done = r.cli(&["maintenance-on", "ep2", "--service", "main"]).failed(1, "last_healthy_entry_point");
    assert!(done.stderr.contains("--force"), "the refusal says how to insist: {}", done.stderr);
    let out = r.cli(&["status-services"]).ok().stdout;
    let line = out.lines().find(|l| l.starts_with("main")).unwrap_or_else(|| panic!("{out}"));
    assert!(!line.contains("DEGRADED"), "{out}");

    r.cli(&["maintenance-on", "ep2", "--service", "main", "--force"]).ok();
    r.wait_maintenance("ep2");
    let out = r.cli(&["status-services"]).ok().stdout;
    let line = out.lines().find(|l| l.starts_with("main")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("DEGRADED"), "{out}");
    let out = r.cli(&["status-service", "--service", "main"]).ok().stdout;
    assert!(out.contains("Degraded:") && out.contains("maintenance"), "{out}");
    assert_eq!(r.provider.current().as_deref(), Some("ep2"));
}

#[test]
fn t25_switchover_purge_without_service() {
    // One service: it is the one meant.
    let r = start();
    r.cli(&["switchover-to", "ep2", "--service", "main"]).ok();
    r.wait_json("switchover pending", &["status-service", "--service", "main", "--json"], |v| v["switchover"] == "ep2");
    let out = r.cli(&["switchover-purge"]).ok().stdout;
    assert!(out.contains("main"), "{out}");
    r.wait_json("switchover purged", &["status-service", "--service", "main", "--json"], |v| v["switchover"].is_null());
    drop(r);

    // Several: the CLI names them and says how to pick, and --all purges every one.
    let r = start_with(2);
    r.cli(&["switchover-to", "ep2", "--service", "main"]).ok();
    r.cli(&["switchover-to", "b2", "--service", "backup"]).ok();
    let done = r.cli(&["switchover-purge"]).failed(2, "--service");
    assert!(done.stderr.contains("main") && done.stderr.contains("backup") && done.stderr.contains("--all"), "{}", done.stderr);
    let v = r.cli(&["status-services", "--json"]).ok().json();
    assert!(v.as_array().unwrap().iter().all(|s| !s["switchover"].is_null()), "nothing was purged: {v}");
    let out = r.cli(&["switchover-purge", "--all"]).ok().stdout;
    assert!(out.contains("main") && out.contains("backup"), "{out}");
    r.wait_json("every switchover purged", &["status-services", "--json"], |v| {
        v.as_array().unwrap().iter().all(|s| s["switchover"].is_null())
    });
    r.cli(&["switchover-purge", "--all", "--service", "main"]).failed(2, "--all");
}

/// The original dhaf's README, section "Available CLI commands" (and the quick start's status
/// line), verbatim: every line must keep working as written there.
const ORIGINAL_README_CLI: &str = r#"
10. After the dhaf cluster is fully initialized, you can see its status via CLI:
```shell
./dhaf.cli status-services --config config-n1.dhaf
```
# Available CLI commands:
- `./dhaf.cli status-dhaf --config <config_file>` - show dhaf cluster status information.
- `./dhaf.cli status-service --service <service_name> --config <config_file>` - show service status information.
- `./dhaf.cli status-service --config <config_file>` - show all services status information.
- `./dhaf.cli switchover-candidates --service <service_name> --config <config_file>` - show suitable entry points for switchover.
- `./dhaf.cli switchover-to <ep> --service <service_name> --config <config_file>` - switchover to the `<ep>` entry point.
- `./dhaf.cli switchover-purge --config <config_file>` - purge the switchover requirement.
- `./dhaf.cli node-decommission <node_name> -config <config_file>` - decommission the dhaf node `<node_name>`.
- `./dhaf.cli help` - display more information on a specific command.
- `./dhaf.cli version` - display version information.
"#;

#[test]
fn t70_the_original_readme_command_lines_work_as_written() {
    let r = start();
    // The original's configs are `.dhaf` YAML files, named relative to the working directory.
    std::fs::copy(&r.config, r.dir.join("config-n1.dhaf")).unwrap();
    // A member that stopped, for node-decommission.
    let n3 = r.dcs.client("node-3");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        use dhaf_core::dcs::Dcs;
        let lease = n3.register("node-3", Duration::from_secs(4)).await.unwrap();
        n3.revoke(lease).await.unwrap();
    });

    let lines: Vec<String> = ORIGINAL_README_CLI
        .lines()
        .filter_map(|l| {
            let l = l.trim_start_matches("- `");
            let cmd = l.strip_prefix("./dhaf.cli ")?;
            Some(cmd.split('`').next().unwrap().to_string())
        })
        .collect();
    assert_eq!(lines.len(), 10, "{lines:?}");
    for line in &lines {
        let line = line
            .replace("<config_file>", "config-n1.dhaf")
            .replace("<service_name>", "main")
            .replace("<ep>", "ep2")
            .replace("<node_name>", "node-3");
        let Output { status, stdout, stderr } = Command::new(env!("CARGO_BIN_EXE_dhaf-cli"))
            .args(line.split_whitespace())
            .current_dir(&r.dir)
            .env_remove("DHAF_API_TOKEN")
            .output()
            .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&stdout), String::from_utf8_lossy(&stderr));
        assert_eq!(status.code(), Some(0), "dhaf-cli {line}\nstdout: {stdout}\nstderr: {stderr}");
        assert!(!stdout.trim().is_empty(), "dhaf-cli {line} printed nothing");
        if line.starts_with("status-service --config") {
            assert!(stdout.contains("Service: main"), "dhaf-cli {line}: {stdout}");
        }
    }
    // What the lines asked for happened.
    let v = r.cli(&["status-dhaf", "--json"]).ok().json();
    assert!(v["nodes"].as_array().unwrap().iter().all(|n| n["name"] != "node-3"), "node-3 decommissioned: {v}");
    assert!(r.cli(&["status-service", "--service", "main", "--json"]).ok().json()["switchover"].is_null());
}

#[test]
fn t75_single_dash_long_options_as_the_original_writes_them() {
    let r = start();
    let config = r.config.to_str().unwrap();
    let v = cli(&["status-service", "-service", "main", "-config", config, "-json"]).ok().json();
    assert_eq!(v["name"], "main");
    cli(&["status-dhaf", &format!("-config={config}")]).ok();
    // Short options keep their meaning.
    cli(&["status-service", "-s", "main", "-c", config]).ok();
    // A single-dash word that is no long option is left to the parser, which refuses it.
    cli(&["status-dhaf", "-conf", config]).failed(2, "");
}

#[test]
fn t80_lost_dcs_is_said_and_exits_4() {
    let r = start();
    r.wait_json("every verdict", &["status-service", "--service", "main", "--json"], |v| ep(v, "ep2")["verdict"] == "healthy");
    r.dcs.set_unavailable(true);
    r.wait_for("the node to notice", |r| r.cli(&["status-dhaf"]).code != 0);

    let done = r.cli(&["status-dhaf"]);
    assert_eq!(done.code, 4, "stdout: {}\nstderr: {}", done.stdout, done.stderr);
    let dcs = done.stdout.lines().find(|l| l.starts_with("DCS:")).unwrap_or_else(|| panic!("{}", done.stdout));
    assert!(dcs.contains("unreachable") && dcs.contains("since 20"), "{dcs}");
    assert!(!done.stdout.contains("an election is due"), "{}", done.stdout);
    assert!(done.stdout.contains("last known"), "{}", done.stdout);
    assert!(done.stderr.contains("DCS"), "{}", done.stderr);

    // The services as last known, not emptied.
    let done = r.cli(&["status-services"]);
    assert_eq!(done.code, 4, "stdout: {}\nstderr: {}", done.stdout, done.stderr);
    let line = done.stdout.lines().find(|l| l.starts_with("main")).unwrap_or_else(|| panic!("{}", done.stdout));
    assert!(line.contains("ep1") && line.contains("3/3"), "{}", done.stdout);
    assert!(done.stdout.contains("stale") || done.stdout.contains("last known"), "{}", done.stdout);
    let done = r.cli(&["status-service", "--service", "main", "--json"]);
    assert_eq!(done.code, 4);
    assert_eq!(done.json()["stale"], true);

    r.dcs.set_unavailable(false);
    r.wait_for("the dcs back", |r| r.cli(&["status-dhaf"]).code == 0);
    assert!(r.cli(&["status-services"]).ok().stdout.lines().any(|l| l.starts_with("main") && l.contains("ep1")));
}

#[test]
fn t90_pause_resume_wait_audit() {
    let r = start();
    // Paused: status says so, by whom; a switchover waited for gives up with why (exit 5).
    let out = r.cli(&["pause"]).ok().stdout;
    assert!(out.contains("paused"), "{out}");
    let out = r.cli(&["status-dhaf"]).ok().stdout;
    let line = out.lines().find(|l| l.starts_with("Cluster: PAUSED since 20")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains(" by token from 127.0.0.1:"), "{line}");
    assert!(r.cli(&["status-services"]).ok().stdout.contains("Cluster: PAUSED"));
    assert_eq!(r.cli(&["status-dhaf", "--json"]).ok().json()["paused"]["by"].as_str().unwrap().split(' ').next(), Some("token"));
    let done = r.cli(&["switchover-to", "ep2", "--service", "main", "--wait", "--timeout", "2s"]).failed(5, "paused");
    assert!(done.stderr.contains("main points at ep1"), "{}", done.stderr);
    assert_eq!(r.provider.current().as_deref(), Some("ep1"));

    // Resumed, the same waits until the provider shows ep2.
    r.cli(&["resume"]).ok();
    assert!(!r.cli(&["status-dhaf"]).ok().stdout.contains("PAUSED"));
    let out = r.cli(&["switchover-to", "ep2", "--service", "main", "--wait"]).ok().stdout;
    assert!(out.contains("Done: main points at ep2 (read back from the provider)"), "{out}");
    assert_eq!(r.provider.current().as_deref(), Some("ep2"));
    // The history says who asked for the switchover.
    let out = r.cli(&["history", "--service", "main"]).ok().stdout;
    let line = out.lines().find(|l| l.contains("switchover")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("token from 127.0.0.1:"), "{out}");

    // Purge and wait: settled back on ep1; maintenance waits until traffic left.
    r.cli(&["switchover-purge", "--service", "main", "--wait", "--timeout", "30s"]).ok();
    r.wait_for("failback to ep1", |r| r.provider.current().as_deref() == Some("ep1"));
    let out = r.cli(&["maintenance-on", "ep1", "--service", "main", "--wait"]).ok().stdout;
    assert!(out.contains("Done: main points at ep2"), "{out}");
    assert_eq!(r.provider.current().as_deref(), Some("ep2"));
    r.cli(&["maintenance-off", "ep1", "--service", "main", "--wait"]).ok();

    // A switchover whose target goes down is dropped: the wait says so at once.
    r.checker.down("ep3", "connection refused");
    r.wait_json("ep3 down", &["status-service", "--service", "main", "--json"], |v| ep(v, "ep3")["verdict"] == "unhealthy");
    r.cli(&["switchover-to", "ep3", "--service", "main", "--wait"]).failed(1, "unhealthy_target");
    cli(&["switchover-to", "ep2", "--service", "main", "--timeout", "5s"]).failed(2, "--wait");
    r.cli(&["switchover-to", "ep2", "--service", "main", "--wait", "--timeout", "soon"]).failed(2, "soon");

    // The audit trail: every change, with the token's name and the address.
    let out = r.cli(&["audit"]).ok().stdout;
    for path in
        ["POST /api/v1/pause", "POST /api/v1/resume", "POST /api/v1/services/main/switchover", "DELETE /api/v1/services/main/switchover"]
    {
        let line = out.lines().find(|l| l.contains(path)).unwrap_or_else(|| panic!("{path} not in {out}"));
        assert!(line.contains("token") && line.contains("127.0.0.1:") && line.contains("accepted"), "{line}");
    }
    assert!(out.lines().any(|l| l.contains("switchover") && l.contains("refused 422 (unhealthy_target)")), "{out}");
    assert!(r.cli(&["audit", "--json"]).ok().json().as_array().unwrap().len() >= 6);
}

#[test]
fn t95_scheduled_switchover_shown_and_cancelled() {
    let r = start();
    let out = r.cli(&["switchover-to", "ep3", "--service", "main", "--at", "2099-12-24T03:00:00Z"]).ok().stdout;
    assert!(out.contains("scheduled for 2099-12-24T03:00:00Z"), "{out}");
    let out = r.cli(&["status-service", "--service", "main"]).ok().stdout;
    assert!(out.contains("Switchover: scheduled: switchover to ep3 at 2099-12-24 03:00:00 UTC"), "{out}");
    let out = r.cli(&["status-services"]).ok().stdout;
    assert!(out.lines().any(|l| l.starts_with("main") && l.contains("ep3 at 2099-12-24 03:00:00")), "{out}");
    let v = r.cli(&["status-service", "--service", "main", "--json"]).ok().json();
    assert_eq!(v["switchover_at"], 4_101_764_400u64);
    // Not before its time.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(r.provider.current().as_deref(), Some("ep1"));
    // Cancelled with switchover-purge.
    r.cli(&["switchover-purge", "--service", "main"]).ok();
    let v = r.cli(&["status-service", "--service", "main", "--json"]).ok().json();
    assert!(v["switchover"].is_null() && v["switchover_at"].is_null(), "{v}");
    // Bad times are refused, naming what is wrong.
    r.cli(&["switchover-to", "ep3", "--service", "main", "--at", "tomorrow"]).failed(1, "RFC 3339");
    r.cli(&["switchover-to", "ep3", "--service", "main", "--at", "2001-01-01T00:00:00Z"]).failed(1, "time_in_the_past");
    cli(&["switchover-to", "ep3", "--service", "main", "--at", "2099-12-24T03:00:00Z", "--wait"]).failed(2, "--wait");
}

#[test]
fn t92_wait_without_read_back_follows_the_desired_state_and_says_so() {
    let r = start_node(1, true);
    let done = r.cli(&["switchover-to", "ep2", "--service", "main", "--wait"]).ok();
    assert!(done.stderr.contains("cannot read its live state back") && done.stderr.contains("desired state"), "{}", done.stderr);
    assert!(done.stdout.contains("Done: main points at ep2 (desired; not read back)"), "{}", done.stdout);
    assert_eq!(r.provider.current().as_deref(), Some("ep2"));
}
