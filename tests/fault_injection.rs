//! Fault injection with real processes on one Linux machine (root needed): three hosts in network
//! namespaces on a bridge, each running an etcd member and a `dhaf-node`; two HTTP backends in
//! namespaces of their own; faults made with `kill` and `iptables`. Every node's switch script
//! appends `<node> <entry point> <term>` to one log, which is what the invariants of DESIGN.md
//! are checked against:
//!
//! 1. at most one writer per term, and terms never go back;
//! 2. never a switch to an entry point the majority holds unhealthy;
//! 3. the switch within `fall x tact + check timeout + a few DCS round trips` (checked loosely);
//! 4. no switch without a DCS quorum.
//!
//! The scenarios run one at a time: each builds its own lab and tears it down. Cloudflare
//! scenarios use the `cloudflare` switcher against a stateful fake of its API (see
//! `fault_injection/cloudflare.rs`), which records the term from each record's comment. The
//! rfc2136 scenario runs Knot DNS in a namespace of its own (see `fault_injection/knot.rs`).
//!
//! Run as root: `cargo xtask test` (CI), or just this suite with
//! `eval "$(cargo xtask tools)"; PROTOC="$(cargo xtask protoc)" cargo test -p dhaf --test fault_injection`.
//! The `dhaf-node` binary is built in the test's own target directory by the cargo that runs the
//! test. A failed scenario keeps its logs (etcd, nodes, backends) and says where.

#[path = "fault_injection/cloudflare.rs"]
mod cloudflare;
#[path = "fault_injection/knot.rs"]
mod knot;
#[path = "fault_injection/lab.rs"]
mod lab;

use std::time::Duration;

use lab::{Lab, Options, Switcher, Timing, Write};
use serde_json::Value;

/// One lab at a time: the machine has few cores and etcd is sensitive to starvation.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// fall 2 x tact 1 s + check timeout 1 s + DCS round trips, with room for a loaded CI machine.
const SWITCH_BOUND: Duration = Duration::from_secs(15);

/// Invariant 1: one node per term, terms in order.
fn assert_one_writer_per_term(writes: &[Write]) {
    for pair in writes.windows(2) {
        assert!(pair[1].token >= pair[0].token, "a write of an older term came after a newer one: {writes:?}");
        if pair[1].token == pair[0].token {
            assert_eq!(pair[1].node, pair[0].node, "two nodes wrote in the same term: {writes:?}");
        }
    }
}

/// Let time pass while asserting the log does not grow.
async fn assert_no_write_for(lab: &mut Lab, d: Duration, why: &str) {
    let before = lab.writes();
    let start = std::time::Instant::now();
    while start.elapsed() < d {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = lab.writes();
        assert_eq!(now, before, "{why}: unexpected write(s); logs in {}", lab.dir().display());
    }
    lab.assert_nodes_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_killed_fails_over_once_within_the_bound() {
    backend_killed(Timing::ONE_SECOND, SWITCH_BOUND).await;
}

/// The same with a 250 ms tact and 200 ms checks: fall 2 x 250 ms + DCS round trips is well
/// under a second; the bound leaves room for a loaded machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_killed_fails_over_once_within_the_bound_at_a_250ms_tact() {
    backend_killed(Timing::FAST, Duration::from_secs(5)).await;
}

