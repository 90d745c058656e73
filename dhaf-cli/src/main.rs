//! `dhaf-cli`: look at and manage a dhaf cluster through one node's REST API.
//!
//! Every command reads the node's own config file (`--config FILE`, default
//! `/etc/dhaf/config.yaml`) for the API address (`dhaf.web-api.host` / `port`) and the token
//! mutations need (`dhaf.web-api.token`, or `$DHAF_API_TOKEN`), or takes the nodes' addresses
//! from `--url URL[,URL...]` / `$DHAF_URL` (tried in turn until one answers) and the token from
//! `$DHAF_API_TOKEN`. Output is a table for people, or the API's JSON with `--json`.
//!
//! Exit codes scripts can rely on: 0 done, 1 the node refused (its error code and message are
//! printed; with `--json` also as `{"error": {"code", "message"}}` on stdout), 2 usage or config
//! error, 3 no node could be reached, 4 the node cannot reach the DCS (a status command still
//! prints the node's last known state, marked stale), 5 `--wait` gave up (the change was dropped
//! or kept failing, the cluster is paused, or the timeout passed).

mod cli;
mod client;
mod render;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse_from(cli::accept_single_dash_long_options(std::env::args_os()));
    let json = cli.json();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Scripts asking for JSON get the node's refusal as JSON too, on stdout.
            if let (true, client::CliError::Refused { code, message, .. }) = (json, &e) {
                println!("{}", serde_json::json!({ "error": { "code": code, "message": message } }));
            }
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
