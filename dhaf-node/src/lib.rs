//! The reference dhaf node as a library, so the `dhaf-node` binary stays a thin shell and an
//! embedder can start the same node (or only mount its REST API) inside its own service.
//!
//! [`prepare`] turns a config file into a node ready to run: parse and validate everything first
//! (config and every provider section, all problems at once), pick the DCS (etcd when configured,
//! else the embedded one), build the providers from the registry. [`run`] then serves the REST
//! API ([`api::router`]) beside the node until the shutdown future completes.

pub mod api;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;

use dhaf_core::config::{Config, ConfigError};
use dhaf_core::registry::Registry;
use dhaf_core::runtime::{Node, NodeError};

/// Why the node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config (or a provider section of it) is invalid.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The DCS could not be set up.
    #[error("dcs: {0}")]
    Dcs(String),
    /// The node failed to start (a provider's init).
    #[error("{0}")]
    Node(#[from] NodeError),
    /// The REST API could not listen.
    #[error("rest api: cannot listen on {addr}: {error}")]
    Listen {
        /// The address from `dhaf.web-api`.
        addr: String,
        /// Why.
        error: std::io::Error,
    },
}

/// Everything validated and built, ready to run.
pub struct Prepared {
    /// The node.
    pub node: Node,
    /// Its config.
    pub config: Config,
}

/// Parse `config_path` and build the node with the providers of `registry`, reporting every
/// problem of the file at once. Does no network I/O.
pub fn prepare(config_path: &Path, registry: &Registry) -> Result<Prepared, StartError> {
    let config = Config::load(config_path)?;
    let dcs = dhaf_providers::dcs_from_config(&config).map_err(|e| StartError::Dcs(e.to_string()))?;
    let providers = registry.build(&config, dcs.clone())?;
    Ok(Prepared { node: Node::new(config.clone(), dcs, providers), config })
}

/// Run a prepared node with its REST API on `dhaf.web-api` until `shutdown` completes.
///
/// `on_listen` is told the API's bound address (useful with port 0).
pub async fn run(prepared: Prepared, shutdown: impl Future<Output = ()>, on_listen: impl FnOnce(SocketAddr)) -> Result<(), StartError> {
    let web = &prepared.config.dhaf.web_api;
    let addr = format!("{}:{}", web.host, web.port);
    let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|error| StartError::Listen { addr: addr.clone(), error })?;
    let bound = listener.local_addr().map_err(|error| StartError::Listen { addr, error })?;
    tracing::info!(%bound, "rest api listening");
    on_listen(bound);
    let app = api::router(prepared.node.handle());
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = api_stopped.await;
        });
        if let Err(e) = served.await {
            tracing::error!(error = %e, "rest api stopped");
        }
    });
    let result = prepared.node.run(shutdown).await;
    let _ = stop_api.send(());
    let _ = server.await;
    Ok(result?)
}
