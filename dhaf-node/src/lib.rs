//! The reference dhaf node as a library, so the `dhaf-node` binary stays a thin shell and an
//! embedder can start the same node (or only mount its REST API) inside its own service.
//!
//! [`prepare`] turns a config file into a node ready to run: parse and validate everything first
//! (config and every provider section, all problems at once), build the DCS the config names
//! from the registry like any provider (etcd for an `etcd:` section, else the embedded one), then
//! the other providers. [`run`] then serves the REST API ([`api::router`]) beside the node until
//! the shutdown future completes.
//!
//! The API is served within [`ApiLimits`]: a cap on open connections, overall and per client
//! address, and a timeout for the TLS handshake and for reading a request's headers (which also
//! closes idle keep-alive connections), so clients that open connections and say nothing cannot
//! use up the node's file descriptors and starve its checks.
//!
//! What the node tells its operators beside the API lives in [`logging`] (text or JSON lines,
//! the default filter) and [`metrics`] (the `/metrics` exposition, every series in one place).
//!
//! With `dhaf.web-api.tls` the API speaks HTTPS only ([`tls`]): a plain-HTTP request is answered
//! with a short JSON refusal and the connection closed; certificates are reloaded when their
//! files change. Without TLS on an address other than loopback, the node warns at start: tokens
//! would cross the network in clear.

pub mod api;
pub mod auth;
pub mod diff;
mod head;
pub mod logging;
pub mod metrics;
pub mod reload;
pub mod tls;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
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
    /// The API's TLS, when `dhaf.web-api.tls` is set.
    pub tls: Option<Arc<tls::ApiTls>>,
    /// Reloads the config file into the running node (SIGHUP, `POST /api/v1/reload`).
    pub reloader: Arc<reload::Reloader>,
}

/// Parse `config_path` and build the node with the providers of `registry`, reporting every
/// problem of the file at once. Does no network I/O.
pub fn prepare(config_path: &Path, registry: &Registry) -> Result<Prepared, StartError> {
    let config = Config::load(config_path)?;
    let tls = match &config.dhaf.web_api.tls {
        Some(t) => Some(Arc::new(tls::ApiTls::load(t, &config.base_dir)?)),
        None => None,
    };
    // The DCS is a provider like the others: its problems and theirs are reported together.
    let (dcs, providers) = match registry.dcs(&config) {
        Ok(dcs) => (dcs.clone(), registry.build(&config, dcs)?),
        Err(mut e) => {
            let scratch = Arc::new(dhaf_core::dcs::memory::MemoryDcs::new(&config.dhaf.cluster_name));
            if let Err(more) = registry.build(&config, scratch) {
                e.problems.extend(more.problems);
            }
            return Err(e.into());
        }
    };
    let node = Node::new(config.clone(), dcs.clone(), providers);
    let reloader = Arc::new(reload::Reloader::new(config_path.to_path_buf(), registry.clone(), dcs, node.handle(), tls.clone()));
    Ok(Prepared { node, config, tls, reloader })
}

/// How much of the node the REST API may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// Connections served at once; further ones wait in the kernel's accept queue, where they
    /// cost the node no file descriptor.
    pub max_connections: usize,
    /// Connections served at once from one client address; further ones from it are closed at
    /// once, so one remote client cannot take every slot. Loopback clients (the node's own host)
    /// only count against `max_connections`.
    pub max_connections_per_address: usize,
    /// Time a connection gets to finish its TLS handshake, and to send its request's headers
    /// (the API answers one request per connection).
    pub header_read_timeout: Duration,
    /// How often the TLS certificate files are looked at for a change.
    pub tls_reload_interval: Duration,
}

