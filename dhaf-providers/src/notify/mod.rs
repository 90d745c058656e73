//! The built-in notifiers: `email` (SMTP through `lettre`), `tg` (a Telegram bot) and `webhook`
//! (an HTTP POST: Slack, Mattermost, Discord or any JSON endpoint; see [`webhook`]).
//!
//! Both render the same [`Report`] of a [`Notification`]: what happened, what dhaf did about it,
//! when, and the reasons the nodes gave, so a person on call can act on one message without
//! opening a dashboard. The runtime delivers every notification once per transition from the
//! leader, retries a failed [`Notifier::notify`](dhaf_core::provider::Notifier::notify) with
//! backoff (honouring `retry_after`), and runs [`Notifier::lead`](dhaf_core::provider::Notifier::lead)
//! only while the node leads: that is where the Telegram bot long-polls.
//!
//! Config (several notifiers per cluster, each with its `name`):
//!
//! ```yaml
//! notifiers:
//!   - type: email
//!     name: ops-mail
//!     from: dhaf@example.com
//!     to: oncall@example.com, backup@example.com
//!     smtp:
//!       server: smtp.example.com
//!       port: 587                 # default: 465 for ssl, 587 for starttls, 25 otherwise
//!       security: starttls        # ssl (implicit TLS), starttls, or none (default)
//!       username: dhaf
//!       password: ${SMTP_PASSWORD}
//!       ca-file: /etc/dhaf/smtp-ca.pem   # optional: trust this CA (a private or self-signed server)
//!       accept-invalid-certs: false      # optional: skip certificate checks (self-signed test servers only)
//!       timeout: 30               # optional, seconds
//!   - type: tg
//!     name: ops-tg
//!     token: ${TG_TOKEN}
//!     join-code: ${TG_JOIN_CODE}
//!     api-url: https://api.telegram.org  # optional
//!     poll-timeout: 25                   # optional, seconds a getUpdates long poll waits
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use dhaf_core::model::{Event, Notification, SwitchKind};
use dhaf_core::registry::Registry;

#[cfg(feature = "email")]
pub mod email;
#[cfg(feature = "telegram")]
pub mod tg;
#[cfg(feature = "webhook")]
pub mod webhook;

/// Register the built-in notifiers compiled in (`email`, `tg`, `webhook`) in `registry`.
pub fn register(registry: &mut Registry) {
    #[cfg(feature = "email")]
    registry.notifier("email", email::EmailNotifier::from_config);
    #[cfg(feature = "telegram")]
    registry.notifier("tg", tg::TelegramNotifier::from_config);
    #[cfg(feature = "webhook")]
    registry.notifier("webhook", webhook::WebhookNotifier::from_config);
    let _ = registry;
}

/// How bad an event is, for people scanning a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Something is broken or at risk and may need a person.
    Problem,
    /// dhaf acted (switched) or something notable changed.
    Change,
    /// Something recovered.
    Recovery,
}

impl Severity {
    /// A word for plain-text channels.
    pub fn label(self) -> &'static str {
        match self {
            Severity::Problem => "PROBLEM",
            Severity::Change => "CHANGE",
            Severity::Recovery => "RECOVERY",
        }
    }

    /// A symbol for chat channels.
    pub fn symbol(self) -> &'static str {
        match self {
            Severity::Problem => "🔴",
            Severity::Change => "🔀",
            Severity::Recovery => "🟢",
        }
    }
}

/// A notification laid out for people; every notifier renders it in its own format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// How bad it is.
    pub severity: Severity,
    /// The one-line summary ([`Event::summary`]).
    pub title: String,
    /// Labelled facts, in display order: cluster, node, service, entry points, when.
    pub facts: Vec<(&'static str, String)>,
    /// What happened, in a sentence.
    pub happened: String,
    /// What dhaf did (or deliberately did not do) about it.
    pub dhaf_did: String,
    /// The reasons the nodes gave (`node: reason`), if any.
    pub reasons: Vec<String>,
    /// What a person may want to check, if anything.
    pub next: Option<String>,
}

