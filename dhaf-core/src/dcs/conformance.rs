//! The [`Dcs`] conformance suite: what every implementation must do, checked the same way for
//! the in-memory DCS and for etcd.
//!
//! Each check takes a fresh handle to an empty cluster. Lease expiry is waited for on tokio's
//! clock, so the suite runs in paused time against [`super::memory::MemoryDcs`] and in real time
//! against etcd (whose shortest lease is about a second and a half).
//!
//! Some checks write values beneath the contract (garbage, a newer version's format), as a hand
//! edit would: each implementation hands the suite a [`RawPut`] for its store beside the DCS.
//!
//! ```ignore
//! #[tokio::test]
//! async fn conformance() {
//!     dhaf_core::dcs::conformance::run_all(|cluster| async move { (my_dcs(&cluster), my_raw_store(&cluster)) }).await;
//! }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Changes, Dcs, DcsError, Purge, Snapshot, SwitchoverRequest, Touched};
use crate::model::{FencingToken, Opinion, Pause, SwitchKind, SwitchRecord};

/// Writes beneath the [`Dcs`] contract, for tests: any value at any key, as a newer version of
/// dhaf or an operator's hand edit would leave it.
#[async_trait]
pub trait RawPut: Send + Sync {
    /// Put `value` at `key`, a key relative to the cluster's prefix (`records/web`), bound to no
    /// lease. Panics if the store refuses.
    async fn raw_put(&self, key: &str, value: &str);
}

type Check = fn(Arc<dyn Dcs>, Arc<dyn RawPut>) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

const TTL: Duration = Duration::from_secs(2);

