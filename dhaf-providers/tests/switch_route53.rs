//! The `route53` switcher against moto's Route 53 in server mode: SigV4-signed UPSERTs, read back
//! with ListResourceRecordSets, drift made behind dhaf's back repaired, the term record beside the
//! domain, credentials from a shared credentials file, clear errors for a missing zone and missing
//! credentials, and a running node failing over through it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dhaf_core::config::ConfigError;
use dhaf_core::model::FencingToken;
use dhaf_core::provider::{ProviderError, Switcher};

#[path = "support/common.rs"]
mod common;
#[path = "support/moto.rs"]
mod moto;
#[path = "support/switcher.rs"]
mod switcher_support;

use common::ep;
use moto::{Moto, ACCESS_KEY_ID, SECRET_ACCESS_KEY};

fn config() -> String {
    switcher_support::config("www.dhaf.test", &switcher_support::THREE, "route53")
}

const ZONE: &str = "dhaf.test";
const DOMAIN: &str = "www.dhaf.test";
const TERM_NAME: &str = "_dhaf.www.dhaf.test";

fn settings(moto: &Moto, zone: &str, extra: &str) -> String {
    format!(
        "      endpoint: {}\n      hosted-zone-id: {zone}\n      access-key-id: {ACCESS_KEY_ID}\n      secret-access-key: {SECRET_ACCESS_KEY}\n      ttl: 30\n{extra}",
        moto.endpoint()
    )
}

fn build_with(settings: &str) -> Result<Arc<dyn Switcher>, ConfigError> {
    switcher_support::build(&format!("{}{settings}", config()))
}

fn switcher(moto: &Moto, zone: &str, extra: &str) -> Arc<dyn Switcher> {
    build_with(&settings(moto, zone, extra)).expect("valid settings")
}

/// The text of an error, checked to hold no secret.
fn text(e: &ProviderError) -> String {
    common::checked_text(e, SECRET_ACCESS_KEY)
}

#[tokio::test]
async fn start_up_reads_only_and_switching_upserts_the_record_set_with_the_term_beside_it() {
    let moto = Moto::start();
    let zone = moto.create_zone(ZONE);
    let sw = switcher(&moto, &zone, "      wait-insync: true\n");
    sw.init().await.unwrap_or_else(|e| panic!("{e}\n{}", moto.log()));
    assert!(moto.values(&zone, DOMAIN, "A").is_empty());
    assert!(moto.values(&zone, TERM_NAME, "TXT").is_empty());
    assert_eq!(sw.current().await.unwrap(), None);

    sw.switch(&ep("ep-1", "192.0.2.1"), FencingToken(3)).await.unwrap_or_else(|e| panic!("{e}\n{}", moto.log()));
    assert_eq!(moto.values(&zone, DOMAIN, "A"), ["192.0.2.1"]);
    assert_eq!(moto.values(&zone, TERM_NAME, "TXT"), ["\"dhaf term-3\""]);
    assert_eq!(sw.current().await.unwrap().as_deref(), Some("ep-1"));

    sw.switch(&ep("ep-2", "192.0.2.2"), FencingToken(4)).await.unwrap();
    assert_eq!(moto.values(&zone, DOMAIN, "A"), ["192.0.2.2"]);
    assert_eq!(moto.values(&zone, TERM_NAME, "TXT"), ["\"dhaf term-4\""]);
    assert_eq!(sw.current().await.unwrap().as_deref(), Some("ep-2"));

    // Moving to an IPv6 entry point removes the A record set: one address, one entry point.
    sw.switch(&ep("ep-6", "2001:db8::6"), FencingToken(4)).await.unwrap();
    assert!(moto.values(&zone, DOMAIN, "A").is_empty());
    assert_eq!(moto.values(&zone, DOMAIN, "AAAA"), ["2001:db8::6"]);
    assert_eq!(sw.current().await.unwrap().as_deref(), Some("ep-6"));
    sw.switch(&ep("ep-1", "192.0.2.1"), FencingToken(5)).await.unwrap();
    assert!(moto.values(&zone, DOMAIN, "AAAA").is_empty());
    assert_eq!(moto.values(&zone, DOMAIN, "A"), ["192.0.2.1"]);
}

