//! The commands, their flags, and what each one calls.

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::{parse_urls, Api, CliError, TlsOptions};
use crate::render;

/// Look at and manage a dhaf cluster through one of its nodes.
///
/// Exit codes: 0 done, 1 refused by the node, 2 usage or config error, 3 node unreachable,
/// 4 the node cannot reach the DCS (a status shows its last known state).
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
    },
    /// Drop a service's switchover; automatic rules (failback) apply again.
    ///
    /// Without --service: the node's only service; with several, name one or give --all.
    SwitchoverPurge {
        /// The service's name.
        #[arg(long, short)]
        service: Option<String>,
        /// Every service's switchover.
        #[arg(long, conflicts_with = "service")]
        all: bool,
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
    },
    /// Put an entry point back in rotation.
    MaintenanceOff {
        /// The entry point.
        entry_point: String,
        /// The service's name.
        #[arg(long, short)]
        service: String,
    },
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
            let v = api()?.get("/api/v1/services")?;
            show(&v, &render::services);
            stale(&v)?;
        }
        Command::SwitchoverCandidates { service } => {
            show(&api()?.get(&format!("/api/v1/services/{}/candidates", seg(&service)))?, &render::candidates)
        }
        Command::History { service } => show(&api()?.get(&format!("/api/v1/services/{}/history", seg(&service)))?, &render::history),
        Command::SwitchoverTo { entry_point, service } => show(
            &api()?.change(
                Method::POST,
                &format!("/api/v1/services/{}/switchover", seg(&service)),
                Some(json!({ "entry_point": entry_point })),
            )?,
            &|_| {
                format!("Switchover of {service} to {entry_point} requested: the leader switches to it and keeps it there while it is healthy.\n")
            },
        ),
        Command::SwitchoverPurge { service, all } => {
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
            show(&answer, &|_| services.iter().map(|s| format!("Switchover of {s} purged: automatic rules apply again.\n")).collect())
        }
        Command::Reload => show(&api()?.change(Method::POST, "/api/v1/reload", Some(json!({})))?, &|v| {
            format!("{}\n", v["message"].as_str().unwrap_or("config reloaded"))
        }),
        Command::NodeDecommission { node } => {
            show(&api()?.change(Method::DELETE, &format!("/api/v1/nodes/{}", seg(&node)), None)?, &|_| {
                format!("Node {node} decommissioned.\n")
            })
        }
        Command::MaintenanceOn { entry_point, service, force } => show(
            &api()?.change(
                Method::POST,
                &format!("/api/v1/services/{}/entry-points/{}/maintenance", seg(&service), seg(&entry_point)),
                Some(json!({ "force": force })),
            )?,
            &|_| format!("Entry point {entry_point} of {service} is in maintenance: out of rotation until maintenance-off.\n"),
        ),
        Command::MaintenanceOff { entry_point, service } => show(
            &api()?.change(
                Method::DELETE,
                &format!("/api/v1/services/{}/entry-points/{}/maintenance", seg(&service), seg(&entry_point)),
                None,
            )?,
            &|_| format!("Entry point {entry_point} of {service} is back in rotation.\n"),
        ),
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