impl Report {
    /// The report as plain text (an email's body, a Telegram message without markup).
    pub fn text(&self) -> String {
        let mut out = format!("[{}] {}\n\n", self.severity.label(), self.title);
        out.push_str(&format!("What happened: {}\n", self.happened));
        out.push_str(&format!("What dhaf did: {}\n", self.dhaf_did));
        if let Some(next) = &self.next {
            out.push_str(&format!("What to check: {next}\n"));
        }
        out.push('\n');
        let width = self.facts.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
        for (k, v) in &self.facts {
            out.push_str(&format!("{:<width$} {v}\n", format!("{k}:")));
        }
        if !self.reasons.is_empty() {
            out.push_str("\nReasons:\n");
            for reason in &self.reasons {
                out.push_str(&format!("  - {reason}\n"));
            }
        }
        out.push_str("\n-- \nSent by dhaf, distributed high-availability failover.\n");
        out
    }

    /// Lay out `n` for people.
    pub fn of(n: &Notification) -> Report {
        let mut facts = vec![("Cluster", n.cluster.clone()), ("Reported by node", n.node.clone())];
        // `ep-1 (10.0.0.1)`: where an entry point is, when the notification says.
        let at = |name: &str| match n.entry_points.iter().find(|e| e.name == name) {
            Some(e) => format!("{name} ({})", e.ip),
            None => name.to_string(),
        };
        if let Some(service) = n.event.service() {
            facts.push(("Service", service.to_string()));
        }
        let (severity, happened, dhaf_did, reasons, next): (Severity, String, String, Vec<String>, Option<String>) = match &n.event {
            Event::EntryPointWentDown { entry_point, reasons, .. } => {
                facts.push(("Entry point", at(entry_point)));
                (
                    Severity::Problem,
                    format!("The majority of dhaf nodes now holds entry point {entry_point} unhealthy."),
                    "Took it out of rotation: if the service pointed at it, the leader fails over to the \
                     highest-priority healthy entry point (a separate notification follows)."
                        .into(),
                    reasons.clone(),
                    Some(format!("Check the server behind {entry_point} and the reasons below.")),
                )
            }
            Event::EntryPointCameUp { entry_point, .. } => {
                facts.push(("Entry point", at(entry_point)));
                (
                    Severity::Recovery,
                    format!("The majority of dhaf nodes holds entry point {entry_point} healthy again."),
                    "Put it back in rotation; with automatic failback the service returns to it if it has \
                     a higher priority than the current one."
                        .into(),
                    Vec::new(),
                    None,
                )
            }
            Event::Switched { from, to, kind, .. } => {
                facts.push(("Entry points", format!("{} -> {}", from.as_deref().map_or("(none)".to_string(), at), at(to))));
                facts.push(("Kind", kind.to_string()));
                let why = match kind {
                    SwitchKind::Initial => "The service had no current entry point yet.",
                    SwitchKind::Failover => "The current entry point went unhealthy.",
                    SwitchKind::Switchover => "An operator asked for this entry point (switchover).",
                    SwitchKind::Failback => "A higher-priority entry point recovered.",
                    SwitchKind::Maintenance => "The current entry point was put into maintenance.",
                    SwitchKind::Repair => "The provider's live state had drifted from the desired entry point.",
                };
                (
                    if *kind == SwitchKind::Failover { Severity::Problem } else { Severity::Change },
                    why.into(),
                    format!("Pointed the service's public entry at {to} ({kind})."),
                    Vec::new(),
                    (*kind == SwitchKind::Failover)
                        .then(|| format!("Find out why {} failed; see its entry-point notification.", from.as_deref().unwrap_or("it"))),
                )
            }
            Event::SwitchFailed { to, reason, .. } => {
                facts.push(("Entry point", at(to)));
                (
                    Severity::Problem,
                    format!("Switching the service to {to} failed at the switcher."),
                    "Retries the switch with backoff; the previous entry point stays in force until it succeeds.".into(),
                    vec![reason.clone()],
                    Some("Check the switcher's credentials and its API (DNS provider, script).".into()),
                )
            }
            Event::SwitchStillFailing { to, attempts, reason, .. } => {
                facts.push(("Entry point", at(to)));
                (
                    Severity::Problem,
                    format!("Switching the service to {to} keeps failing ({attempts} attempts)."),
                    "Keeps retrying with backoff; the previous entry point stays in force until it succeeds.".into(),
                    vec![reason.clone()],
                    Some("Check the switcher's credentials and its API (DNS provider, script); `dhaf-cli status-service` shows the last error.".into()),
                )
            }
            Event::SwitchRecovered { to, attempts, .. } => {
                facts.push(("Entry point", at(to)));
                (
                    Severity::Change,
                    format!("The switch to {to} went through after {attempts} failed attempts."),
                    format!("Pointed the service's public entry at {to}."),
                    Vec::new(),
                    None,
                )
            }
            Event::SwitchoverPurged { entry_point, why, .. } => {
                facts.push(("Entry point", at(entry_point)));
                (
                    Severity::Change,
                    format!("The pending switchover to {entry_point} was dropped."),
                    "Purged the switchover request; the service is again placed automatically by priority.".into(),
                    vec![why.clone()],
                    None,
                )
            }
            Event::ServiceWentDown { .. } => (
                Severity::Problem,
                "No entry point of the service is healthy (panic mode).".into(),
                "Nothing: with no healthy entry point to go to, dhaf leaves the service where it is.".into(),
                Vec::new(),
                Some("Every entry point is down: check the servers and the network between them and the dhaf nodes.".into()),
            ),
            Event::ServiceCameUp { .. } => (
                Severity::Recovery,
                "An entry point of the service is healthy again; panic mode is over.".into(),
                "Resumed normal placement by priority.".into(),
                Vec::new(),
                None,
            ),
            Event::NodeWentDown { node } => {
                facts.push(("Node", node.clone()));
                (
                    Severity::Problem,
                    format!("dhaf node {node} stopped renewing its presence."),
                    "Its votes no longer count; the remaining nodes decide.".into(),
                    Vec::new(),
                    Some(format!("Check node {node} and its connection to the DCS.")),
                )
            }
            Event::NodeCameUp { node } => {
                facts.push(("Node", node.clone()));
                (Severity::Recovery, format!("dhaf node {node} (re)joined the cluster."), "Its votes count again.".into(), Vec::new(), None)
            }
            Event::LeaderElected { node, token } => {
                facts.push(("Leader", format!("{node} ({token})")));
                (
                    Severity::Change,
                    format!("dhaf node {node} became the cluster leader."),
                    "The new leader now decides and switches; the previous leader's term is fenced off.".into(),
                    Vec::new(),
                    None,
                )
            }
            Event::DcsUnavailable { node, reason } => {
                facts.push(("Node", node.clone()));
                (
                    Severity::Problem,
                    format!("dhaf node {node} lost the DCS (etcd)."),
                    "Keeps the last switch in force and switches nothing until the DCS is back.".into(),
                    vec![reason.clone()],
                    Some("Check the etcd cluster and the network between it and this node.".into()),
                )
            }
            Event::DefinitionsDisagree { nodes, differences, held, .. } => {
                facts.push(("Nodes", nodes.join(", ")));
                (
                    Severity::Problem,
                    format!(
                        "The config files of dhaf node{} {} define the service differently from the leader's.",
                        if nodes.len() == 1 { "" } else { "s" },
                        nodes.join(", ")
                    ),
                    if *held {
                        "Holds the service where it is: fewer than a majority of the nodes share one definition of it, and \
                         switching by one node's config would be undone by the next leader's."
                            .into()
                    } else {
                        "Counts only the votes of the nodes that share the leader's definition; the service is still placed by the majority.".into()
                    },
                    differences.clone(),
                    Some("Make the service's section the same on every node, then reload them (`systemctl reload dhaf`).".into()),
                )
            }
            Event::DefinitionsAgree { .. } => (
                Severity::Recovery,
                "Every dhaf node defines the service alike again.".into(),
                "Counts every node's votes again and places the service as usual.".into(),
                Vec::new(),
                None,
            ),
            Event::DcsRecovered { node } => {
                facts.push(("Node", node.clone()));
                (
                    Severity::Recovery,
                    format!("dhaf node {node} reaches the DCS again."),
                    "Resumed normal operation.".into(),
                    Vec::new(),
                    None,
                )
            }
            Event::ScheduledSwitchoverRefused { entry_point, why, .. } => {
                facts.push(("Entry point", at(entry_point)));
                (
                    Severity::Problem,
                    format!("A scheduled switchover to {entry_point} came due and was refused."),
                    "Left the service where it is; the scheduled switchover is dropped.".into(),
                    vec![why.clone()],
                    Some("Check the entry point, then ask again (`dhaf-cli switchover-to`), now or at a later time.".into()),
                )
            }
            Event::Paused { by } => {
                facts.push(("Paused by", by.clone()));
                (
                    Severity::Change,
                    format!("The dhaf cluster was paused by {by}."),
                    "Every node goes on checking and reporting; nothing is switched, not even a failover, until it is resumed.".into(),
                    Vec::new(),
                    Some("Resume it with `dhaf-cli resume` once the maintenance is over.".into()),
                )
            }
            Event::Resumed {} => (
                Severity::Recovery,
                "The dhaf cluster was resumed.".into(),
                "Switches again as usual: failovers, switchovers and failbacks that were held take place now.".into(),
                Vec::new(),
                None,
            ),
            // An event newer than this layout: its one-line summary says what happened.
            other => (Severity::Change, format!("{}.", other.summary()), String::new(), Vec::new(), None),
        };
        facts.push(("When (UTC)", rfc3339(n.at)));
        Report { severity, title: n.event.summary(), facts, happened, dhaf_did, reasons, next }
    }
}

