//! A node out of file descriptors learns nothing about its entry points: its checks abstain
//! instead of voting them down. Its own test binary, since it exhausts the process's descriptors.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use dhaf_core::config::Config;
use dhaf_core::dcs::memory::MemoryDcs;
use dhaf_core::model::{EntryPoint, Health};
use dhaf_core::provider::{HealthChecker, Switcher};
use dhaf_core::testing::FakeProvider;
use tokio::net::TcpListener;

fn checker(settings: &str) -> Arc<dyn HealthChecker> {
    let yaml = format!(
        "dhaf: {{ cluster-name: c1, node-name: n1 }}\nservices:\n  - name: svc\n    domain: svc.test\n    entry-points: [ {{ name: ep-1, ip: 127.0.0.1 }} ]\n    switcher: {{ type: fake }}\n    health-checker: {{ {settings} }}\n"
    );
    let mut r = dhaf_providers::registry();
    r.switcher("fake", |_, _| Ok(Arc::new(FakeProvider::new(None).switcher("n1")) as Arc<dyn Switcher>));
    let providers = r.build(&Config::parse(&yaml).unwrap(), Arc::new(MemoryDcs::new("c1"))).unwrap();
    providers.services[0].checker.clone()
}

#[tokio::test]
async fn checks_abstain_while_the_node_is_out_of_file_descriptors() {
    // A real server that answers both checkers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            if let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
                });
            }
        }
    });
    let ep = EntryPoint { name: "ep-1".into(), ip: IpAddr::V4(Ipv4Addr::LOCALHOST) };
    let tcp = checker(&format!("type: tcp, port: {port}"));
    let web = checker(&format!("type: web, schema: http, port: {port}"));
    assert_eq!(tcp.check(&ep).await, Health::Healthy);
    assert_eq!(web.check(&ep).await, Health::Healthy);

    // Use up every descriptor the process may open.
    let mut held = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        held.push(f);
        assert!(held.len() < 1_000_000, "no descriptor limit to reach");
    }
    let (t, w) = (tcp.check(&ep).await, web.check(&ep).await);
    drop(held);
    for h in [&t, &w] {
        assert!(matches!(h, Health::Abstain { .. }), "a local shortage voted the entry point: {h:?}");
        assert!(h.reason().unwrap().contains("on this node"), "{h:?}");
    }
    assert_eq!(tcp.check(&ep).await, Health::Healthy);
}
