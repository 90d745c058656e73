//! The commands, their flags, and what each one calls.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, CommandFactory, Parser, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::{parse_urls, Api, CliError, TlsOptions};
use crate::render;

/// Look at and manage a dhaf cluster through one of its nodes.
///
/// Exit codes: 0 done, 1 refused by the node, 2 usage or config error, 3 node unreachable (every
/// node tried), 4 the node cannot reach the DCS (a status shows its last known state), 5 `--wait`
/// gave up (the change was dropped or kept failing, or the timeout passed; the error says why).
#[derive(Debug, Parser)]
#[command(name = "dhaf-cli", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    common: Common,
}

/// Flags every command takes.
#[derive(Debug, Args)]
struct Common {
    /// The node's config file: gives the API address (dhaf.web-api.host/port) and token.
    /// Default, without --url or $DHAF_URL: /etc/dhaf/config.yaml.
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Nodes' API addresses instead of a config file, comma-separated (http://HOST:PORT,...): each
    /// is tried in turn until one answers (default: $DHAF_URL). The token comes from
    /// $DHAF_API_TOKEN.
    #[arg(long, global = true, value_name = "URL[,URL...]", conflicts_with = "config")]
    url: Option<String>,
    /// Print the API's JSON instead of tables, for scripts.
    #[arg(long, global = true)]
    json: bool,
    /// With a node on HTTPS: PEM file of the CA that signed its certificate (default: $DHAF_CA_FILE,
    /// else the public CAs).
    #[arg(long, global = true, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// With a node that asks for client certificates: the PEM certificate to present (default:
    /// $DHAF_CLIENT_CERT).
    #[arg(long, global = true, value_name = "FILE")]
    client_cert: Option<PathBuf>,
    /// The client certificate's PEM private key (default: $DHAF_CLIENT_KEY).
    #[arg(long, global = true, value_name = "FILE")]
    client_key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the cluster: leader, nodes, DCS trouble.
    StatusDhaf,
    /// Show one service in detail (every service without --service).
    StatusService {
        /// The service's name.
        #[arg(long, short)]
        service: Option<String>,
    },
    /// Show every service, one line each.
    StatusServices,
    /// List the entry points a switchover may target.
    SwitchoverCandidates {
        /// The service's name.
        #[arg(long, short)]
        service: String,
    },
    /// Switch a service over to an entry point and keep it there while it is healthy.
    SwitchoverTo {
        /// The target entry point.
        entry_point: String,
        /// The service's name.
        #[arg(long, short)]
        service: String,
        /// Schedule it for this time (RFC 3339: 2026-12-24T03:00:00Z): whichever node leads then
        /// carries it out, or refuses it if the target is not healthy then. Cancel it with
        /// switchover-purge.
        #[arg(long, value_name = "TIME", conflicts_with = "wait")]
        at: Option<String>,
        #[command(flatten)]
        wait: Wait,
    },
    /// Drop a service's switchover (a scheduled one too); automatic rules (failback) apply again.
    ///
    /// Without --service: the node's only service; with several, name one or give --all.
    SwitchoverPurge {
        /// The service's name.
        #[arg(long, short)]
        service: Option<String>,
        /// Every service's switchover.
        #[arg(long, conflicts_with = "service")]
        all: bool,
        #[command(flatten)]
        wait: Wait,
    },
    /// Forget a dead node (a live one is refused: stop it first).
    NodeDecommission {
        /// The node's name (dhaf.node-name).
        node: String,
    },
    /// Make the node re-read its config file and apply it without a restart (as SIGHUP does).
    ///
    /// An invalid file, or one that changes what only a restart can change, is refused with
    /// every problem named; the node goes on with the config it had.
    Reload,
    /// Take an entry point out of rotation; traffic moves away if it is current.
    ///
    /// The last healthy entry point in rotation is refused unless --force is given.
    MaintenanceOn {
        /// The entry point.
        entry_point: String,
        /// The service's name.
        #[arg(long, short)]
        service: String,
        /// Even if it is the last healthy entry point in rotation (nothing is left to fail over to).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        wait: Wait,
    },
    /// Put an entry point back in rotation.
    MaintenanceOff {
        /// The entry point.
        entry_point: String,
        /// The service's name.
        #[arg(long, short)]
        service: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Pause the whole cluster: every node goes on checking and reporting, nobody switches
    /// anything (not even a failover) until `resume`. For maintenance of etcd or a provider.
    Pause,
    /// Resume a paused cluster: the leader decides and switches again at once.
    Resume,
    /// Show the node's audit trail: every change asked of it, by which token, from where, and
    /// whether it was accepted.
    Audit,
    /// Show a service's recent switches.
    History {
        /// The service's name.
        #[arg(long, short)]
        service: String,
    },
    /// Print dhaf-cli's version.
    Version,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `--wait` and its `--timeout`.
#[derive(Debug, Args, Clone, Copy)]
struct Wait {
    /// Wait until the provider's live state (read back) shows the change, or fail (exit 5) with
    /// why: the change was dropped, it keeps failing, or the timeout passed.
    #[arg(long)]
    wait: bool,
    /// How long --wait waits: seconds, or with a unit (90s, 5m, 1h).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration, requires = "wait")]
    timeout: Duration,
}

/// `90`, `90s`, `5m`, `1h`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = t.find(|c: char| !c.is_ascii_digit()).map_or((t, ""), |i| t.split_at(i));
    let n: u64 = number.parse().map_err(|_| format!("'{text}' is not a duration: give seconds, or a number with s, m or h (90s, 5m)"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        other => return Err(format!("'{text}': unknown unit '{other}'; use s, m or h")),
    };
    Ok(Duration::from_secs(secs))
}

/// Path segments are names from a config; escape anything that would change the URL's shape.
fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Cli {
    /// Whether `--json` was given.
    pub fn json(&self) -> bool {
        self.common.json
    }
}

/// Run one command.
pub fn run(cli: Cli) -> Result<(), CliError> {
    let Common { config, url, json, ca_file, client_cert, client_key } = cli.common;
    let tls = TlsOptions { ca_file, client_cert, client_key }.or_env();
    let api = || -> Result<Api, CliError> { connect(config.as_deref(), url.as_deref(), &tls) };
    let show = |v: &Value, table: &dyn Fn(&Value) -> String| {
        if json {
            println!("{}", serde_json::to_string_pretty(v).expect("JSON values serialize"));
        } else {
            print!("{}", table(v));
        }
    };
    match cli.command {
        Command::Version => println!("dhaf-cli {}", env!("CARGO_PKG_VERSION")),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "dhaf-cli", &mut std::io::stdout());
        }
        Command::StatusDhaf => {
            let v = api()?.get("/api/v1/status")?;
            show(&v, &render::cluster);
            stale(&v)?;
        }
        Command::StatusService { service: Some(s) } => {
            let v = api()?.get(&format!("/api/v1/services/{}", seg(&s)))?;
            show(&v, &render::service);
            stale(&v)?;
        }
        Command::StatusService { service: None } => {
            let v = api()?.get("/api/v1/services")?;
            show(&v, &|v| v.as_array().map(|a| a.iter().map(render::service).collect::<Vec<_>>().join("\n")).unwrap_or_default());
            stale(&v)?;
        }
        Command::StatusServices => {
            // The whole status: the services, and whether the cluster is paused.
            let v = api()?.get("/api/v1/status")?;
            if json {
                show(&v["services"], &render::services);
            } else {
                print!("{}", render::services_of(&v));
            }
            stale(&v)?;
        }
        Command::Pause => show(&api()?.change(Method::POST, "/api/v1/pause", Some(json!({})))?, &|v| {
            format!(
                "Cluster paused by {}: every node goes on checking and reporting; nothing is switched until `dhaf-cli resume`.\n",
                v["paused"]["by"].as_str().unwrap_or("you")
            )
        }),
        Command::Resume => show(&api()?.change(Method::POST, "/api/v1/resume", Some(json!({})))?, &|_| {
            "Cluster resumed: the leader switches again as usual.\n".to_string()
        }),
        Command::Audit => show(&api()?.get("/api/v1/audit")?, &render::audit),
        Command::SwitchoverCandidates { service } => {
            show(&api()?.get(&format!("/api/v1/services/{}/candidates", seg(&service)))?, &render::candidates)
        }
        Command::History { service } => show(&api()?.get(&format!("/api/v1/services/{}/history", seg(&service)))?, &render::history),
        Command::SwitchoverTo { entry_point, service, at, wait } => {
            let api = api()?;
            let body = match &at {
                Some(at) => json!({ "entry_point": entry_point, "at": at }),
                None => json!({ "entry_point": entry_point }),
            };
            show(&api.change(Method::POST, &format!("/api/v1/services/{}/switchover", seg(&service)), Some(body))?, &|_| {
                match &at {
                Some(at) => format!(
                    "Switchover of {service} to {entry_point} scheduled for {at}: the leader then switches to it if it is healthy, or refuses it. Cancel it with switchover-purge.\n"
                ),
                None => format!(
                    "Switchover of {service} to {entry_point} requested: the leader switches to it and keeps it there while it is healthy.\n"
                ),
            }
            });
            if wait.wait {
                wait_for(&api, &service, &Goal::Points(entry_point.clone()), wait.timeout, json)?;
            }
        }
        Command::SwitchoverPurge { service, all, wait } => {
            let api = api()?;
            let services = match service {
                Some(s) => vec![s],
                None => purge_targets(&api, all)?,
            };
            let mut answers = Vec::new();
            for service in &services {
                answers.push(api.change(Method::DELETE, &format!("/api/v1/services/{}/switchover", seg(service)), None)?);
            }
            // One service answers as before; several answer as a list.
            let answer = if answers.len() == 1 { answers.remove(0) } else { Value::Array(answers) };
            show(&answer, &|_| services.iter().map(|s| format!("Switchover of {s} purged: automatic rules apply again.\n")).collect());
            if wait.wait {
                let deadline = Instant::now() + wait.timeout;
                for service in &services {
                    wait_for(&api, service, &Goal::Settled, deadline.saturating_duration_since(Instant::now()), json)?;
                }
            }
        }
        Command::Reload => show(&api()?.change(Method::POST, "/api/v1/reload", Some(json!({})))?, &|v| {
            format!("{}\n", v["message"].as_str().unwrap_or("config reloaded"))
        }),
        Command::NodeDecommission { node } => {
            show(&api()?.change(Method::DELETE, &format!("/api/v1/nodes/{}", seg(&node)), None)?, &|_| {
                format!("Node {node} decommissioned.\n")
            })
        }
        Command::MaintenanceOn { entry_point, service, force, wait } => {
            let api = api()?;
            show(
                &api.change(
                    Method::POST,
                    &format!("/api/v1/services/{}/entry-points/{}/maintenance", seg(&service), seg(&entry_point)),
                    Some(json!({ "force": force })),
                )?,
                &|_| format!("Entry point {entry_point} of {service} is in maintenance: out of rotation until maintenance-off.\n"),
            );
            if wait.wait {
                wait_for(&api, &service, &Goal::Away(entry_point.clone()), wait.timeout, json)?;
            }
        }
        Command::MaintenanceOff { entry_point, service, wait } => {
            let api = api()?;
            show(
                &api.change(
                    Method::DELETE,
                    &format!("/api/v1/services/{}/entry-points/{}/maintenance", seg(&service), seg(&entry_point)),
                    None,
                )?,
                &|_| format!("Entry point {entry_point} of {service} is back in rotation.\n"),
            );
            if wait.wait {
                wait_for(&api, &service, &Goal::Settled, wait.timeout, json)?;
            }
        }
    }
    Ok(())
}

