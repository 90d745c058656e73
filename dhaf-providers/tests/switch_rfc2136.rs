//! The `rfc2136` switcher against a real Knot DNS server on 127.0.0.1: TSIG-signed updates, read
//! back by query, drift made with `knsupdate` repaired, the term record fencing a stale leader,
//! and wrong keys refused with a clear error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dhaf_core::config::{Config, ConfigError};
use dhaf_core::dcs::memory::MemoryDcs;
use dhaf_core::model::FencingToken;
use dhaf_core::provider::{ProviderError, Switcher};

#[path = "support/common.rs"]
mod common;
#[path = "support/knot.rs"]
mod knot;
#[path = "support/switcher.rs"]
mod switcher_support;

use common::ep;
use knot::{Knot, KEY_NAME, KEY_SECRET, READER_NAME, READER_SECRET, ZONE};

fn config() -> String {
    switcher_support::config("www.dhaf.test", &switcher_support::THREE, "rfc2136")
}

/// Held shared by every test, and alone by the one that captures logs: a log line another test
/// thread reaches first, while the capture is being set up, would otherwise be missed.
static LOGS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

const DOMAIN: &str = "www.dhaf.test";
const TERM_NAME: &str = "_dhaf.www.dhaf.test";

fn build_with(settings: &str) -> Result<Arc<dyn Switcher>, ConfigError> {
    switcher_support::build(&format!("{}{settings}", config()))
}

fn settings(knot: &Knot, key: &str, secret: &str, extra: &str) -> String {
    format!("      server: {}\n      zone: {ZONE}\n      key-name: {key}\n      secret: {secret}\n      ttl: 30\n{extra}", knot.server())
}

fn switcher(knot: &Knot, extra: &str) -> Arc<dyn Switcher> {
    build_with(&settings(knot, KEY_NAME, KEY_SECRET, extra)).expect("valid settings")
}

/// The text of an error, checked to hold no secret.
fn text(e: &ProviderError) -> String {
    for secret in [KEY_SECRET, READER_SECRET, "d3Jvbmctc2VjcmV0LW9mLWEta2V5LXRoYXQtaXMtd3Jvbmc="] {
        common::checked_text(e, secret);
    }
    e.to_string()
}

#[tokio::test]
async fn start_up_reads_only_and_switching_replaces_the_record_set_with_the_term_beside_it() {
    let _shared = LOGS.read().await;
    let knot = Knot::start();
    for transport in ["udp", "tcp"] {
        let sw = switcher(&knot, &format!("      transport: {transport}\n"));
        sw.init().await.unwrap_or_else(|e| panic!("{transport}: {e}\n{}", knot.log()));
        // Start-up wrote nothing: there is no record until the leader switches.
        assert!(knot.dig("A", DOMAIN).is_empty(), "{transport}");
        assert!(knot.dig("TXT", TERM_NAME).is_empty(), "{transport}");
        assert_eq!(sw.current().await.unwrap(), None);
    }
    let sw = switcher(&knot, "");

    sw.switch(&ep("ep-1", "192.0.2.1"), FencingToken(3)).await.unwrap();
    assert_eq!(knot.dig("A", DOMAIN), ["192.0.2.1"]);
    assert_eq!(knot.dig("TXT", TERM_NAME), ["\"dhaf term-3\""]);
    assert_eq!(sw.current().await.unwrap().as_deref(), Some("ep-1"));

    let tcp = switcher(&knot, "      transport: tcp\n");
    tcp.switch(&ep("ep-2", "192.0.2.2"), FencingToken(4)).await.unwrap();
    assert_eq!(knot.dig("A", DOMAIN), ["192.0.2.2"]);
    assert_eq!(knot.dig("TXT", TERM_NAME), ["\"dhaf term-4\""]);
    assert_eq!(sw.current().await.unwrap().as_deref(), Some("ep-2"));

    // Moving to an IPv6 entry point removes the A record set: one address, one entry point.
    sw.switch(&ep("ep-6", "2001:db8::6"), FencingToken(4)).await.unwrap();
    assert!(knot.dig("A", DOMAIN).is_empty());
    assert_eq!(knot.dig("AAAA", DOMAIN), ["2001:db8::6"]);
    assert_eq!(sw.current().await.unwrap().as_deref(), Some("ep-6"));
    sw.switch(&ep("ep-1", "192.0.2.1"), FencingToken(5)).await.unwrap();
    assert!(knot.dig("AAAA", DOMAIN).is_empty());
    assert_eq!(knot.dig("A", DOMAIN), ["192.0.2.1"]);
}