#[tokio::test]
async fn drift_shows_in_current_and_the_next_switch_repairs_it_and_a_newer_term_is_kept() {
    let moto = Moto::start();
    let zone = moto.create_zone(ZONE);
    let sw = switcher(&moto, &zone, "");
    sw.init().await.unwrap();
    sw.switch(&ep("ep-1", "192.0.2.1"), FencingToken(7)).await.unwrap();

    // Pointed at an address that is no entry point.
    moto.change(&zone, &[("UPSERT", DOMAIN, "A", &["203.0.113.99"])]);
    assert_eq!(sw.current().await.unwrap(), None);
    sw.switch(&ep("ep-1", "192.0.2.1"), FencingToken(7)).await.unwrap();
    assert_eq!(moto.values(&zone, DOMAIN, "A"), ["192.0.2.1"]);

    // A second address beside the right one spreads visitors: that is no entry point either.
    moto.change(&zone, &[("UPSERT", DOMAIN, "A", &["192.0.2.1", "192.0.2.2"])]);
    assert_eq!(sw.current().await.unwrap(), None);
    sw.switch(&ep("ep-1", "192.0.2.1"), FencingToken(7)).await.unwrap();
    assert_eq!(moto.values(&zone, DOMAIN, "A"), ["192.0.2.1"]);

    // A newer leader (term 9) moved the service meanwhile: never overwritten.
    moto.change(&zone, &[("UPSERT", DOMAIN, "A", &["192.0.2.2"]), ("UPSERT", TERM_NAME, "TXT", &["\"dhaf term-9\""])]);
    let err = sw.switch(&ep("ep-1", "192.0.2.1"), FencingToken(7)).await.unwrap_err();
    assert!(matches!(err, ProviderError::Permanent(_)), "{err:?}");
    assert!(text(&err).contains("term-9"), "{err}");
    assert_eq!(moto.values(&zone, DOMAIN, "A"), ["192.0.2.2"]);
}

#[tokio::test]
async fn credentials_come_from_a_profile_and_a_missing_zone_or_credentials_are_clear_errors() {
    let moto = Moto::start();
    let zone = moto.create_zone(ZONE);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("credentials");
    std::fs::write(&file, format!("[default]\naws_access_key_id = AKIAOTHER\naws_secret_access_key = other\n[dhaf]\naws_access_key_id = {ACCESS_KEY_ID}\naws_secret_access_key = {SECRET_ACCESS_KEY}\n")).unwrap();
    let from_profile = format!(
        "      endpoint: {}\n      hosted-zone-id: {zone}\n      credentials-file: {}\n      profile: dhaf\n",
        moto.endpoint(),
        file.display()
    );
    let sw = build_with(&from_profile).unwrap();
    sw.init().await.unwrap();
    sw.switch(&ep("ep-2", "192.0.2.2"), FencingToken(1)).await.unwrap();
    assert_eq!(moto.values(&zone, DOMAIN, "A"), ["192.0.2.2"]);

    let missing_profile = build_with(&from_profile.replace("profile: dhaf", "profile: nope")).unwrap();
    let err = missing_profile.init().await.unwrap_err();
    assert!(matches!(err, ProviderError::Permanent(_)), "{err:?}");
    assert!(text(&err).contains("no profile 'nope'"), "{err}");

    let missing_zone = switcher(&moto, "ZNOSUCHZONE0001", "");
    let err = missing_zone.init().await.unwrap_err();
    assert!(matches!(err, ProviderError::Permanent(_)), "{err:?}");
    let t = text(&err);
    assert!(t.contains("NoSuchHostedZone") && t.contains("ZNOSUCHZONE0001") && t.contains("hosted-zone-id"), "{t}");

    // A zone that does not hold the service's domain.
    let other = moto.create_zone("other.test");
    let err = switcher(&moto, &other, "").init().await.unwrap_err();
    assert!(text(&err).contains("not in hosted zone"), "{err}");

    // Nowhere to connect: transient.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err = build_with(&settings(&moto, &zone, "").replace(&moto.endpoint(), &format!("http://127.0.0.1:{closed}")))
        .unwrap()
        .init()
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Transient { .. }), "{err:?}");
}

