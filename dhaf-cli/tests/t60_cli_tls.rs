//! `dhaf-cli` against a node serving its API over mutual TLS, with certificates made by the
//! test: the CA comes from `--ca-file` or `$DHAF_CA_FILE`, the client certificate from
//! `--client-cert`/`--client-key`, the token from `$DHAF_API_TOKEN`; whatever is missing is said.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "../../dhaf-node/tests/support/mod.rs"]
mod support;

const ALICE: &str = "alice-operate-secret-9";

struct Done {
    code: i32,
    stdout: String,
    stderr: String,
}

fn cli(args: &[&str], env: &[(&str, &str)]) -> Done {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dhaf-cli"));
    cmd.args(args);
    for v in ["DHAF_API_TOKEN", "DHAF_CA_FILE", "DHAF_CLIENT_CERT", "DHAF_CLIENT_KEY"] {
        cmd.env_remove(v);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("dhaf-cli runs");
    let done = Done {
        code: out.status.code().unwrap(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    assert!(!done.stdout.contains(ALICE) && !done.stderr.contains(ALICE), "the token leaked");
    done
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_speaks_https_with_a_ca_file_and_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = backend.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = backend.accept().await {
            drop(s);
        }
    });
    let ca = support::TestCa::new("node CA");
    let clients = support::TestCa::new("client CA");
    std::fs::write(d.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(d.join("clients.pem"), clients.pem()).unwrap();
    let (cert, key) = support::write_pem(d, "server", &ca.server());
    let (client_cert, client_key) = support::write_pem(d, "alice", &clients.client("alice"));
    let web_api = |port: u16| {
        format!(
            "    host: 127.0.0.1\n    port: {port}\n    tls: {{ cert: {}, key: {}, client-ca: {} }}\n    tokens:\n      \
             - {{ name: alice, role: operate, token: \"${{ALICE_TOKEN}}\" }}",
            cert.display(),
            key.display(),
            d.join("clients.pem").display()
        )
    };
    let config = support::Site::tcp("cli-tls", port).eager().api(&web_api(0)).write(d);
    std::env::set_var("ALICE_TOKEN", ALICE);
    let (addr, handle, _stop) = support::start_node(&config, dhaf_node::ApiLimits::default()).await;
    let start = Instant::now();
    while !handle.is_leader() {
        assert!(start.elapsed() < Duration::from_secs(30), "the node did not lead");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The operator's copy of the config, with the port the node got.
    std::fs::create_dir(d.join("operator")).unwrap();
    let theirs = support::Site::tcp("cli-tls", port).api(&web_api(addr.port())).write(&d.join("operator"));
    let c = p(&theirs);

    // The CLI blocks; the node keeps running on the other worker.
    tokio::task::block_in_place(|| {
        let ca_file = d.join("ca.pem");
        {
            // Without the CA: unreachable, and told what to give.
            let done = cli(&["status-dhaf", "--config", c], &[("DHAF_API_TOKEN", ALICE)]);
            assert_eq!(done.code, 3, "{}", done.stderr);
            assert!(done.stderr.contains("--ca-file"), "{}", done.stderr);
            // The CA but no client certificate: the node refuses the handshake.
            let done = cli(&["status-dhaf", "--config", c, "--ca-file", p(&ca_file)], &[("DHAF_API_TOKEN", ALICE)]);
            assert_eq!(done.code, 3, "{}", done.stderr);
            // Everything, the CA from the environment: works, reads and changes.
            let env = [("DHAF_API_TOKEN", ALICE), ("DHAF_CA_FILE", p(&ca_file))];
            let tls = ["--client-cert", p(&client_cert), "--client-key", p(&client_key)];
            let done = cli(&[&["status-dhaf", "--json", "--config", c][..], &tls].concat(), &env);
            assert_eq!(done.code, 0, "{}", done.stderr);
            let status: serde_json::Value = serde_json::from_str(&done.stdout).unwrap();
            assert_eq!(status["leader"]["node"], "node-1", "{status}");
            let done = cli(&[&["switchover-to", "ep-1", "--service", "site", "--config", c][..], &tls].concat(), &env);
            assert_eq!(done.code, 0, "{}", done.stderr);
            // A client key without its certificate is a usage error.
            let done = cli(&["status-dhaf", "--config", c, "--client-key", p(&client_key)], &env);
            assert_eq!(done.code, 2, "{}", done.stderr);
            assert!(done.stderr.contains("--client-cert and --client-key go together"), "{}", done.stderr);
        }
    });
}
