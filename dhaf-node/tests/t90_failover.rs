//! End to end with real processes: the `dhaf-node` binary on the embedded DCS, the built-in `web`
//! checker against two real HTTP backends, and the `exec` switcher rewriting a file. The primary
//! is stopped, then started again: the public entry must follow, and the binary must stop cleanly
//! on SIGTERM.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

mod support;

async fn backend(listener: TcpListener) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else { continue };
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let _ = sock.read(&mut buf).await;
            let _ = sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
        });
    }
}

async fn wait_for_entry(entry: &Path, want: &str, node: &mut Child, limit: Duration) {
    let start = Instant::now();
    loop {
        if std::fs::read_to_string(entry).unwrap_or_default().trim() == want {
            return;
        }
        if let Some(status) = node.try_wait().unwrap() {
            panic!("dhaf-node exited early with {status}");
        }
        assert!(start.elapsed() < limit, "the public entry did not reach {want} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_binary_fails_over_and_back_between_real_backends() {
    let dir = std::env::temp_dir().join(format!("dhaf-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (entry, log) = (dir.join("entry"), dir.join("switches.log"));
    let (a, b, port) = support::two_listeners().await;
    let primary = tokio::spawn(backend(a));
    tokio::spawn(backend(b));

    let config = support::Site {
        service_keys: "    rise: 1\n    fall: 2\n".into(),
        entry_points: 2,
        checker: format!("{{ type: web, port: {port}, path: /health, timeout: 1, retries: 0, expected-response-body: ok }}"),
        // The log before the entry: once the entry shows a switch, its line is there to read.
        switch: format!("echo \"$1 $2 $DHAF_FENCING_TOKEN\" >> '{}'; echo \"$1\" > '{{entry}}'", log.display()),
        ..support::Site::tcp("e2e", port)
    }
    .write(&dir);

    let child = Command::new(env!("CARGO_BIN_EXE_dhaf-node"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut node = support::Kill(child);

    // Healthy start: the node adopts ep-1 without switching.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(std::fs::read_to_string(&entry).unwrap().trim(), "ep-1");
    assert!(!log.exists(), "no switch while the primary is healthy");

    primary.abort();
    let _ = primary.await;
    wait_for_entry(&entry, "ep-2", &mut node.0, Duration::from_secs(30)).await;

    let a = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(backend(a));
    wait_for_entry(&entry, "ep-1", &mut node.0, Duration::from_secs(30)).await;

    let switches = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = switches.lines().collect();
    assert_eq!(lines.len(), 2, "{switches}");
    let parts = |l: &str| l.split(' ').map(str::to_string).collect::<Vec<_>>();
    let (first, second) = (parts(lines[0]), parts(lines[1]));
    assert_eq!(first[..2], ["ep-2", "127.0.0.2"], "the switch script gets the name and ip: {switches}");
    assert_eq!(second[..2], ["ep-1", "127.0.0.1"], "{switches}");
    let term: i64 = first[2].parse().expect("the term is passed as DHAF_FENCING_TOKEN");
    assert_eq!(second[2].parse::<i64>().unwrap(), term, "one leader, one term");

    // SIGTERM: a clean stop.
    let pid = node.0.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = node.0.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "dhaf-node did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(&dir);
}