impl Default for ApiLimits {
    /// Far below a default descriptor limit of 1024, far above what operators and a scraper need.
    fn default() -> Self {
        ApiLimits {
            max_connections: 128,
            max_connections_per_address: 32,
            header_read_timeout: Duration::from_secs(10),
            tls_reload_interval: tls::RELOAD_INTERVAL,
        }
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
    let scheme = if prepared.tls.is_some() { "https" } else { "http" };
    tracing::info!(%bound, scheme, "rest api listening");
    if prepared.tls.is_none() && !bound.ip().is_loopback() {
        tracing::warn!(
            %bound,
            "rest api: listening beyond loopback without TLS; tokens and status cross the network in clear. \
             Set dhaf.web-api.tls (cert, key) or bind to localhost"
        );
    }
    on_listen(bound);
    let app = api::router_with_reload(prepared.node.handle(), Some(prepared.reloader.clone()));
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let watcher = prepared.tls.clone().map(|t| tokio::spawn(t.watch(limits.tls_reload_interval)));
    let server = tokio::spawn(serve_with(listener, app, limits, prepared.tls.clone(), async {
        let _ = api_stopped.await;
    }));
    let result = prepared.node.run(shutdown).await;
    let _ = stop_api.send(());
    let _ = server.await;
    if let Some(w) = watcher {
        w.abort();
    }
    Ok(result?)
}

/// Serve `app` over plain HTTP on `listener` within `limits` until `stop` completes, then give
/// open requests a few seconds to finish.
pub async fn serve(listener: tokio::net::TcpListener, app: axum::Router, limits: ApiLimits, stop: impl Future<Output = ()>) {
    serve_with(listener, app, limits, None, stop).await
}

/// [`serve`], over TLS when `tls` is given.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: ApiLimits,
    tls: Option<Arc<tls::ApiTls>>,
    stop: impl Future<Output = ()>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let per_address = Arc::new(PerAddress::default());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        // A slot first, then accept: at the cap, new connections wait in the kernel's queue.
        let slot = tokio::select! {
            _ = &mut stop => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let (socket, peer) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, most likely: wait instead of spinning on the error.
                    tracing::warn!(error = %e, "rest api: cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            },
        };
        let cap = if peer.ip().is_loopback() { usize::MAX } else { limits.max_connections_per_address.max(1) };
        let Some(held) = per_address.take(peer.ip(), cap) else {
            // Closed unanswered: this address already holds its share of the slots.
            drop(socket);
            continue;
        };
        let watcher = graceful.watcher();
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _held = (slot, held);
            match tls {
                None => serve_connection(socket, peer, app, limits, watcher).await,
                Some(tls) => {
                    let handshake = tokio::time::timeout(limits.header_read_timeout, accept_tls(socket, &tls)).await;
                    if let Ok(Some(stream)) = handshake {
                        serve_connection(stream, peer, app, limits, watcher).await;
                    }
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await.is_err() {
        tracing::warn!("rest api: requests still open after 5 s; closing them");
    }
}

/// HTTP/1.1 on one connection, every request tagged with the client's address: one request per
/// connection, its head read and checked first ([`head`]), so HTTP's own refusals are JSON too.
async fn serve_connection<S>(
    mut stream: S,
    peer: SocketAddr,
    app: axum::Router,
    limits: ApiLimits,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt as _;

    // Connections that send no whole head in time, or leave, end here: the client's business.
    let head = match tokio::time::timeout(limits.header_read_timeout, head::read(&mut stream)).await {
        Ok(Ok(Ok(Some(head)))) => head,
        Ok(Ok(Err(refused))) => return head::refuse(&mut stream, &refused).await,
        _ => return,
    };
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(api::ClientAddr(peer));
        app.clone().oneshot(req.map(axum::body::Body::new))
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(false);
    let _ = watcher.watch(http.serve_connection(TokioIo::new(head::Replay::new(head, stream)), service)).await;
}

/// The TLS handshake; a client speaking plain HTTP gets a short refusal instead.
async fn accept_tls(socket: tokio::net::TcpStream, tls: &tls::ApiTls) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    let mut first = [0u8; 1];
    if socket.peek(&mut first).await.ok()? == 0 {
        return None;
    }
    // 0x16 opens every TLS handshake record; anything else is not TLS.
    if first[0] != 0x16 {
        refuse_plain_http(socket).await;
        return None;
    }
    match tokio_rustls::TlsAcceptor::from(tls.config()).accept(socket).await {
        Ok(stream) => Some(stream),
        Err(e) => {
            tracing::debug!(error = %e, "rest api: TLS handshake failed");
            None
        }
    }
}

async fn refuse_plain_http(mut socket: tokio::net::TcpStream) {
    head::answer(&mut socket, "400 Bad Request", "tls_required", "this node's API speaks HTTPS only: use https://").await
}

/// Open connections per client address.
#[derive(Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

/// One connection counted against its address until dropped.
struct Held {
    map: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<Held> {
        let mut map = self.0.lock().unwrap();
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Held { map: self.clone(), ip })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut map = self.map.0.lock().unwrap();
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}