/// The config file used when neither --config, --url nor $DHAF_URL is given.
pub const DEFAULT_CONFIG: &str = "/etc/dhaf/config.yaml";

/// Where to find the cluster: `--config FILE`, else `--url`, else `$DHAF_URL`, else the
/// default config file.
fn connect(config: Option<&std::path::Path>, url: Option<&str>, tls: &TlsOptions) -> Result<Api, CliError> {
    if let Some(path) = config {
        return Api::from_config(path, tls);
    }
    let from_env = std::env::var("DHAF_URL").ok().filter(|u| !u.trim().is_empty());
    match (url, from_env) {
        (Some(list), _) => Api::from_urls(parse_urls(list, "--url")?, "--url", tls),
        (None, Some(list)) => Api::from_urls(parse_urls(&list, "$DHAF_URL")?, "$DHAF_URL", tls),
        (None, None) => Api::from_config(std::path::Path::new(DEFAULT_CONFIG), tls).map_err(|e| match e {
            CliError::Usage(m) => {
                CliError::Usage(format!("{m} (no --config FILE, --url URL or $DHAF_URL was given, so the default config file is used)"))
            }
            other => other,
        }),
    }
}

/// What a `--wait` waits for, in the provider's live state (read back), or where the switcher
/// cannot read back, in the desired state.
enum Goal {
    /// The service points at this entry point.
    Points(String),
    /// The service no longer points at this entry point (it went into maintenance).
    Away(String),
    /// No switchover pending, no switch failing, and the provider points where the leader wants.
    Settled,
}