#[tokio::test]
async fn drift_made_with_knsupdate_shows_in_current_and_the_next_switch_repairs_it() {
    let _shared = LOGS.read().await;
    let knot = Knot::start();
    let sw = switcher(&knot, "");
    sw.init().await.unwrap();
    sw.switch(&ep("ep-1", "192.0.2.1"), FencingToken(7)).await.unwrap();

    // Pointed at an address that is no entry point.
    knot.nsupdate(&format!("update delete {DOMAIN}. A\nupdate add {DOMAIN}. 60 A 203.0.113.99"));
    assert_eq!(knot.dig("A", DOMAIN), ["203.0.113.99"]);
    assert_eq!(sw.current().await.unwrap(), None);
    sw.switch(&ep("ep-1", "192.0.2.1"), FencingToken(7)).await.unwrap();
    assert_eq!(knot.dig("A", DOMAIN), ["192.0.2.1"]);

    // A second address beside the right one spreads visitors: that is no entry point either.
    knot.nsupdate(&format!("update add {DOMAIN}. 60 A 192.0.2.2"));
    assert_eq!(knot.dig("A", DOMAIN), ["192.0.2.1", "192.0.2.2"]);
    assert_eq!(sw.current().await.unwrap(), None);
    sw.switch(&ep("ep-1", "192.0.2.1"), FencingToken(7)).await.unwrap();
    assert_eq!(knot.dig("A", DOMAIN), ["192.0.2.1"]);

    // Deleted by hand: "none", and the switch writes it again.
    knot.nsupdate(&format!("update delete {DOMAIN}. A"));
    assert_eq!(sw.current().await.unwrap(), None);
    sw.switch(&ep("ep-1", "192.0.2.1"), FencingToken(7)).await.unwrap();
    assert_eq!(sw.current().await.unwrap().as_deref(), Some("ep-1"));
}

#[tokio::test]
async fn a_record_a_newer_term_wrote_is_never_overwritten() {
    let _shared = LOGS.read().await;
    let knot = Knot::start();
    let sw = switcher(&knot, "");
    sw.switch(&ep("ep-1", "192.0.2.1"), FencingToken(5)).await.unwrap();
    // A newer leader (term 9) moved the service meanwhile.
    knot.nsupdate(&format!(
        "update delete {DOMAIN}. A\nupdate add {DOMAIN}. 60 A 192.0.2.2\nupdate delete {TERM_NAME}. TXT\nupdate add {TERM_NAME}. 60 TXT \"dhaf term-9\""
    ));
    let err = sw.switch(&ep("ep-1", "192.0.2.1"), FencingToken(5)).await.unwrap_err();
    assert!(matches!(err, ProviderError::Permanent(_)), "{err:?}");
    assert!(text(&err).contains("term-9"), "{err}");
    assert_eq!(knot.dig("A", DOMAIN), ["192.0.2.2"]);
    // The newer term itself may write.
    sw.switch(&ep("ep-1", "192.0.2.1"), FencingToken(9)).await.unwrap();
    assert_eq!(knot.dig("TXT", TERM_NAME), ["\"dhaf term-9\""]);
}

#[tokio::test]
async fn wrong_keys_are_refused_at_start_with_what_to_fix() {
    let _shared = LOGS.read().await;
    let knot = Knot::start();
    let wrong = "d3Jvbmctc2VjcmV0LW9mLWEta2V5LXRoYXQtaXMtd3Jvbmc=";
    let cases: [(&str, &str, &str); 3] =
        [(KEY_NAME, wrong, "BADSIG"), ("no-such-key", KEY_SECRET, "BADKEY"), (READER_NAME, READER_SECRET, "may not update")];
    for (key, secret, want) in cases {
        let sw = build_with(&settings(&knot, key, secret, "")).unwrap();
        let err = sw.init().await.unwrap_err();
        assert!(matches!(err, ProviderError::Permanent(_)), "{key}: {err:?}");
        let t = text(&err);
        assert!(t.contains(want) && t.contains(key), "{key}: {t}");
        let err = sw.switch(&ep("ep-1", "192.0.2.1"), FencingToken(1)).await.unwrap_err();
        assert!(matches!(err, ProviderError::Permanent(_)), "{key}: {err:?}");
        text(&err);
    }
    // Nothing was written with any of them.
    assert!(knot.dig("A", DOMAIN).is_empty());
}

