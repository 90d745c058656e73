//! How the etcd DCS connects: lazily, with user and password, over TLS with a client
//! certificate, and again after etcd was unreachable.

mod support;

use std::time::{Duration, Instant};

use dhaf_core::config::Config;
use dhaf_core::dcs::{Dcs, DcsError};
use dhaf_providers::etcd::{dcs_from_config, EtcdConfig, EtcdDcs, EtcdTls};
use support::etcd::{EtcdCluster, TlsFiles};

fn plain(hosts: Vec<String>) -> EtcdConfig {
    EtcdConfig::new(hosts)
}

/// Nothing listens on port 1 of the loopback address.
const NOWHERE: &str = "http://127.0.0.1:1";

#[tokio::test]
async fn building_does_no_io_and_an_unreachable_etcd_is_unavailable() {
    let dcs = EtcdDcs::new(&plain(vec![NOWHERE.into(), "http://127.0.0.1:2".into()]), "c1");
    let start = Instant::now();
    let err = dcs.snapshot().await.expect_err("nothing listens there");
    assert!(matches!(err, DcsError::Unavailable(_)), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(10), "a refused connection fails fast, took {:?}", start.elapsed());
    assert!(matches!(dcs.keep_alive(7).await, Err(DcsError::Unavailable(_))));
}

#[tokio::test]
async fn the_config_chooses_the_dcs() {
    let yaml = |etcd: &str| {
        format!(
            "dhaf:\n  cluster-name: c1\n  node-name: n1\n{etcd}services:\n  - name: s\n    domain: s.example.com\n    \
             entry-points:\n      - name: a\n        ip: 10.0.0.1\n    switcher:\n      type: x\n    health-checker:\n      type: y\n"
        )
    };
    // With etcd configured the DCS is etcd, unreachable here: it must not have connected while
    // being built, and it must answer Unavailable now.
    let config = Config::parse(&yaml("etcd:\n  hosts: 127.0.0.1:1\n")).unwrap();
    let dcs = dcs_from_config(&config).expect("built without connecting");
    assert!(matches!(dcs.snapshot().await, Err(DcsError::Unavailable(_))));
    // Without, the embedded DCS: works at once.
    let config = Config::parse(&yaml("")).unwrap();
    let dcs = dcs_from_config(&config).unwrap();
    dcs.register("n1", Duration::from_secs(5)).await.unwrap();
    assert!(dcs.snapshot().await.unwrap().alive.contains("n1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_etcd_was_down_and_moves_past_a_dead_member() {
    let mut etcd = EtcdCluster::start().await;
    // The first host is dead from the start: calls go on to the next.
    let mut hosts = vec![NOWHERE.to_string()];
    hosts.extend(etcd.endpoints());
    let dcs = EtcdDcs::new(&plain(hosts), "c1");
    dcs.kv_put("ns", "k", "v1").await.expect("a live member answers");

    for i in 0..3 {
        etcd.kill(i);
    }
    let err = dcs.kv_get("ns", "k").await.expect_err("etcd is down");
    assert!(matches!(err, DcsError::Unavailable(_)), "{err:?}");

    for i in 0..3 {
        etcd.restart(i);
    }
    etcd.wait_healthy().await;
    assert_eq!(dcs.kv_get("ns", "k").await.expect("reconnected").as_deref(), Some("v1"));
    dcs.kv_put("ns", "k", "v2").await.unwrap();
    assert_eq!(dcs.kv_get("ns", "k").await.unwrap().as_deref(), Some("v2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticates_with_user_and_password() {
    let etcd = EtcdCluster::start().await;
    let mut admin = etcd.admin().await;
    admin.user_add("root", "root-secret-pw", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.user_add("dhaf", "dhaf-secret-pw", None).await.unwrap();
    admin.role_add("dhaf").await.unwrap();
    admin.role_grant_permission("dhaf", etcd_client::Permission::read_write("/c1/").with_prefix()).await.unwrap();
    admin.user_grant_role("dhaf", "dhaf").await.unwrap();
    admin.auth_enable().await.unwrap();

    let with = |user: Option<&str>, password: Option<&str>| {
        let mut c = EtcdConfig::new(etcd.endpoints());
        c.username = user.map(str::to_string);
        c.password = password.map(str::to_string);
        c
    };
    let dcs = EtcdDcs::new(&with(Some("dhaf"), Some("dhaf-secret-pw")), "c1");
    let lease = dcs.register("n1", Duration::from_secs(5)).await.expect("an authenticated node registers");
    dcs.keep_alive(lease).await.unwrap();
    assert!(dcs.campaign("n1", lease).await.unwrap().is_some());
    assert!(dcs.snapshot().await.unwrap().alive.contains("n1"));
    assert!(!format!("{dcs:?}").contains("dhaf-secret-pw"), "the password stays out of Debug output");

    let wrong = EtcdDcs::new(&with(Some("dhaf"), Some("not-the-password")), "c1");
    let err = wrong.snapshot().await.expect_err("a wrong password is refused").to_string();
    assert!(!err.contains("not-the-password"), "the password stays out of errors: {err}");
    let anonymous = EtcdDcs::new(&with(None, None), "c1");
    assert!(anonymous.snapshot().await.is_err(), "etcd refuses an anonymous client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speaks_tls_with_a_client_certificate() {
    let certs = std::env::temp_dir().join(format!("dhaf-etcd-certs-{}", std::process::id()));
    let files = TlsFiles::generate(&certs);
    let etcd = EtcdCluster::start_tls(files.clone()).await;
    // Hosts as an operator writes them, without a scheme: TLS is implied by `etcd.tls`.
    let hosts: Vec<String> = etcd.endpoints().iter().map(|e| e.replace("https://", "http://")).collect();
    let tls = |cert: bool| EtcdTls {
        ca: Some(files.ca.clone()),
        cert: cert.then(|| files.client_cert.clone()),
        key: cert.then(|| files.client_key.clone()),
    };
    let dcs = EtcdDcs::new(
        &{
            let mut c = EtcdConfig::new(hosts.clone());
            c.tls = Some(tls(true));
            c
        },
        "c1",
    );
    dcs.kv_put("ns", "k", "over tls").await.expect("TLS with a client certificate");
    assert_eq!(dcs.kv_get("ns", "k").await.unwrap().as_deref(), Some("over tls"));

    let no_cert = EtcdDcs::new(
        &{
            let mut c = EtcdConfig::new(hosts.clone());
            c.tls = Some(tls(false));
            c
        },
        "c1",
    );
    assert!(no_cert.kv_get("ns", "k").await.is_err(), "etcd requires a client certificate");
    let no_tls = EtcdDcs::new(&plain(hosts), "c1");
    assert!(no_tls.kv_get("ns", "k").await.is_err(), "etcd speaks only TLS");
    let _ = std::fs::remove_dir_all(&certs);
}