async fn backend_killed(timing: Timing, bound: Duration) {
    let _serial = SERIAL.lock().await;
    let mut lab = Lab::start(Options { timing, ..Options::default() }).await;
    let (leader, term) = lab.leader().await;
    assert_no_write_for(&mut lab, Duration::from_secs(3), "healthy start").await;

    lab.kill_backend("b1");
    let took = lab.wait_entry("ep-2", bound).await;
    eprintln!("backend killed (tact {}): switched in {took:?}", timing.tact);
    assert_no_write_for(&mut lab, Duration::from_secs(4), "after the failover").await;

    let writes = lab.writes();
    assert_eq!(writes, vec![Write { node: leader, entry_point: "ep-2".into(), token: term }]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_unreachable_from_one_node_only_causes_no_switch() {
    let _serial = SERIAL.lock().await;
    let mut lab = Lab::start(Options::default()).await;
    let b1 = lab.ip("b1");
    lab.iptables("h3", &["-A", "OUTPUT", "-d", &b1, "-j", "DROP"]);

    // h3 must really see ep-1 down, or the test proves nothing.
    let start = std::time::Instant::now();
    loop {
        let s = lab.status("h3").await.expect("h3 answers");
        let votes = &s["services"][0]["entry_points"][0]["votes"];
        let h3_down = votes.as_array().into_iter().flatten().any(|v| v["node"] == "h3" && v["healthy"] == false);
        if h3_down {
            break;
        }
        assert!(start.elapsed() < SWITCH_BOUND, "h3 never saw ep-1 down: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_no_write_for(&mut lab, Duration::from_secs(6), "one vantage point of three").await;
    assert_eq!(lab.entry(), "ep-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_a_new_leader_switches_once() {
    let _serial = SERIAL.lock().await;
    let mut lab = Lab::start(Options::default()).await;
    let (old, old_term) = lab.leader().await;
    lab.kill_node(&old);
    lab.kill_backend("b1");
    // The dead leader's lease has to expire first: ttl + the switch bound.
    let took = lab.wait_entry("ep-2", Duration::from_secs(5) + SWITCH_BOUND).await;
    eprintln!("leader and backend killed: switched in {took:?}");
    let (new, new_term) = lab.wait_new_leader(&old, Duration::from_secs(5)).await;
    assert!(new_term > old_term);
    assert_no_write_for(&mut lab, Duration::from_secs(4), "after the failover").await;
    let writes = lab.writes();
    assert_eq!(writes, vec![Write { node: new, entry_point: "ep-2".into(), token: new_term }]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_paused_past_its_lease_never_writes_after_resuming() {
    let _serial = SERIAL.lock().await;
    let mut lab = Lab::start(Options::default()).await;
    let (old, old_term) = lab.leader().await;
    lab.signal_node(&old, "STOP");
    lab.kill_backend("b1");
    let (new, new_term) = lab.wait_new_leader(&old, Duration::from_secs(20)).await;
    assert!(new_term > old_term);
    lab.wait_entry("ep-2", SWITCH_BOUND).await;

    // The old leader wakes up with a stale view (ep-1 healthy, itself leading).
    lab.signal_node(&old, "CONT");
    assert_no_write_for(&mut lab, Duration::from_secs(8), "the resumed old leader").await;
    let writes = lab.writes();
    assert_eq!(writes, vec![Write { node: new.clone(), entry_point: "ep-2".into(), token: new_term }]);
    assert_eq!(lab.entry(), "ep-2");
    // It has rejoined as a follower.
    let seen = lab.leader_seen_by(&old).await;
    assert_eq!(seen, Some((new, new_term)), "the old leader follows the new one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_etcd_members_lost_no_switch_until_quorum_returns() {
    let _serial = SERIAL.lock().await;
    let mut lab = Lab::start(Options::default()).await;
    let (leader, _) = lab.leader().await;
    // Lose the two members the leader does not sit beside, so its own stays up.
    let others: Vec<&str> = lab::HOSTS.iter().copied().filter(|h| *h != leader).collect();
    for h in &others {
        lab.kill_etcd(h);
    }
    lab.kill_backend("b1");
    assert_no_write_for(&mut lab, Duration::from_secs(12), "without an etcd quorum").await;
    assert_eq!(lab.entry(), "ep-1", "the last switch stays in force");

    for h in &others {
        lab.restart_etcd(h);
    }
    // With the quorum back, the failover that was due happens, once.
    let took = lab.wait_entry("ep-2", Duration::from_secs(45)).await;
    eprintln!("quorum restored: switched after {took:?}");
    assert_no_write_for(&mut lab, Duration::from_secs(4), "after the failover").await;
    let writes = lab.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].entry_point, "ep-2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_blackholed_fails_over_within_the_bound() {
    let _serial = SERIAL.lock().await;
    let mut lab = Lab::start(Options::default()).await;
    let (leader, term) = lab.leader().await;
    // Dropped, not refused: every check runs into its timeout.
    lab.iptables("b1", &["-A", "INPUT", "-p", "tcp", "-j", "DROP"]);
    let took = lab.wait_entry("ep-2", SWITCH_BOUND).await;
    eprintln!("backend blackholed: switched in {took:?}");
    assert_no_write_for(&mut lab, Duration::from_secs(4), "after the failover").await;
    assert_eq!(lab.writes(), vec![Write { node: leader, entry_point: "ep-2".into(), token: term }]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_backend_causes_no_switch_storm() {
    let _serial = SERIAL.lock().await;
    let opts = Options { rise: 2, failback_delay: 60, ..Options::default() };
    let mut lab = Lab::start(opts).await;
    // A third of the packets to and from ep-1 are lost: checks pass and fail at random.
    lab.iptables("b1", &["-A", "INPUT", "-m", "statistic", "--mode", "random", "--probability", "0.33", "-j", "DROP"]);
    lab.iptables("b1", &["-A", "OUTPUT", "-m", "statistic", "--mode", "random", "--probability", "0.33", "-j", "DROP"]);
    tokio::time::sleep(Duration::from_secs(25)).await;
    lab.assert_nodes_running();
    let writes = lab.writes();
    eprintln!("flapping backend: {} write(s) in 25 s: {writes:?}", writes.len());
    assert_one_writer_per_term(&writes);
    // At most one failover; going back waits for ep-1 to stay healthy for failback-delay.
    assert!(writes.len() <= 1, "a switch storm: {writes:?}");
    assert!(writes.iter().all(|w| w.entry_point == "ep-2"), "{writes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_cut_off_from_etcd_but_not_from_the_provider_never_switches() {
    let _serial = SERIAL.lock().await;
    let mut lab = Lab::start(Options::default()).await;
    let (old, old_term) = lab.leader().await;
    lab.iptables(&old, &["-A", "OUTPUT", "-p", "tcp", "--dport", "2379", "-j", "DROP"]);
    lab.kill_backend("b1");
    let took = lab.wait_entry("ep-2", Duration::from_secs(5) + SWITCH_BOUND).await;
    eprintln!("leader cut off from etcd: switched in {took:?}");
    let (new, new_term) = lab.wait_new_leader(&old, Duration::from_secs(5)).await;
    assert!(new_term > old_term);
    assert_no_write_for(&mut lab, Duration::from_secs(4), "after the failover").await;
    assert_eq!(lab.writes(), vec![Write { node: new, entry_point: "ep-2".into(), token: new_term }]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_etcd_member_lost_changes_nothing() {
    let _serial = SERIAL.lock().await;
    let mut lab = Lab::start(Options::default()).await;
    let (leader, term) = lab.leader().await;
    // The member beside the leader: its node has to reach the others.
    lab.kill_etcd(&leader);
    assert_no_write_for(&mut lab, Duration::from_secs(8), "one etcd member of three lost").await;
    assert_eq!(lab.leader().await, (leader.clone(), term), "the leader keeps its term");
    lab.kill_backend("b1");
    let took = lab.wait_entry("ep-2", SWITCH_BOUND).await;
    eprintln!("one etcd member lost, backend killed: switched in {took:?}");
    let writes = lab.writes();
    assert_eq!(writes, vec![Write { node: leader, entry_point: "ep-2".into(), token: term }]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_of_etcd_paused_no_switch_and_no_spurious_switch_after() {
    let _serial = SERIAL.lock().await;
    let mut lab = Lab::start(Options::default()).await;
    lab.signal_etcd("STOP");
    assert_no_write_for(&mut lab, Duration::from_secs(10), "etcd paused").await;
    lab.signal_etcd("CONT");
    // Leases expired meanwhile: the cluster re-forms, and nothing changed, so nothing is written.
    assert_no_write_for(&mut lab, Duration::from_secs(12), "etcd resumed").await;
    assert_eq!(lab.entry(), "ep-1");
    // It works again: a real failure is acted on.
    lab.kill_backend("b1");
    lab.wait_entry("ep-2", Duration::from_secs(5) + SWITCH_BOUND).await;
    let writes = lab.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].entry_point, "ep-2");
}

fn cloudflare() -> Options {
    Options { switcher: Switcher::Cloudflare, ..Options::default() }
}

/// After a provider fault: the record ends at ep-2, every write went there, one writer per term.
async fn assert_failed_over_cleanly(lab: &mut Lab) {
    // Let retries still in flight land first.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_no_write_for(lab, Duration::from_secs(4), "after the failover").await;
    let writes = lab.writes();
    assert!(!writes.is_empty());
    assert_one_writer_per_term(&writes);
    assert!(writes.iter().all(|w| w.entry_point == "ep-2"), "{writes:?}");
    assert_eq!(lab.entry(), "ep-2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudflare_cold_start_without_a_record_creates_exactly_one() {
    let _serial = SERIAL.lock().await;
    // The three nodes start at the same moment over a zone without the service's record.
    let mut lab = Lab::start(Options { empty_zone: true, ..cloudflare() }).await;
    let (leader, term) = lab.leader().await;
    assert_no_write_for(&mut lab, Duration::from_secs(4), "after the record was created").await;
    let all = lab.cloudflare().writes();
    assert_eq!(all.iter().filter(|w| w.created).count(), 1, "exactly one create: {all:?}");
    assert_eq!(lab.writes(), vec![Write { node: leader, entry_point: "ep-1".into(), token: term }]);
    // One record, and failover still works through it.
    lab.kill_backend("b1");
    lab.wait_entry("ep-2", SWITCH_BOUND).await;
    assert_eq!(lab.cloudflare().content().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudflare_backend_killed_one_write_with_the_term_in_its_comment() {
    let _serial = SERIAL.lock().await;
    let mut lab = Lab::start(cloudflare()).await;
    let (leader, term) = lab.leader().await;
    assert_no_write_for(&mut lab, Duration::from_secs(3), "healthy start").await;
    lab.kill_backend("b1");
    let took = lab.wait_entry("ep-2", SWITCH_BOUND).await;
    eprintln!("cloudflare, backend killed: switched in {took:?}");
    assert_no_write_for(&mut lab, Duration::from_secs(4), "after the failover").await;
    assert_eq!(lab.writes(), vec![Write { node: leader, entry_point: "ep-2".into(), token: term }]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_provider_still_switches_within_the_lease() {
    let _serial = SERIAL.lock().await;
    // A switch is three calls (read, patch, read back) and must end before the lease deadline,
    // ttl - margin after the last renewal: ttl 6 leaves 3.8 s at least.
    let mut lab = Lab::start(Options { ttl: 6, ..cloudflare() }).await;
    lab.cloudflare().set_delay(Duration::from_millis(800));
    lab.kill_backend("b1");
    let took = lab.wait_entry("ep-2", SWITCH_BOUND + Duration::from_secs(15)).await;
    eprintln!("slow provider: switched in {took:?}");
    assert_failed_over_cleanly(&mut lab).await;
}

async fn provider_errors_are_retried(status: u16) {
    let _serial = SERIAL.lock().await;
    let mut lab = Lab::start(cloudflare()).await;
    lab.cloudflare().fail_next_writes(8, status);
    lab.kill_backend("b1");
    let took = lab.wait_entry("ep-2", Duration::from_secs(60)).await;
    eprintln!("provider answering {status} 8 times: switched in {took:?}");
    assert_eq!(lab.cloudflare().errors_left(), 0, "the switch got through before the errors ran out?");
    assert_failed_over_cleanly(&mut lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_429_is_retried_and_the_switch_happens() {
    provider_errors_are_retried(429).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_5xx_is_retried_and_the_switch_happens() {
    provider_errors_are_retried(503).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_whose_answer_is_lost_ends_right_in_one_term() {
    let _serial = SERIAL.lock().await;
    let mut lab = Lab::start(cloudflare()).await;
    let (leader, term) = lab.leader().await;
    // The PATCH is carried out, but the connection closes before the answer.
    lab.cloudflare().lose_patch_answers(1);
    lab.kill_backend("b1");
    let took = lab.wait_entry("ep-2", SWITCH_BOUND).await;
    eprintln!("switch answer lost: record right in {took:?}");
    assert_failed_over_cleanly(&mut lab).await;
    let writes = lab.writes();
    assert!(writes.iter().all(|w| w.node == leader && w.token == term), "{writes:?}");
}

/// The value of a metric's sample with these labels in a Prometheus text exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_with_the_entry_points_reordered_flips_nothing_and_a_fixed_file_with_sighup_clears_it() {
    let _serial = SERIAL.lock().await;
    let mut lab = Lab::start(Options { reordered: Some("h3"), ..Options::default() }).await;
    let disagreement =
        |s: &Value| s["services"][0]["disagreement"].as_array().map(|a| a.iter().map(|d| d["node"].clone()).collect::<Vec<_>>());

    // h1 and h2 see h3's definition differ; status and metrics say so.
    let start = std::time::Instant::now();
    loop {
        let s = lab.status("h1").await.expect("h1 answers");
        if disagreement(&s) == Some(vec![Value::from("h3")]) {
            let diff = s["services"][0]["disagreement"][0]["differences"].to_string();
            assert!(diff.contains("entry-points[0]"), "{s}");
            break;
        }
        assert!(start.elapsed() < SWITCH_BOUND, "h1 never showed h3's disagreement: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = lab.metrics("h1").await.expect("h1 answers");
    assert_eq!(sample(&metrics, "dhaf_config_disagreeing_nodes{service=\"site\"}"), Some(1.0), "{metrics}");

    // Leadership moves around (the leader killed and back): h3 never places the service by its
    // order, so nothing flips.
    let (leader, _) = lab.leader().await;
    assert_ne!(leader, "h3", "the outvoted node does not lead");
    lab.kill_node(&leader);
    assert_no_write_for(&mut lab, Duration::from_secs(8), "two nodes left that disagree").await;
    assert_eq!(lab.entry(), "ep-1");
    lab.restart_node(&leader);
    assert_no_write_for(&mut lab, Duration::from_secs(8), "the killed node back").await;

    // Fix h3's file and reload it: agreement, and still no switch.
    lab.write_node_config("h3", false);
    lab.signal_node("h3", "HUP");
    let start = std::time::Instant::now();
    loop {
        let s = lab.status("h1").await.expect("h1 answers");
        if disagreement(&s) == Some(vec![]) {
            break;
        }
        assert!(start.elapsed() < SWITCH_BOUND, "the disagreement did not clear: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = lab.metrics("h1").await.expect("h1 answers");
    assert_eq!(sample(&metrics, "dhaf_config_disagreeing_nodes{service=\"site\"}"), Some(0.0), "{metrics}");
    assert_no_write_for(&mut lab, Duration::from_secs(3), "after the fix").await;
    assert!(lab.writes().is_empty(), "{:?}", lab.writes());
    lab.assert_nodes_running();
}

/// The leader and the active backend die together: a new leader moves the service's A record on
/// a real Knot DNS server (in a namespace of its own) by TSIG-signed dynamic update, once, with its
/// term in the TXT record beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc2136_leader_and_backend_killed_a_new_leader_updates_the_dns_server_once() {
    let _serial = SERIAL.lock().await;
    let mut lab = Lab::start(Options { switcher: Switcher::Rfc2136, ..Options::default() }).await;
    let serial = lab.dns().serial().expect("the zone's serial");
    let (old, old_term) = lab.leader().await;
    lab.kill_node(&old);
    lab.kill_backend("b1");
    let took = lab.wait_entry("ep-2", Duration::from_secs(5) + SWITCH_BOUND).await;
    eprintln!("rfc2136: leader and backend killed: switched in {took:?}");
    let (new, new_term) = lab.wait_new_leader(&old, Duration::from_secs(5)).await;
    assert!(new_term > old_term);
    assert_no_write_for(&mut lab, Duration::from_secs(3), "after the failover").await;

    // One change, made by the new leader: only it holds the term the TXT record names.
    assert_eq!(lab.writes().len(), 1, "logs in {}", lab.dir().display());
    assert_eq!(lab.dns().serial(), Some(serial + 1), "one update, one serial");
    assert_eq!(lab.dns().dig("TXT", "_dhaf.site.faults.test"), [format!("\"dhaf term-{new_term}\"")], "new leader {new}");
    assert_eq!(lab.entry(), "ep-2");
}