#[tokio::test]
async fn a_silent_server_times_out_as_a_transient_failure() {
    let _shared = LOGS.read().await;
    // A UDP socket that never answers.
    let mute = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let settings = format!(
        "      server: {}\n      zone: {ZONE}\n      key-name: {KEY_NAME}\n      secret: {KEY_SECRET}\n      timeout: 1\n",
        mute.local_addr().unwrap()
    );
    let sw = build_with(&settings).unwrap();
    let start = Instant::now();
    let err = sw.current().await.unwrap_err();
    assert!(matches!(err, ProviderError::Transient { .. }), "{err:?}");
    assert!(text(&err).contains("no answer"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn the_secret_stays_out_of_debug_output_and_logs() {
    let _alone = LOGS.write().await;
    let (captured, _guard) = common::Captured::start(tracing::Level::TRACE);
    // Other tests in this binary may have run the same log lines first, without a subscriber.
    tracing::callsite::rebuild_interest_cache();

    let knot = Knot::start();
    let sw = switcher(&knot, "");
    sw.init().await.unwrap();
    sw.switch(&ep("ep-2", "192.0.2.2"), FencingToken(2)).await.unwrap();
    sw.current().await.unwrap();

    let config = Config::parse_with_env(&format!("{}{}", config(), settings(&knot, KEY_NAME, KEY_SECRET, "")), &|_| None).unwrap();
    assert!(format!("{config:?}").contains("rfc2136"));
    let debug = format!(
        "{:?}",
        dhaf_providers::switch::rfc2136::Rfc2136Switcher::from_config(
            &config.services[0].switcher,
            &dhaf_core::provider::BuildContext {
                cluster: "c1".into(),
                node: "n1".into(),
                service: Some(config.services[0].clone()),
                store: dhaf_core::provider::ProviderStore::new(Arc::new(MemoryDcs::new("c1")), "t"),
                base_dir: ".".into(),
            },
        )
        .unwrap()
    );
    assert!(debug.contains("dhaf-key") && !debug.contains(KEY_SECRET), "{debug}");

    let logs = captured.text();
    assert!(logs.contains("rfc2136 switcher ready"), "the capture works: {logs}");
    assert!(!logs.contains(KEY_SECRET), "the secret was logged:\n{logs}");
}

#[tokio::test]
async fn bad_settings_are_config_errors_with_their_key_path() {
    let _shared = LOGS.read().await;
    let Err(err) = build_with(
        "      server: ''\n      zone: other.test\n      key-name: k\n      secret: not-base64!\n      algorithm: hmac-md5\n      transport: quic\n      tll: 5\n",
    ) else {
        panic!("must not build")
    };
    let text: Vec<String> = err.problems.iter().map(ToString::to_string).collect();
    for want in [
        "services[0].switcher.server: must be host:port",
        "services[0].switcher.zone: the service's domain www.dhaf.test is not in zone other.test",
        "services[0].switcher.secret: must be the key's secret in base64",
        "services[0].switcher.algorithm: 'hmac-md5' is not one of hmac-sha256, hmac-sha384, hmac-sha512",
        "services[0].switcher.transport: 'quic' is not udp or tcp",
        "services[0].switcher.tll: unknown key",
    ] {
        assert!(text.iter().any(|t| t.starts_with(want)), "missing {want:?} in {text:#?}");
    }
    assert!(text.iter().all(|t| !t.contains("not-base64")), "the secret was echoed: {text:#?}");
}

#[tokio::test]
async fn a_running_node_repairs_drift_and_fails_over_through_the_dns_server() {
    let _shared = LOGS.read().await;
    let knot = Knot::start();
    knot.nsupdate(&format!("update add {DOMAIN}. 60 A 192.0.2.1"));
    let yaml = format!(
        "{}{}",
        config().replace("  node-name: n1\n", "  node-name: n1\n  tact-interval: 1\n  reconcile-interval: 1\n"),
        settings(&knot, KEY_NAME, KEY_SECRET, "")
    );
    let node = switcher_support::RunningNode::start(&yaml);
    let checker = &node.checker;

    let wait_for = |what: &'static str, rtype: &'static str, want: Vec<&'static str>| {
        let knot = &knot;
        async move {
            let start = Instant::now();
            loop {
                if knot.dig(rtype, DOMAIN) == want {
                    return;
                }
                assert!(start.elapsed() < Duration::from_secs(60), "{what}: not within 60 s; {rtype} shows {:?}", knot.dig(rtype, DOMAIN));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };

    // Someone points the record elsewhere by hand: the periodic read-back repairs it, and the
    // repair writes the leader's term beside it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    knot.nsupdate(&format!("update delete {DOMAIN}. A\nupdate add {DOMAIN}. 60 A 203.0.113.99"));
    wait_for("drift repaired", "A", vec!["192.0.2.1"]).await;
    let term = knot.dig("TXT", TERM_NAME);
    assert!(term.len() == 1 && term[0].starts_with("\"dhaf term-"), "{term:?}");

    // The first entry point goes down: the record follows to the next one.
    checker.down("ep-1", "connection refused");
    wait_for("failover to ep-2", "A", vec!["192.0.2.2"]).await;

    node.stop().await;
}