/// Run every check, each against a fresh cluster from `make(cluster_name)`: the DCS and a raw
/// writer to the same store.
pub async fn run_all<F, Fut, D, R>(make: F)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = (D, R)>,
    D: Dcs + 'static,
    R: RawPut + 'static,
{
    let checks: Vec<(&str, Check)> = vec![
        ("presence", |d, _| Box::pin(presence(d))),
        ("election", |d, _| Box::pin(election(d))),
        ("lease_expiry", |d, _| Box::pin(lease_expiry(d))),
        ("keep_alive", |d, _| Box::pin(keep_alive(d))),
        ("revoke", |d, _| Box::pin(revoke(d))),
        ("withdraw_opinion", |d, _| Box::pin(withdraw_opinion(d))),
        ("definitions", |d, _| Box::pin(definitions(d))),
        ("fencing", |d, _| Box::pin(fencing(d))),
        ("switchover_and_maintenance", |d, _| Box::pin(switchover_and_maintenance(d))),
        ("purge_names_its_request", |d, _| Box::pin(purge_names_its_request(d))),
        ("pause", |d, r| Box::pin(pause(d, r))),
        ("decommission", |d, _| Box::pin(decommission(d))),
        ("provider_store", |d, _| Box::pin(provider_store(d))),
        ("fenced_provider_value", |d, _| Box::pin(fenced_provider_value(d))),
        ("watch", |d, _| Box::pin(watch(d))),
        ("watch_keeps_a_copy", |d, r| Box::pin(watch_keeps_a_copy(d, r))),
        ("unreadable_values", |d, r| Box::pin(unreadable_values(d, r))),
    ];
    let unique = std::process::id();
    for (name, check) in checks {
        let (dcs, raw) = make(format!("conf-{unique}-{name}")).await;
        tracing::info!(check = name, "dcs conformance");
        check(Arc::new(dcs), Arc::new(raw)).await;
    }
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    while !f().await {
        assert!(start.elapsed() < limit, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A registered node is alive and a member.
pub async fn presence(dcs: Arc<dyn Dcs>) {
    let snap = dcs.snapshot().await.unwrap();
    assert!(snap.alive.is_empty() && snap.members.is_empty() && snap.leader.is_none());
    dcs.register("n1", TTL).await.unwrap();
    dcs.register("n2", TTL).await.unwrap();
    let snap = dcs.snapshot().await.unwrap();
    assert_eq!(snap.alive.iter().collect::<Vec<_>>(), ["n1", "n2"]);
    assert_eq!(snap.members.iter().collect::<Vec<_>>(), ["n1", "n2"]);
}

/// One leader at a time; the winner keeps its token, others get none.
pub async fn election(dcs: Arc<dyn Dcs>) {
    let l1 = dcs.register("n1", TTL * 5).await.unwrap();
    let l2 = dcs.register("n2", TTL * 5).await.unwrap();
    let t1 = dcs.campaign("n1", l1).await.unwrap().expect("vacant leader key is taken");
    assert_eq!(dcs.campaign("n2", l2).await.unwrap(), None, "a second node must not lead");
    assert_eq!(dcs.campaign("n1", l1).await.unwrap(), Some(t1), "the leader keeps its term");
    let snap = dcs.snapshot().await.unwrap();
    assert_eq!(snap.leader.as_ref().map(|l| (l.node.as_str(), l.token)), Some(("n1", t1)));
    // The leader read alone is the snapshot's.
    assert_eq!(dcs.leader().await.unwrap(), snap.leader);
    dcs.resign(t1).await.unwrap();
    assert!(dcs.snapshot().await.unwrap().leader.is_none());
    assert_eq!(dcs.leader().await.unwrap(), None);
    let t2 = dcs.campaign("n2", l2).await.unwrap().expect("n2 takes the vacant key");
    assert!(t2 > t1, "terms grow: {t2} after {t1}");
    dcs.resign(t1).await.unwrap(); // a stale resign is a no-op
    assert_eq!(dcs.snapshot().await.unwrap().leader.map(|l| l.node), Some("n2".into()));
    assert_eq!(dcs.leader().await.unwrap().map(|l| (l.node, l.token)), Some(("n2".into(), t2)));
}

/// When a lease expires, presence, opinions and leadership vanish; membership stays.
pub async fn lease_expiry(dcs: Arc<dyn Dcs>) {
    let lease = dcs.register("n1", TTL).await.unwrap();
    dcs.campaign("n1", lease).await.unwrap().unwrap();
    dcs.publish_opinion("n1", lease, "svc", "ep1", &Opinion::unhealthy("refused")).await.unwrap();
    let snap = dcs.snapshot().await.unwrap();
    assert_eq!(snap.opinions["n1"]["svc"]["ep1"], Opinion::unhealthy("refused"));
    wait_until("the lease expires", TTL * 5, || {
        let dcs = dcs.clone();
        async move { dcs.snapshot().await.unwrap().alive.is_empty() }
    })
    .await;
    let snap = dcs.snapshot().await.unwrap();
    assert!(snap.leader.is_none(), "leadership must vanish with the lease");
    assert!(snap.opinions.is_empty(), "opinions must vanish with the lease");
    assert!(snap.members.contains("n1"), "membership stays until decommission");
    assert!(matches!(dcs.keep_alive(lease).await, Err(DcsError::LeaseExpired(_))));
    assert!(dcs.publish_opinion("n1", lease, "svc", "ep1", &Opinion::healthy()).await.is_err());
}

/// A node's published definitions replace its earlier ones and vanish with its lease; a revoked
/// lease cannot publish.
pub async fn definitions(dcs: Arc<dyn Dcs>) {
    let def = |f: &str| {
        let settings = [("name".to_string(), "svc".to_string()), ("rise".to_string(), f.to_string())].into();
        crate::model::ServiceDefinition { fingerprint: f.into(), settings }
    };
    let lease = dcs.register("n1", TTL * 4).await.unwrap();
    let other = dcs.register("n2", TTL * 4).await.unwrap();
    let first: std::collections::BTreeMap<String, _> = [("svc".to_string(), def("a1"))].into();
    dcs.publish_definitions("n1", lease, &first).await.unwrap();
    dcs.publish_definitions("n2", other, &first).await.unwrap();
    let second: std::collections::BTreeMap<String, _> = [("svc".to_string(), def("b2")), ("web".to_string(), def("c3"))].into();
    dcs.publish_definitions("n1", lease, &second).await.unwrap();
    let snap = dcs.snapshot().await.unwrap();
    assert_eq!(snap.definitions["n1"], second, "the newer definitions replace the older");
    assert_eq!(snap.definitions["n2"], first);
    dcs.revoke(lease).await.unwrap();
    let snap = dcs.snapshot().await.unwrap();
    assert_eq!(snap.definitions.keys().collect::<Vec<_>>(), ["n2"], "definitions vanish with the lease");
    assert!(dcs.publish_definitions("n1", lease, &first).await.is_err());
}

/// Renewing a lease keeps the node alive past its TTL.
pub async fn keep_alive(dcs: Arc<dyn Dcs>) {
    let lease = dcs.register("n1", TTL).await.unwrap();
    for _ in 0..6 {
        tokio::time::sleep(TTL / 3).await;
        dcs.keep_alive(lease).await.unwrap();
    }
    assert!(dcs.snapshot().await.unwrap().alive.contains("n1"));
}

/// Revoking a lease removes everything bound to it at once.
pub async fn revoke(dcs: Arc<dyn Dcs>) {
    let lease = dcs.register("n1", TTL * 10).await.unwrap();
    let other = dcs.register("n2", TTL * 10).await.unwrap();
    dcs.campaign("n1", lease).await.unwrap().unwrap();
    dcs.publish_opinion("n1", lease, "svc", "ep1", &Opinion::healthy()).await.unwrap();
    dcs.publish_opinion("n2", other, "svc", "ep1", &Opinion::healthy()).await.unwrap();
    dcs.revoke(lease).await.unwrap();
    let snap = dcs.snapshot().await.unwrap();
    assert_eq!(snap.alive.iter().collect::<Vec<_>>(), ["n2"]);
    assert!(snap.leader.is_none());
    assert_eq!(snap.opinions.keys().collect::<Vec<_>>(), ["n2"]);
}

/// A withdrawn opinion no longer counts; the node's other opinions do.
pub async fn withdraw_opinion(dcs: Arc<dyn Dcs>) {
    let lease = dcs.register("n1", TTL * 10).await.unwrap();
    dcs.publish_opinion("n1", lease, "svc", "ep1", &Opinion::healthy()).await.unwrap();
    dcs.publish_opinion("n1", lease, "svc", "ep2", &Opinion::healthy()).await.unwrap();
    dcs.withdraw_opinion("n1", "svc", "ep1").await.unwrap();
    let snap = dcs.snapshot().await.unwrap();
    assert_eq!(snap.opinions["n1"]["svc"].keys().collect::<Vec<_>>(), ["ep2"]);
    dcs.withdraw_opinion("n1", "svc", "ep1").await.expect("withdrawing what is gone is done");
    assert!(snap.alive.contains("n1"), "withdrawing an opinion keeps the node alive");
}

fn record(ep: &str, token: FencingToken) -> SwitchRecord {
    SwitchRecord {
        entry_point: ep.into(),
        kind: SwitchKind::Failover,
        token,
        node: "n1".into(),
        at: std::time::SystemTime::now(),
        requested_by: None,
        told_in: None,
    }
}

/// Only the current term may record a switch or purge a switchover as leader.
pub async fn fencing(dcs: Arc<dyn Dcs>) {
    let l1 = dcs.register("n1", TTL * 10).await.unwrap();
    let l2 = dcs.register("n2", TTL * 10).await.unwrap();
    let t1 = dcs.campaign("n1", l1).await.unwrap().unwrap();
    dcs.record_switch("svc", &record("ep2", t1)).await.unwrap();
    assert_eq!(dcs.snapshot().await.unwrap().records["svc"].entry_point, "ep2");
    dcs.revoke(l1).await.unwrap();
    let t2 = dcs.campaign("n2", l2).await.unwrap().unwrap();
    assert_eq!(dcs.record_switch("svc", &record("ep1", t1)).await, Err(DcsError::Fenced(t1)), "a deposed term must be refused");
    assert_eq!(dcs.snapshot().await.unwrap().records["svc"].entry_point, "ep2", "the refused write changed nothing");
    dcs.record_switch("svc", &record("ep3", t2)).await.unwrap();
    let snap = dcs.snapshot().await.unwrap();
    assert_eq!((snap.records["svc"].entry_point.as_str(), snap.records["svc"].token), ("ep3", t2));
    dcs.request_switchover("svc", "ep1").await.unwrap();
    let revision = dcs.snapshot().await.unwrap().switchovers["svc"].revision;
    assert_eq!(dcs.purge_switchover("svc", Purge::Fenced { token: t1, revision }).await, Err(DcsError::Fenced(t1)));
    assert!(dcs.snapshot().await.unwrap().switchovers.contains_key("svc"));
    dcs.purge_switchover("svc", Purge::Fenced { token: t2, revision }).await.unwrap();
    assert!(!dcs.snapshot().await.unwrap().switchovers.contains_key("svc"));
}

/// The leader's purge drops only the request it decided on: an operator's newer request that
/// landed meanwhile stays.
pub async fn purge_names_its_request(dcs: Arc<dyn Dcs>) {
    let lease = dcs.register("n1", TTL * 10).await.unwrap();
    let token = dcs.campaign("n1", lease).await.unwrap().unwrap();
    dcs.request_switchover("svc", "ep2").await.unwrap();
    let a = dcs.snapshot().await.unwrap().switchovers["svc"].clone();
    dcs.request_switchover("svc", "ep3").await.unwrap();
    let b = dcs.snapshot().await.unwrap().switchovers["svc"].clone();
    assert_ne!(a.revision, b.revision, "each request has its own revision");
    dcs.purge_switchover("svc", Purge::Fenced { token, revision: a.revision }).await.unwrap();
    assert_eq!(dcs.snapshot().await.unwrap().switchovers.get("svc"), Some(&b), "the newer request must survive the purge of the older");
    dcs.purge_switchover("svc", Purge::Fenced { token, revision: b.revision }).await.unwrap();
    assert!(dcs.snapshot().await.unwrap().switchovers.is_empty());
    // Purging a request that is gone is done already.
    dcs.purge_switchover("svc", Purge::Fenced { token, revision: b.revision }).await.unwrap();
}

/// Switchover requests and maintenance flags are stored and shown.
pub async fn switchover_and_maintenance(dcs: Arc<dyn Dcs>) {
    dcs.request_switchover("svc", "ep2").await.unwrap();
    dcs.request_switchover("svc", "ep3").await.unwrap();
    dcs.set_maintenance("svc", "ep1", true).await.unwrap();
    dcs.set_maintenance("svc", "ep1", true).await.unwrap();
    dcs.set_maintenance("other", "ep9", true).await.unwrap();
    let snap = dcs.snapshot().await.unwrap();
    assert_eq!(snap.switchovers["svc"].entry_point, "ep3", "a new request replaces the pending one");
    assert_eq!(snap.switchovers["svc"].by, None);
    let asked = SwitchoverRequest { by: Some("ops from 10.0.0.9:5000".into()), ..SwitchoverRequest::to("ep2") };
    dcs.put_switchover("svc", &asked).await.unwrap();
    let got = dcs.snapshot().await.unwrap().switchovers["svc"].clone();
    assert_eq!((got.entry_point.as_str(), got.by.as_deref()), ("ep2", Some("ops from 10.0.0.9:5000")), "who asked is kept");
    assert_eq!(snap.maintenance["svc"].iter().collect::<Vec<_>>(), ["ep1"]);
    dcs.purge_switchover("svc", Purge::Any).await.unwrap();
    dcs.set_maintenance("svc", "ep1", false).await.unwrap();
    let snap = dcs.snapshot().await.unwrap();
    assert!(snap.switchovers.is_empty());
    assert!(!snap.maintenance.contains_key("svc"));
    assert!(snap.maintenance["other"].contains("ep9"));
}

/// The cluster-wide pause is stored with who paused it and since when, outlives every lease,
/// is watched like the rest, and an unreadable one is named, not taken for "not paused" silently.
pub async fn pause(dcs: Arc<dyn Dcs>, raw: Arc<dyn RawPut>) {
    assert_eq!(dcs.snapshot().await.unwrap().paused, None);
    let lease = dcs.register("n1", TTL).await.unwrap();
    let mut w = dcs.watch().await.unwrap();
    let since = std::time::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
    let first = Pause { since, by: "ops-token from 10.0.0.9:5000".into() };
    dcs.set_pause(Some(&first)).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), w.changed()).await;
    assert_eq!(got, Ok(true), "a watch must signal a pause");
    assert_eq!(dcs.snapshot().await.unwrap().paused.as_ref(), Some(&first));
    let second = Pause { since: since + Duration::from_secs(60), by: "admin".into() };
    dcs.set_pause(Some(&second)).await.unwrap();
    assert_eq!(dcs.snapshot().await.unwrap().paused.as_ref(), Some(&second), "a new pause replaces the one in force");
    // Bound to no lease: the pause outlives the node that asked for it.
    dcs.revoke(lease).await.unwrap();
    assert_eq!(dcs.snapshot().await.unwrap().paused.as_ref(), Some(&second));
    dcs.set_pause(None).await.unwrap();
    assert_eq!(dcs.snapshot().await.unwrap().paused, None);
    dcs.set_pause(None).await.unwrap();
    // A flag that cannot be read still pauses (holding still is the safe side), and is named.
    raw.raw_put("paused", "yes please").await;
    let snap = dcs.snapshot().await.unwrap();
    assert!(snap.paused.is_some());
    assert!(snap.skipped.keys().any(|k| k.ends_with("/paused")), "{:?}", snap.skipped);
    dcs.set_pause(None).await.unwrap();
    assert_eq!(dcs.snapshot().await.unwrap().paused, None);
}

/// Only a dead member can be decommissioned.
pub async fn decommission(dcs: Arc<dyn Dcs>) {
    let lease = dcs.register("n1", TTL * 10).await.unwrap();
    assert_eq!(dcs.decommission("n1").await, Err(DcsError::NodeAlive("n1".into())));
    assert_eq!(dcs.decommission("ghost").await, Err(DcsError::UnknownNode("ghost".into())));
    dcs.revoke(lease).await.unwrap();
    dcs.decommission("n1").await.unwrap();
    assert!(dcs.snapshot().await.unwrap().members.is_empty());
}

/// Providers' namespaces are separate key-value stores.
pub async fn provider_store(dcs: Arc<dyn Dcs>) {
    dcs.kv_put("tg", "chat-2", "b").await.unwrap();
    dcs.kv_put("tg", "chat-1", "a").await.unwrap();
    dcs.kv_put("tg2", "chat-1", "other").await.unwrap();
    assert_eq!(dcs.kv_get("tg", "chat-1").await.unwrap().as_deref(), Some("a"));
    assert_eq!(dcs.kv_get("tg", "missing").await.unwrap(), None);
    assert_eq!(dcs.kv_list("tg").await.unwrap(), vec![("chat-1".into(), "a".into()), ("chat-2".into(), "b".into())]);
    dcs.kv_delete("tg", "chat-1").await.unwrap();
    assert_eq!(dcs.kv_list("tg").await.unwrap(), vec![("chat-2".into(), "b".into())]);
    assert_eq!(dcs.kv_list("tg2").await.unwrap().len(), 1);
}

/// A provider's value written as a compare-and-swap fenced by the leader's term: only while the
/// term leads, only over the value the writer read.
pub async fn fenced_provider_value(dcs: Arc<dyn Dcs>) {
    let l1 = dcs.register("n1", TTL * 10).await.unwrap();
    let l2 = dcs.register("n2", TTL * 10).await.unwrap();
    let t1 = dcs.campaign("n1", l1).await.unwrap().unwrap();
    assert_eq!(dcs.kv_put_if("h", "svc", "a", None, t1).await, Ok(true), "written where nothing was");
    assert_eq!(dcs.kv_put_if("h", "svc", "b", None, t1).await, Ok(false), "something is there now");
    assert_eq!(dcs.kv_put_if("h", "svc", "b", Some("x"), t1).await, Ok(false), "another value is there");
    assert_eq!(dcs.kv_get("h", "svc").await.unwrap().as_deref(), Some("a"), "a refused write changed nothing");
    assert_eq!(dcs.kv_put_if("h", "svc", "b", Some("a"), t1).await, Ok(true), "written over the value read");
    assert_eq!(dcs.kv_get("h", "svc").await.unwrap().as_deref(), Some("b"));
    // An empty value is a value: it is not the absence of one.
    assert_eq!(dcs.kv_put_if("h", "other", "z", Some(""), t1).await, Ok(false));
    assert_eq!(dcs.kv_get("h", "other").await.unwrap(), None);
    // A deposed term is refused whatever the value, the one it read included.
    dcs.revoke(l1).await.unwrap();
    let t2 = dcs.campaign("n2", l2).await.unwrap().unwrap();
    assert_eq!(dcs.kv_put_if("h", "svc", "c", Some("b"), t1).await, Err(DcsError::Fenced(t1)), "a deposed term must be refused");
    assert_eq!(dcs.kv_put_if("h", "svc", "c", Some("x"), t1).await, Err(DcsError::Fenced(t1)), "refused as deposed, not as changed");
    assert_eq!(dcs.kv_get("h", "svc").await.unwrap().as_deref(), Some("b"), "the refused write changed nothing");
    assert_eq!(dcs.kv_put_if("h", "svc", "c", Some("b"), t2).await, Ok(true), "the term that leads writes");
    // With nobody leading, no term leads.
    dcs.resign(t2).await.unwrap();
    assert_eq!(dcs.kv_put_if("h", "svc", "d", Some("c"), t2).await, Err(DcsError::Fenced(t2)));
    assert_eq!(dcs.kv_get("h", "svc").await.unwrap().as_deref(), Some("c"));
}

/// A watch signals changes made after it started.
pub async fn watch(dcs: Arc<dyn Dcs>) {
    let lease = dcs.register("n1", TTL * 10).await.unwrap();
    let mut w = dcs.watch().await.unwrap();
    dcs.publish_opinion("n1", lease, "svc", "ep1", &Opinion::healthy()).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), w.changed()).await;
    assert_eq!(got, Ok(true), "a watch must signal an opinion change");
}