/// How often `--wait` asks.
const WAIT_POLL: Duration = Duration::from_millis(500);

/// Poll the cluster's status until `service` reaches `goal`, or fail with why: the switchover was
/// dropped, the switch keeps failing, the cluster is paused, or `timeout` passed.
fn wait_for(api: &Api, service: &str, goal: &Goal, timeout: Duration, json: bool) -> Result<(), CliError> {
    let deadline = Instant::now() + timeout;
    let mut told_desired_only = false;
    loop {
        let status = api.get("/api/v1/status")?;
        let svc = status["services"]
            .as_array()
            .and_then(|all| all.iter().find(|s| s["name"] == service))
            .ok_or_else(|| CliError::WaitFailed(format!("the node no longer shows service {service}")))?;
        let reads_back = svc["reads_back"] != false;
        if !reads_back && !told_desired_only && !json {
            eprintln!(
                "note: the switcher of {service} cannot read its live state back, so --wait can only follow the desired state (the leader's record)"
            );
            told_desired_only = true;
        }
        // Where the service points: as read back, or, without read-back, as desired.
        let points = if reads_back { svc["live"].as_str() } else { svc["current"].as_str() };
        let settled = svc["switching"].is_null() && (!reads_back || svc["live"] == svc["current"]);
        let done = match goal {
            Goal::Points(ep) => points == Some(ep) && svc["current"] == ep.as_str(),
            Goal::Away(ep) => points.is_some_and(|p| p != ep) && settled,
            Goal::Settled => svc["switchover"].is_null() && settled && points.is_some(),
        };
        if done {
            if !json {
                println!(
                    "Done: {service} points at {}{}.",
                    points.unwrap_or("-"),
                    if reads_back { " (read back from the provider)" } else { " (desired; not read back)" }
                );
            }
            return Ok(());
        }
        if let Goal::Points(ep) = goal {
            if svc["switchover"].is_null() && svc["current"] != ep.as_str() {
                return Err(CliError::WaitFailed(format!(
                    "the switchover of {service} to {ep} was dropped by the leader: its target became unhealthy or went into maintenance, or someone purged it (the notifications and the node's log say which); {service} points at {}",
                    points.unwrap_or("-")
                )));
            }
        }
        if Instant::now() >= deadline {
            let mut why = vec![format!(
                "{service} points at {}{}",
                points.unwrap_or("an unknown entry point"),
                if reads_back { " (as read back)" } else { "" }
            )];
            if let Some(p) = svc["switching"].as_object() {
                why.push(format!(
                    "the switch to {} keeps failing ({} attempts): {}",
                    p.get("to").and_then(Value::as_str).unwrap_or("-"),
                    p.get("attempts").map_or_else(|| "-".to_string(), Value::to_string),
                    p.get("last_error").and_then(Value::as_str).unwrap_or("-")
                ));
            }
            if !status["paused"].is_null() {
                why.push("the cluster is paused: nothing is switched until `dhaf-cli resume`".into());
            }
            if svc["panic"] == true || svc["degraded"] == true {
                why.push("no healthy entry point is left in rotation to move to".into());
            }
            if status["leader"].is_null() {
                why.push("no node leads the cluster".into());
            }
            return Err(CliError::WaitFailed(format!("gave up waiting after {} s: {}", timeout.as_secs(), why.join("; "))));
        }
        std::thread::sleep(WAIT_POLL.min(deadline.saturating_duration_since(Instant::now())).max(Duration::from_millis(10)));
    }
}