/// `t` as RFC 3339 in UTC, to the second: `2026-11-25T07:51:12Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar), which keeps the crate
// free of a date library for one line of output.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Replace every occurrence of each secret in `text` with `***`, so provider error messages (which
/// may quote a URL or a server's reply) never carry a token or password into logs.
pub(crate) fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(s, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use dhaf_core::model::FencingToken;

    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_593_072)), "2026-11-25T07:51:12Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(4_107_542_399)), "2100-02-28T23:59:59Z");
    }

    fn note(event: Event) -> Notification {
        Notification {
            cluster: "c1".into(),
            node: "n1".into(),
            event,
            entry_points: vec![dhaf_core::model::EntryPoint { name: "ep-1".into(), ip: "10.0.0.1".parse().unwrap() }],
            at: UNIX_EPOCH + Duration::from_secs(1_795_593_072),
        }
    }

    #[test]
    fn a_report_says_where_what_and_when() {
        let r = Report::of(&note(Event::EntryPointWentDown {
            service: "main".into(),
            entry_point: "ep-1".into(),
            reasons: vec!["n1: connection refused".into()],
        }));
        assert_eq!(r.severity, Severity::Problem);
        assert_eq!(r.title, "main: entry point ep-1 is down");
        assert!(r.facts.contains(&("Cluster", "c1".into())));
        assert!(r.facts.contains(&("Service", "main".into())));
        assert!(r.facts.contains(&("Entry point", "ep-1 (10.0.0.1)".into())), "{:?}", r.facts);
        assert!(r.facts.contains(&("When (UTC)", "2026-11-25T07:51:12Z".into())));
        assert_eq!(r.reasons, vec!["n1: connection refused".to_string()]);

        let r = Report::of(&note(Event::Switched {
            service: "main".into(),
            from: Some("ep-1".into()),
            to: "ep-2".into(),
            kind: SwitchKind::Failover,
        }));
        assert!(r.facts.contains(&("Entry points", "ep-1 (10.0.0.1) -> ep-2".into())), "{:?}", r.facts);
        assert!(r.dhaf_did.contains("ep-2"));

        let r = Report::of(&note(Event::LeaderElected { node: "n2".into(), token: FencingToken(7) }));
        assert!(r.facts.contains(&("Leader", "n2 (term-7)".into())));
        assert!(!r.facts.iter().any(|(k, _)| *k == "Service"));
    }

    #[test]
    fn redact_hides_every_secret() {
        assert_eq!(redact("GET /bot123:abc/getUpdates failed (123:abc)", &["123:abc", ""]), "GET /bot***/getUpdates failed (***)");
    }
}