/// A snapshot kept up to date from a watch's changes equals a fresh read, whatever changed
/// (presence, leadership, opinions, definitions, requests, maintenance, pause, records, values
/// that cannot be read, a lease revoked, a node decommissioned); a change the snapshot shows
/// already is skipped; a change tells which service it bears on.
pub async fn watch_keeps_a_copy(dcs: Arc<dyn Dcs>, raw: Arc<dyn RawPut>) {
    let l1 = dcs.register("n1", TTL * 10).await.unwrap();
    let l2 = dcs.register("n2", TTL * 10).await.unwrap();
    dcs.publish_opinion("n1", l1, "svc", "ep1", &Opinion::healthy()).await.unwrap();
    let mut w = dcs.watch().await.unwrap();
    // Made after the watch began and before the copy was read: the copy shows it already.
    dcs.publish_opinion("n2", l2, "svc", "ep1", &Opinion::unhealthy("refused")).await.unwrap();
    let mut copy = dcs.snapshot().await.unwrap();
    assert!(copy.revision > 0, "a snapshot must say which revision it shows");
    let first = next_changes(&mut w).await;
    assert!(first.iter().all(|c| copy.apply(c) == Touched::Nothing), "a change the copy shows already must be skipped");
    assert_eq!(copy, dcs.snapshot().await.unwrap());

    let token = dcs.campaign("n1", l1).await.unwrap().unwrap();
    dcs.publish_opinion("n2", l2, "svc", "ep2", &Opinion::healthy()).await.unwrap();
    let defs = [("svc".to_string(), crate::model::ServiceDefinition { fingerprint: "f".into(), settings: Default::default() })];
    dcs.publish_definitions("n1", l1, &defs.iter().cloned().collect()).await.unwrap();
    dcs.publish_definitions("n2", l2, &defs.iter().cloned().collect()).await.unwrap();
    dcs.request_switchover("svc", "ep2").await.unwrap();
    dcs.set_maintenance("svc", "ep1", true).await.unwrap();
    dcs.set_maintenance("other", "ep1", true).await.unwrap();
    dcs.set_maintenance("other", "ep1", false).await.unwrap();
    dcs.set_pause(Some(&Pause { since: std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000), by: "ops".into() })).await.unwrap();
    dcs.record_switch("svc", &record("ep2", token)).await.unwrap();
    raw.raw_put("opinions/n1/svc/ep3", "not json").await;
    raw.raw_put("records/newer", r#"{"entry_point":"ep1","kind":"teleport","token":1,"node":"n1","at":1.0}"#).await;
    dcs.kv_put("tg", "chat", "1").await.unwrap();
    dcs.purge_switchover("svc", Purge::Any).await.unwrap();
    dcs.withdraw_opinion("n1", "svc", "ep1").await.unwrap();
    catch_up(&mut w, &mut copy, &dcs.snapshot().await.unwrap()).await;
    assert_eq!(copy, dcs.snapshot().await.unwrap());
    assert!(copy.paused.is_some() && copy.skipped.len() == 2, "{copy:?}");

    dcs.publish_opinion("n1", l1, "svc", "ep1", &Opinion::unhealthy("timed out")).await.unwrap();
    let one = next_changes(&mut w).await;
    assert_eq!(one.iter().map(|c| copy.apply(c)).collect::<Vec<_>>(), [Touched::Service("svc".into())]);

    dcs.set_pause(None).await.unwrap();
    dcs.revoke(l2).await.unwrap();
    dcs.decommission("n2").await.unwrap();
    dcs.resign(token).await.unwrap();
    catch_up(&mut w, &mut copy, &dcs.snapshot().await.unwrap()).await;
    assert_eq!(copy, dcs.snapshot().await.unwrap());
    assert!(copy.leader.is_none() && !copy.members.contains("n2") && !copy.opinions.contains_key("n2"), "{copy:?}");
}

