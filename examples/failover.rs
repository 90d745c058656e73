//! A real failover you can watch: two local HTTP backends, one dhaf node on the embedded DCS,
//! the built-in `web` health checker and `exec` switcher, and a timeline of what happens when
//! the primary dies and comes back.
//!
//! ```text
//! cargo xtask demo        # or: cargo run --example failover
//! ```
//!
//! The backends listen on 127.0.0.1 and 127.0.0.2 (same port); the "public entry" is a file that
//! the `exec` switcher's script rewrites, as a script would rewrite a load balancer's config. The
//! example also shows embedding: it registers its own notifier (`timeline`) next to the built-ins
//! and names it in the YAML like any other provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dhaf::core::async_trait;
use dhaf::core::config::Config;
use dhaf::core::model::{Event, Notification};
use dhaf::core::provider::{Notifier, ProviderError};
use dhaf::core::runtime::Node;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Prints every event with the time since the demo started.
struct Timeline {
    start: Instant,
}

#[async_trait]
impl Notifier for Timeline {
    async fn notify(&self, n: &Notification) -> Result<(), ProviderError> {
        let t = self.start.elapsed().as_secs_f64();
        let marker = match n.event {
            Event::Switched { .. } => ">>",
            Event::EntryPointWentDown { .. } | Event::ServiceWentDown { .. } => "!!",
            _ => "  ",
        };
        println!("[{t:6.2} s] {marker} {}", n.event.summary());
        if let Event::EntryPointWentDown { reasons, .. } = &n.event {
            for r in reasons {
                println!("{:>13} {r}", "");
            }
        }
        Ok(())
    }
}

/// A tiny HTTP backend: `GET /health` answers 200 "ok".
async fn backend(listener: TcpListener, name: &'static str) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else { continue };
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let _ = sock.read(&mut buf).await;
            let body = format!("ok from {name}\n");
            let resp = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

/// Bind the same free port on 127.0.0.1 and 127.0.0.2.
async fn bind_pair() -> (TcpListener, TcpListener, u16) {
    for _ in 0..50 {
        let a = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
        let port = a.local_addr().unwrap().port();
        if let Ok(b) = TcpListener::bind(("127.0.0.2", port)).await {
            return (a, b, port);
        }
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2");
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    path
}

async fn wait_until_public_is(entry: &Path, ep: &str, limit: Duration) {
    let start = Instant::now();
    while std::fs::read_to_string(entry).unwrap_or_default().trim() != ep {
        assert!(start.elapsed() < limit, "the public entry did not reach {ep} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main]
async fn main() {
    let start = Instant::now();
    let dir = std::env::temp_dir().join(format!("dhaf-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let entry = dir.join("public-entry");
    std::fs::write(&entry, "ep-1\n").unwrap();
    let init = script(&dir, "init.sh", "exit 0");
    let current = script(&dir, "current.sh", &format!("cat '{}'", entry.display()));
    let switch = script(&dir, "switch.sh", &format!("echo \"$1\" > '{}'", entry.display()));

    let (a, b, port) = bind_pair().await;
    let mut primary: JoinHandle<()> = tokio::spawn(backend(a, "primary"));
    let _secondary = tokio::spawn(backend(b, "secondary"));
    println!("backends: ep-1 = 127.0.0.1:{port} (primary), ep-2 = 127.0.0.2:{port} (secondary)");

    let yaml = format!(
        r#"
dhaf:
  cluster-name: demo
  node-name: node-1
  tact-interval: 1
  heartbeat-interval: 1
  healthy-node-status-ttl: 5
services:
  - name: site
    domain: demo.local
    rise: 2
    fall: 2
    failback-delay: 3
    entry-points:
      - name: ep-1
        ip: 127.0.0.1
      - name: ep-2
        ip: 127.0.0.2
    health-checker:
      type: web
      schema: http
      port: {port}
      path: /health
      timeout: 1
      retries: 0
      expected-response-body: ok
    switcher:
      type: exec
      init: {init}
      switch: {switch}
      current: {current}
notifiers:
  - type: timeline
"#,
        init = init.display(),
        switch = switch.display(),
        current = current.display(),
    );
    let config = Config::parse(&yaml).expect("the demo config is valid");
    let mut registry = dhaf::providers::registry();
    registry.notifier("timeline", move |section, _| section.fields().into_result(Arc::new(Timeline { start }) as Arc<dyn Notifier>));
    let dcs = dhaf::providers::dcs_from_config(&config).expect("embedded dcs");
    let providers = registry.build(&config, dcs.clone()).expect("the demo providers build");
    let node = Node::new(config, dcs, providers);
    let handle = node.handle();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(node.run(async {
        let _ = stop_rx.await;
    }));

    // Let the node elect itself and learn both backends are healthy.
    let t0 = Instant::now();
    while !handle.is_leader() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!(
        "[{:6.2} s]    node-1 leads; public entry -> {}",
        start.elapsed().as_secs_f64(),
        std::fs::read_to_string(&entry).unwrap().trim()
    );
    let _ = t0;

    println!("[{:6.2} s] xx stopping the primary backend (connections now refused)", start.elapsed().as_secs_f64());
    primary.abort();
    let _ = (&mut primary).await;
    let killed = Instant::now();
    wait_until_public_is(&entry, "ep-2", Duration::from_secs(30)).await;
    let failover = killed.elapsed();

    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("[{:6.2} s] ++ starting the primary backend again", start.elapsed().as_secs_f64());
    let a = TcpListener::bind(("127.0.0.1", port)).await.expect("rebind the primary");
    let _primary = tokio::spawn(backend(a, "primary"));
    let revived = Instant::now();
    wait_until_public_is(&entry, "ep-1", Duration::from_secs(30)).await;
    let failback = revived.elapsed();

    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = handle.service_status("site").await.expect("status");
    println!();
    println!("failover: primary stopped -> public entry on ep-2 in {:.2} s (tact 1 s, fall 2)", failover.as_secs_f64());
    println!("failback: primary back    -> public entry on ep-1 in {:.2} s (rise 2, failback-delay 3 s)", failback.as_secs_f64());
    println!("now: {} -> {}", status.domain, status.current.as_deref().unwrap_or("?"));
    let _ = stop_tx.send(());
    running.await.expect("node task").expect("node ran");
    let _ = std::fs::remove_dir_all(&dir);
}