/// moto checking credentials as AWS does: an unknown access key and a wrong secret are refused
/// with a clear, permanent error that names the key id, never the secret. (moto 5 checks the
/// signature of a Route 53 GET over the request's headers instead of its empty body, so a right
/// signature cannot be shown here; the unit tests check dhaf's signatures against botocore's.)
#[tokio::test]
async fn wrong_credentials_are_a_clear_permanent_error() {
    let (moto, id, secret, zone) = Moto::start_checking_signatures(ZONE);
    let with = |id: &str, secret: &str| {
        let s = format!(
            "      endpoint: {}\n      hosted-zone-id: {zone}\n      access-key-id: {id}\n      secret-access-key: \"{secret}\"\n",
            moto.endpoint()
        );
        build_with(&s).expect("valid settings")
    };
    for (key, wrong, code) in
        [("AKIAUNKNOWNKEY000001", secret.as_str(), "InvalidClientTokenId"), (id.as_str(), SECRET_ACCESS_KEY, "SignatureDoesNotMatch")]
    {
        let err = with(key, wrong).init().await.unwrap_err();
        assert!(matches!(err, ProviderError::Permanent(_)), "{err:?}");
        let t = err.to_string();
        assert!(t.contains("refused the credentials") && t.contains(key) && t.contains(code), "{t}");
        assert!(!t.contains(wrong) && !format!("{err:?}").contains(wrong), "a secret leaked: {t}");
    }
}

#[test]
fn bad_settings_are_named_by_key_path() {
    let err = build_with("      hosted-zone-id: \"not a zone\"\n      access-key-id: AKIA1\n      endpoint: ftp://x\n      ttl: 0\n")
        .err()
        .expect("bad settings");
    let t = err.to_string();
    for key in ["switcher.hosted-zone-id", "switcher.secret-access-key", "switcher.endpoint", "switcher.ttl"] {
        assert!(t.contains(key), "{key} missing in: {t}");
    }
    let err = build_with(&format!("      hosted-zone-id: Z1\n      secret-access-key: {SECRET_ACCESS_KEY}\n")).err().expect("bad settings");
    let t = err.to_string();
    assert!(t.contains("switcher.access-key-id") && !t.contains(SECRET_ACCESS_KEY), "{t}");
    let err = build_with("      ttl: 30\n").err().expect("no zone id");
    assert!(err.to_string().contains("switcher.hosted-zone-id"), "{err}");
}

#[tokio::test]
async fn a_running_node_repairs_drift_and_fails_over_through_route53() {
    let moto = Moto::start();
    let zone = moto.create_zone(ZONE);
    moto.change(&zone, &[("CREATE", DOMAIN, "A", &["192.0.2.1"])]);
    let yaml = format!(
        "{}{}",
        config().replace("  node-name: n1\n", "  node-name: n1\n  tact-interval: 1\n  reconcile-interval: 1\n"),
        settings(&moto, &zone, "")
    );
    let node = switcher_support::RunningNode::start(&yaml);
    let checker = &node.checker;

    let wait_for = |what: &'static str, want: Vec<&'static str>| {
        let moto = &moto;
        let zone = zone.clone();
        async move {
            let start = Instant::now();
            loop {
                if moto.values(&zone, DOMAIN, "A") == want {
                    return;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "{what}: not within 60 s; A shows {:?}",
                    moto.values(&zone, DOMAIN, "A")
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };

    tokio::time::sleep(Duration::from_secs(2)).await;
    moto.change(&zone, &[("UPSERT", DOMAIN, "A", &["203.0.113.99"])]);
    wait_for("drift repaired", vec!["192.0.2.1"]).await;
    let term = moto.values(&zone, TERM_NAME, "TXT");
    assert!(term.len() == 1 && term[0].starts_with("\"dhaf term-"), "{term:?}");

    checker.down("ep-1", "connection refused");
    wait_for("failover to ep-2", vec!["192.0.2.2"]).await;

    node.stop().await;
}