/// A status the node could not read fresh from the DCS is shown, then told as exit code 4, so a
/// script never takes the last known state for the current one.
fn stale(v: &Value) -> Result<(), CliError> {
    let one = |v: &Value| v["stale"] == true;
    let is_stale = match v.as_array() {
        Some(all) => all.iter().any(one),
        None => one(v),
    };
    if !is_stale {
        return Ok(());
    }
    let why = v["dcs_error"].as_str().map(|e| format!(" ({e})")).unwrap_or_default();
    Err(CliError::DcsUnreachable(format!(
        "the node cannot reach the DCS{why}: this is its last known state; the last switch stays in force and nothing is switched until the DCS is back"
    )))
}

/// The services `switchover-purge` without `--service` means: the node's only one, or with
/// `--all` every one; several without `--all` is a usage error that names them.
fn purge_targets(api: &Api, all: bool) -> Result<Vec<String>, CliError> {
    let listed = api.get("/api/v1/services")?;
    let names: Vec<String> = listed.as_array().into_iter().flatten().filter_map(|s| s["name"].as_str().map(String::from)).collect();
    match names.len() {
        1 => Ok(names),
        _ if all => Ok(names),
        0 => Err(CliError::Usage("the node has no services".into())),
        _ => Err(CliError::Usage(format!(
            "the node has {} services ({}): name one with --service NAME, or purge every one with --all",
            names.len(),
            names.join(", ")
        ))),
    }
}

