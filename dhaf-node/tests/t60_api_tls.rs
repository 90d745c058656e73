//! The REST API over TLS, with certificates made by the test: real HTTPS clients on loopback.
//! The right CA is trusted, a wrong one refused; plain HTTP gets a refusal, not the API; with
//! `client-ca` a client without a certificate from that CA is refused; a rotated certificate is
//! served to the next connection without a restart; unusable files are named by their key.

use std::time::{Duration, Instant};

use dhaf_node::ApiLimits;
use support::{https_client, start_node, write_pem, TestCa};

mod support;

fn limits() -> ApiLimits {
    ApiLimits { tls_reload_interval: Duration::from_millis(200), ..ApiLimits::default() }
}

/// A node whose API serves `server` (signed by some CA), with `extra` web-api lines.
fn site(dir: &std::path::Path, server: &support::Pem, extra: &str) -> std::path::PathBuf {
    let (cert, key) = write_pem(dir, "server", server);
    let api = format!("    host: 127.0.0.1\n    port: 0\n    tls:\n      cert: {}\n      key: {}\n{extra}", cert.display(), key.display());
    support::Site::tcp("tls", 1).api(&api).write(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_https_with_the_right_ca_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("dhaf test CA");
    let config = site(dir.path(), &ca.server(), "");
    let (addr, _, _stop) = start_node(&config, limits()).await;

    let resp = https_client(&ca.pem(), None).get(format!("https://127.0.0.1:{}/leader", addr.port())).send().await.expect("https works");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["node"], "node-1");
    let resp = https_client(&ca.pem(), None).get(format!("https://localhost:{}/healthz", addr.port())).send().await.expect("by name too");
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/json"));

    let stranger = TestCa::new("someone else's CA");
    let err = https_client(&stranger.pem(), None).get(format!("https://127.0.0.1:{}/leader", addr.port())).send().await;
    assert!(err.is_err(), "a certificate from an untrusted CA was accepted");

    // Plain HTTP reaches no route: a JSON refusal that says what to use, then the connection closes.
    let resp = reqwest::get(format!("http://127.0.0.1:{}/api/v1/status", addr.port())).await.expect("plain http gets an answer");
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "tls_required");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_mutual_tls_refuses_clients_without_a_certificate_from_the_client_ca() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = TestCa::new("server CA");
    let client_ca = TestCa::new("client CA");
    std::fs::write(dir.path().join("clients.pem"), client_ca.pem()).unwrap();
    let config = site(dir.path(), &server_ca.server(), &format!("      client-ca: {}", dir.path().join("clients.pem").display()));
    let (addr, _, _stop) = start_node(&config, limits()).await;
    let url = format!("https://127.0.0.1:{}/leader", addr.port());

    assert!(https_client(&server_ca.pem(), None).get(&url).send().await.is_err(), "no client certificate, yet served");
    let forged = TestCa::new("client CA").client("mallory");
    assert!(https_client(&server_ca.pem(), Some(&forged)).get(&url).send().await.is_err(), "a certificate of another CA was taken");
    let alice = client_ca.client("alice");
    let resp = https_client(&server_ca.pem(), Some(&alice)).get(&url).send().await.expect("a client certificate of the client CA works");
    assert!(resp.status() == 200 || resp.status() == 503, "{}", resp.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_a_rotated_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = TestCa::new("old CA");
    let config = site(dir.path(), &old_ca.server(), "");
    let (addr, _, _stop) = start_node(&config, limits()).await;
    let url = format!("https://127.0.0.1:{}/leader", addr.port());
    let new_ca = TestCa::new("new CA");
    assert!(https_client(&new_ca.pem(), None).get(&url).send().await.is_err());

    // A half-written file is not taken: the old certificate stays in force.
    std::fs::write(dir.path().join("server.pem"), "-----BEGIN CERTIFICATE-----\nMIIB").unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    https_client(&old_ca.pem(), None).get(&url).send().await.expect("the old certificate is still served");

    write_pem(dir.path(), "server", &new_ca.server());
    let start = Instant::now();
    loop {
        // A new client each time: a new connection, a new handshake.
        if https_client(&new_ca.pem(), None).get(&url).send().await.is_ok() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the rotated certificate was never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(https_client(&old_ca.pem(), None).get(&url).send().await.is_err(), "the old certificate is still served");
}

#[test]
fn t40_unusable_tls_files_are_named_by_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("dhaf test CA");
    let config = site(dir.path(), &ca.server(), "      client-ca: missing-ca.pem");
    let err = dhaf_node::prepare(&config, &dhaf_providers::registry()).err().expect("a missing client-ca is refused").to_string();
    assert!(err.contains("dhaf.web-api.tls.client-ca: cannot read"), "{err}");

    let config = site(dir.path(), &ca.server(), "");
    std::fs::write(dir.path().join("server.key"), "not a key").unwrap();
    let err = dhaf_node::prepare(&config, &dhaf_providers::registry()).err().expect("a bad key is refused").to_string();
    assert!(err.contains("dhaf.web-api.tls.key:"), "{err}");

    // A key that is not the certificate's.
    let other = ca.server();
    std::fs::write(dir.path().join("server.key"), other.key).unwrap();
    let err = dhaf_node::prepare(&config, &dhaf_providers::registry()).err().expect("a foreign key is refused").to_string();
    assert!(err.contains("dhaf.web-api.tls.key: does not fit the certificate"), "{err}");
}
