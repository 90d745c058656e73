//! The reference dhaf node as a library, so the `dhaf-node` binary stays a thin shell and an
//! embedder can start the same node (or only mount its REST API) inside its own service.
//!
//! [`prepare`] turns a config file into a node ready to run: parse and validate everything first
//! (config and every provider section, all problems at once), pick the DCS (etcd when configured,
//! else the embedded one), build the providers from the registry. [`run`] then serves the REST
//! API ([`api::router`]) beside the node until the shutdown future completes.
//!
//! The API is served within [`ApiLimits`]: a cap on open connections and a timeout for reading a
//! request's headers (which also closes idle keep-alive connections), so clients that open
//! connections and say nothing cannot use up the node's file descriptors and starve its checks.

pub mod api;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

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

/// How much of the node the REST API may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// Connections served at once; further ones wait in the kernel's accept queue, where they
    /// cost the node no file descriptor.
    pub max_connections: usize,
    /// Time a connection gets to send a request's headers, and the longest an idle keep-alive
    /// connection is kept open.
    pub header_read_timeout: Duration,
}

impl Default for ApiLimits {
    /// Far below a default descriptor limit of 1024, far above what operators and a scraper need.
    fn default() -> Self {
        ApiLimits { max_connections: 128, header_read_timeout: Duration::from_secs(10) }
    }
}

/// Run a prepared node with its REST API on `dhaf.web-api` until `shutdown` completes.
///
/// `on_listen` is told the API's bound address (useful with port 0).
pub async fn run(prepared: Prepared, shutdown: impl Future<Output = ()>, on_listen: impl FnOnce(SocketAddr)) -> Result<(), StartError> {
    run_with_limits(prepared, ApiLimits::default(), shutdown, on_listen).await
}

/// [`run`], with the REST API held to `limits`.
pub async fn run_with_limits(
    prepared: Prepared,
    limits: ApiLimits,
    shutdown: impl Future<Output = ()>,
    on_listen: impl FnOnce(SocketAddr),
) -> Result<(), StartError> {
    let web = &prepared.config.dhaf.web_api;
    let addr = format!("{}:{}", web.host, web.port);
    let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|error| StartError::Listen { addr: addr.clone(), error })?;
    let bound = listener.local_addr().map_err(|error| StartError::Listen { addr, error })?;
    tracing::info!(%bound, "rest api listening");
    on_listen(bound);
    let app = api::router(prepared.node.handle());
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, app, limits, async {
        let _ = api_stopped.await;
    }));
    let result = prepared.node.run(shutdown).await;
    let _ = stop_api.send(());
    let _ = server.await;
    Ok(result?)
}

/// Serve `app` on `listener` within `limits` until `stop` completes, then give open requests a
/// few seconds to finish.
pub async fn serve(listener: tokio::net::TcpListener, app: axum::Router, limits: ApiLimits, stop: impl Future<Output = ()>) {
    use hyper_util::rt::{TokioIo, TokioTimer};

    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        // A slot first, then accept: at the cap, new connections wait in the kernel's queue.
        let slot = tokio::select! {
            _ = &mut stop => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let socket = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(e) => {
                    // Out of descriptors, most likely: wait instead of spinning on the error.
                    tracing::warn!(error = %e, "rest api: cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            },
        };
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
        let connection = http.serve_connection(TokioIo::new(socket), hyper_util::service::TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Timed-out and reset connections end here; they are the client's business.
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await.is_err() {
        tracing::warn!("rest api: requests still open after 5 s; closing them");
    }
}