/// The long options as the original dhaf's README writes some of them, with one dash
/// (`-config FILE`): rewritten to clap's `--config FILE` before parsing. Only words that name a
/// long option of dhaf-cli are touched, so short options (`-c FILE`) keep their meaning.
pub fn accept_single_dash_long_options(args: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let command = Cli::command();
    let longs: std::collections::BTreeSet<String> = std::iter::once(&command)
        .chain(command.get_subcommands())
        .flat_map(|c| c.get_arguments())
        .filter_map(|a| a.get_long())
        .map(String::from)
        .collect();
    let mut past_separator = false;
    args.into_iter()
        .map(|arg| {
            let Some(text) = arg.to_str() else { return arg };
            if past_separator || text == "--" {
                past_separator = true;
                return arg;
            }
            match text.strip_prefix('-') {
                Some(rest) if !rest.starts_with('-') && rest.len() > 1 && longs.contains(rest.split('=').next().unwrap_or(rest)) => {
                    format!("-{text}").into()
                }
                _ => arg,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn single_dash_long_options_become_double_dash() {
        let args = |v: &[&str]| v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        let got = accept_single_dash_long_options(args(&["dhaf-cli", "node-decommission", "n3", "-config", "c.dhaf", "-json"]));
        assert_eq!(got, args(&["dhaf-cli", "node-decommission", "n3", "--config", "c.dhaf", "--json"]));
        let got = accept_single_dash_long_options(args(&["dhaf-cli", "-c", "x", "-config=y", "-nope", "--", "-config"]));
        assert_eq!(got, args(&["dhaf-cli", "-c", "x", "--config=y", "-nope", "--", "-config"]));
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(seg("main"), "main");
        assert_eq!(seg("a/b c"), "a%2Fb%20c");
    }
}