async fn next_changes(w: &mut super::Watch) -> Vec<super::keys::Change> {
    match tokio::time::timeout(Duration::from_secs(5), w.next()).await {
        Ok(Some(Changes::Known(c))) => c,
        other => panic!("the watch must report what changed, got {other:?}"),
    }
}

/// Apply the watch's changes to `copy` until it shows `fresh`'s revision.
async fn catch_up(w: &mut super::Watch, copy: &mut Snapshot, fresh: &Snapshot) {
    while copy.revision < fresh.revision {
        for c in next_changes(w).await {
            copy.apply(&c);
        }
    }
}

/// A value the node cannot read (garbage, a newer version's format, a time out of range, a
/// service no longer configured) is left out and named; every other value is still read.
pub async fn unreadable_values(dcs: Arc<dyn Dcs>, raw: Arc<dyn RawPut>) {
    let l1 = dcs.register("n1", TTL * 10).await.unwrap();
    let l2 = dcs.register("n2", TTL * 10).await.unwrap();
    let token = dcs.campaign("n1", l1).await.unwrap().unwrap();
    dcs.publish_opinion("n1", l1, "svc", "ep1", &Opinion::healthy()).await.unwrap();
    dcs.publish_opinion("n2", l2, "svc", "ep1", &Opinion::unhealthy("refused")).await.unwrap();
    dcs.record_switch("svc", &record("ep1", token)).await.unwrap();
    dcs.request_switchover("svc", "ep2").await.unwrap();
    let bad = [
        ("opinions/n2/svc/ep2", "not json"),
        ("opinions/n1/svc/ep2", r#"{"healthy":"maybe"}"#),
        ("records/newer", r#"{"entry_point":"ep1","kind":"teleport","token":1,"node":"n1","at":1.0}"#),
        ("records/far-future", r#"{"entry_point":"ep1","kind":"failover","token":1,"node":"n1","at":1e300}"#),
        ("switchovers/retired", r#"{"target":"ep2"}"#),
    ];
    for (key, value) in bad {
        raw.raw_put(key, value).await;
    }
    let snap = dcs.snapshot().await.expect("an unreadable value must not fail the whole snapshot");
    assert_eq!(snap.alive.iter().collect::<Vec<_>>(), ["n1", "n2"]);
    assert_eq!(snap.leader.as_ref().map(|l| (l.node.as_str(), l.token)), Some(("n1", token)));
    assert_eq!(snap.opinions["n1"]["svc"].keys().collect::<Vec<_>>(), ["ep1"], "only the readable opinion counts");
    assert_eq!(snap.opinions["n2"]["svc"]["ep1"], Opinion::unhealthy("refused"));
    assert!(!snap.opinions["n2"]["svc"].contains_key("ep2"));
    assert_eq!(snap.records.keys().collect::<Vec<_>>(), ["svc"]);
    assert_eq!(snap.records["svc"].entry_point, "ep1");
    assert_eq!(snap.switchovers.keys().collect::<Vec<_>>(), ["svc"]);
    assert_eq!(snap.switchovers["svc"].entry_point, "ep2");
    // Each unreadable value is named with why, under its full key.
    assert_eq!(snap.skipped.len(), bad.len(), "{:?}", snap.skipped);
    for (key, _) in bad {
        let why = snap.skipped.iter().find(|(k, _)| k.ends_with(&format!("/{key}"))).map(|(_, why)| why);
        assert!(why.is_some_and(|w| !w.is_empty()), "{key} is not named: {:?}", snap.skipped);
    }
    // Reading them did no harm: the store still answers, and a good value replaces a bad one.
    dcs.record_switch("far-future", &record("ep2", token)).await.unwrap();
    let snap = dcs.snapshot().await.unwrap();
    assert_eq!(snap.records["far-future"].entry_point, "ep2");
    assert_eq!(snap.skipped.len(), bad.len() - 1, "{:?}", snap.skipped);
}
