//! The original's `exec` switcher: `init` runs once, as the provider's initialisation, and
//! `switch` points the public entry. Without a `current` script nothing reads the live state back,
//! and status says so instead of showing a guess.

use std::time::{Duration, Instant};

use tokio::net::TcpListener;

mod support;

/// Accept and drop connections until the task is aborted: a backend the tcp checker sees up.
async fn backend(listener: TcpListener) {
    loop {
        if let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    }
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_runs_once_switches_work_and_status_says_the_live_state_is_unknown() {
    let dir = std::env::temp_dir().join(format!("dhaf-original-exec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (entry, init_runs) = (dir.join("entry"), dir.join("init-runs"));
    let (a, b, port) = support::two_listeners().await;
    let primary = tokio::spawn(backend(a));
    tokio::spawn(backend(b));

    // As the original's scripts: init prints what it likes, switch writes the entry point's name,
    // and there is no `current` (nor an entry before the first switch).
    let config = support::Site {
        dhaf_keys: "  reconcile-interval: 1\n".into(),
        entry_points: 2,
        init: format!("echo 'hello from init'; echo run >> '{}'", init_runs.display()),
        current: None,
        entry: None,
        ..support::Site::tcp("original-exec", port)
    }
    .eager()
    .write(&dir);

    let prepared = dhaf_node::prepare(&config, &dhaf_providers::registry()).expect("valid config");
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(dhaf_node::run_with_limits(prepared, dhaf_node::ApiLimits::default(), std::future::pending(), move |a| {
        let _ = addr_tx.send(a);
    }));
    let addr = addr_rx.await.unwrap();

    // Nothing to read back, so the leader does not wait for a read: it points the entry at ep-1.
    wait_for("the cold start points the entry at ep-1", Duration::from_secs(30), || read(&entry).trim() == "ep-1").await;

    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let status: serde_json::Value = http.get(format!("http://{addr}/api/v1/services/site")).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["current"], "ep-1", "{status:#}");
    assert_eq!(status["reads_back"], false, "status tells that the live state cannot be read: {status:#}");
    assert!(status["live"].is_null(), "no guess at the live state: {status:#}");

    primary.abort();
    wait_for("failover to ep-2", Duration::from_secs(30), || read(&entry).trim() == "ep-2").await;
    // Several reconcile intervals pass: none of them runs init again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(read(&init_runs).lines().count(), 1, "init is run once, at start");
}
