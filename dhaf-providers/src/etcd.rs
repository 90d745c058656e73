//! The etcd DCS: [`EtcdDcs`] implements [`Dcs`] on etcd's v3 API (3.4 and 3.5).
//!
//! The data is laid out by [`Keys`] under `/<cluster-name>/`, exactly like the in-memory DCS, and
//! every method mirrors [`dhaf_core::dcs::memory::MemoryDcs`]:
//!
//! - presence is an etcd lease; the `alive/<node>` key and the node's opinions are bound to it;
//! - election is a transaction that puts the leader key only while it does not exist
//!   (`create_revision == 0`), bound to the candidate's lease;
//! - the fencing token is the leader key's revision: the key is written once per term, so its
//!   `mod_revision` is its `create_revision` and a new term always has a larger one;
//! - every write the leader makes as leader (switch records, purges) is a transaction that
//!   compares the leader key's `mod_revision` with the token, so a deposed leader's write is
//!   refused by etcd itself, however late it arrives;
//! - a watch on the cluster prefix signals every change.
//!
//! At steady state (no opinion changes) a node sends only lease keep-alives, which are not
//! revisions; reads (snapshots, campaigns that find the key taken) write nothing.
//!
//! Connections are made lazily, on the first call, so building an `EtcdDcs` from config does no
//! I/O. Each connection talks to one endpoint; when a call finds it unreachable (refused, reset,
//! no etcd leader behind it, or too slow) the next call, and the call's own retry, go to the next
//! endpoint. Every call is idempotent, so retrying on another member is safe. A call that cannot
//! get an answer from any member fails with [`DcsError::Unavailable`].
//!
//! One difference from the in-memory DCS is deliberate: a campaign with an expired lease while
//! another node leads answers `None` (etcd cannot test a lease's existence inside the
//! transaction without writing); the in-memory DCS answers [`DcsError::LeaseExpired`]. The
//! runtime treats both alike, and the node's next keep-alive reports the expiry.
//!
//! A three-node cluster over etcd: every node gets the same file but for `node-name`.
//!
//! ```yaml
//! dhaf:
//!   cluster-name: prod
//!   node-name: node-1            # node-2, node-3 on the others
//! etcd:
//!   hosts: 10.0.0.11:2379,10.0.0.12:2379,10.0.0.13:2379
//!   username: dhaf               # optional, with password
//!   password: ${ETCD_PASSWORD}
//!   tls:                         # optional: every host is then reached over TLS
//!     ca: /etc/dhaf/etcd-ca.pem
//!     cert: /etc/dhaf/node-1.pem # optional client certificate, with key
//!     key: /etc/dhaf/node-1-key.pem
//! services: [...]
//! ```
//!
//! With etcd auth enabled, the user needs read-write access to the prefix `/<cluster-name>/`.
//!
//! The section is this provider's: [`register`] names it `etcd` in the registry, so the seed's
//! `etcd:` key (or `dcs: { type: etcd, … }`) is read by [`EtcdConfig::parse`] when the registry
//! builds the DCS, with every problem named by its key path.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dhaf_core::config::{ConfigError, Fields, ProviderConfig};
use dhaf_core::dcs::keys::{encode, Keys, RawEntry};
use dhaf_core::dcs::{Dcs, DcsContext, DcsError, Leader, LeaseId, Purge, Snapshot, SwitchoverRequest, Watch};
use dhaf_core::model::{FencingToken, Opinion, Pause, ServiceDefinition, SwitchRecord};
use dhaf_core::registry::Registry;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity, KeyValue, PutOptions, TlsOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use tokio::time::Instant;

/// Register the `etcd` DCS: the seed's `etcd:` section, or `dcs: { type: etcd, … }`.
pub fn register(registry: &mut Registry) {
    registry.dcs_type("etcd", EtcdDcs::from_config);
}

impl EtcdDcs {
    /// Build the etcd DCS from its section; no I/O (it connects on first use).
    pub fn from_config(section: &ProviderConfig, ctx: &DcsContext) -> Result<EtcdDcs, ConfigError> {
        let f = section.fields();
        let hosts = f.key("hosts");
        let config = EtcdConfig::parse(&f);
        let config = f.into_result(config)?.ok_or_else(|| ConfigError::at(hosts, "is required"))?;
        Ok(EtcdDcs::new(&config, &ctx.cluster))
    }
}

/// The `etcd` section.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EtcdConfig {
    /// `etcd.hosts`: the endpoints, each `http(s)://host:port`.
    pub hosts: Vec<String>,
    /// `etcd.username`.
    pub username: Option<String>,
    /// `etcd.password`.
    pub password: Option<String>,
    /// `etcd.tls.*`.
    pub tls: Option<EtcdTls>,
}

impl fmt::Debug for EtcdConfig {
    // The password is shown as set or not, never as itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("hosts", &self.hosts)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .finish()
    }
}

/// `etcd.tls.*`: TLS to etcd, which the original lacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// `etcd.tls.ca`: PEM file of the CA that signed the etcd servers' certificates.
    pub ca: Option<PathBuf>,
    /// `etcd.tls.cert`: PEM client certificate.
    pub cert: Option<PathBuf>,
    /// `etcd.tls.key`: PEM client key.
    pub key: Option<PathBuf>,
}

fn host_problem(h: &str) -> Option<String> {
    let rest = h.split_once("://").map(|(_, r)| r).unwrap_or(h);
    let port_ok = rest.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok());
    (!(h.starts_with("http://") || h.starts_with("https://")) || !port_ok)
        .then(|| format!("'{h}' is not `host:port` or `http(s)://host:port`"))
}

impl EtcdConfig {
    /// etcd at `hosts` (each `http(s)://host:port`), without authentication or TLS.
    pub fn new(hosts: Vec<String>) -> EtcdConfig {
        EtcdConfig { hosts, username: None, password: None, tls: None }
    }

    /// Read the section, recording every problem in `f` with its key path; `None` when it has
    /// no usable `hosts`.
    pub fn parse(f: &Fields) -> Option<EtcdConfig> {
        let hosts = f.required_string("hosts").map(|h| {
            h.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| if s.contains("://") { s.to_string() } else { format!("http://{s}") })
                .collect::<Vec<_>>()
        });
        if let Some(hosts) = &hosts {
            if hosts.is_empty() {
                f.problem(f.key("hosts"), "lists no host; write `ip1:port1,ip2:port2`");
            }
            for p in hosts.iter().filter_map(|h| host_problem(h)) {
                f.problem(f.key("hosts"), p);
            }
        }
        let username = f.string("username");
        let password = f.string("password");
        if username.is_some() != password.is_some() {
            f.problem(f.key("password"), "etcd.username and etcd.password go together");
        }
        let tls = f.section("tls").map(|t| {
            let tls = EtcdTls {
                ca: t.string("ca").map(PathBuf::from),
                cert: t.string("cert").map(PathBuf::from),
                key: t.string("key").map(PathBuf::from),
            };
            if tls.cert.is_some() != tls.key.is_some() {
                t.problem(t.key("key"), "etcd.tls.cert and etcd.tls.key go together");
            }
            for (k, p) in [("ca", &tls.ca), ("cert", &tls.cert), ("key", &tls.key)] {
                if let Some(p) = p {
                    if !p.is_file() {
                        t.problem(t.key(k), format!("no such file: {}", p.display()));
                    }
                }
            }
            t.finish();
            tls
        });
        f.finish();
        Some(EtcdConfig { hosts: hosts?, username, password, tls })
    }
}

/// How long one call may take in all, retries on other members included. The runtime bounds its
/// calls more tightly; this bound is for other callers (the CLI, tests).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one member may take to answer before the call moves on to the next one.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long establishing a connection (TCP, TLS, authentication) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A [`Dcs`] on an etcd cluster.
pub struct EtcdDcs {
    keys: Keys,
    endpoints: Vec<String>,
    user: Option<(String, String)>,
    tls: Option<EtcdTls>,
    conn: Arc<Mutex<Conn>>,
}

/// The current connection: to `endpoints[next]`, replaced when `generation` moves on.
#[derive(Default)]
struct Conn {
    client: Option<Client>,
    next: usize,
    generation: u64,
}

impl fmt::Debug for EtcdDcs {
    // The password stays out of Debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdDcs")
            .field("cluster", &self.keys.prefix())
            .field("endpoints", &self.endpoints)
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

pub use crate::dcs_from_config;

impl EtcdDcs {
    /// A DCS for cluster `cluster` on the etcd cluster `config` names. Connects on first use.
    ///
    /// With TLS configured, every host is reached over TLS (an `http://` host is taken as
    /// `https://`), verified against `etcd.tls.ca` and, with `cert` and `key`, authenticated by
    /// that client certificate.
    pub fn new(config: &EtcdConfig, cluster: &str) -> EtcdDcs {
        let endpoints = config
            .hosts
            .iter()
            .map(|h| match (&config.tls, h.strip_prefix("http://")) {
                (Some(_), Some(rest)) => format!("https://{rest}"),
                _ => h.clone(),
            })
            .collect();
        let user = config.username.clone().zip(config.password.clone());
        EtcdDcs { keys: Keys::new(cluster), endpoints, user, tls: config.tls.clone(), conn: Arc::default() }
    }

    /// The etcd cluster's current revision: how many writes it has taken (all clusters' keys).
    pub async fn revision(&self) -> Result<i64, DcsError> {
        let key = self.keys.prefix().to_string();
        let resp = self
            .call(move |mut c| {
                let key = key.clone();
                async move { c.get(key, Some(GetOptions::new().with_count_only())).await }
            })
            .await?
            .map_err(other)?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or_default())
    }

    fn options(&self) -> Result<ConnectOptions, String> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            // A member cut off from the others answers "no leader" at once instead of hanging.
            .with_require_leader(true);
        if let Some((user, password)) = &self.user {
            options = options.with_user(user, password).with_auto_token_refresh(true);
        }
        if let Some(tls) = &self.tls {
            let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
            let mut t = TlsOptions::new();
            if let Some(ca) = &tls.ca {
                t = t.ca_certificate(Certificate::from_pem(read(ca)?));
            }
            if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
                t = t.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            options = options.with_tls(t);
        }
        Ok(options)
    }

    /// The current client and its generation, connecting if there is none.
    async fn client(&self) -> Result<(Client, u64), String> {
        let (endpoint, generation) = {
            let c = self.conn.lock().unwrap();
            if let Some(client) = &c.client {
                return Ok((client.clone(), c.generation));
            }
            (self.endpoints[c.next % self.endpoints.len()].clone(), c.generation)
        };
        let options = self.options()?;
        let client = match tokio::time::timeout(CONNECT_TIMEOUT, Client::connect([endpoint.as_str()], Some(options))).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                self.rotate(generation);
                return Err(format!("{endpoint}: {}", human(&e)));
            }
            Err(_) => {
                self.rotate(generation);
                return Err(format!("{endpoint}: no connection within {CONNECT_TIMEOUT:?}"));
            }
        };
        let mut c = self.conn.lock().unwrap();
        if c.generation != generation {
            return Err(format!("{endpoint}: connection replaced while connecting"));
        }
        Ok((c.client.get_or_insert(client).clone(), generation))
    }

    /// Drop connection `generation` (if still current) and move on to the next endpoint.
    fn rotate(&self, generation: u64) {
        rotate(&self.conn, generation);
    }

    /// Run `f` against a member, moving on to the next member while members are unreachable.
    ///
    /// The outer error is unavailability (no member answered); the inner one is etcd's answer.
    async fn call<T, F, Fut>(&self, mut f: F) -> Result<Result<T, etcd_client::Error>, DcsError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + CALL_TIMEOUT;
        let mut last = String::from("no endpoint");
        for _ in 0..self.endpoints.len() {
            let (client, generation) = match self.client().await {
                Ok(c) => c,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            // A call abandoned half-way (the caller's timeout) means the member is slow: the
            // next call goes elsewhere.
            let mut guard = RotateOnDrop { conn: &self.conn, generation, armed: true };
            let until = deadline.min(Instant::now() + ATTEMPT_TIMEOUT);
            match tokio::time::timeout_at(until, f(client)).await {
                Ok(Err(e)) if unreachable(&e) => last = human(&e),
                Ok(res) => {
                    guard.armed = false;
                    return Ok(res);
                }
                Err(_) => last = format!("no answer within {:?}", ATTEMPT_TIMEOUT.min(CALL_TIMEOUT)),
            }
            drop(guard);
            if Instant::now() >= deadline {
                break;
            }
        }
        Err(DcsError::Unavailable(format!("etcd: no member could serve the request (no quorum, or all members down); last: {last}")))
    }

    /// A transaction.
    async fn txn(&self, txn: Txn) -> Result<Result<etcd_client::TxnResponse, etcd_client::Error>, DcsError> {
        self.call(move |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
    }

    async fn put(&self, key: String, value: String, lease: Option<LeaseId>) -> Result<(), DcsError> {
        let res = self
            .call(move |mut c| {
                let (key, value) = (key.clone(), value.clone());
                async move { c.put(key, value, lease.map(|l| PutOptions::new().with_lease(l))).await }
            })
            .await?;
        match (res, lease) {
            (Ok(_), _) => Ok(()),
            (Err(e), Some(lease)) if lease_gone(&e) => Err(DcsError::LeaseExpired(lease)),
            (Err(e), _) => Err(other(e)),
        }
    }

    async fn delete(&self, key: String) -> Result<i64, DcsError> {
        let resp = self
            .call(move |mut c| {
                let key = key.clone();
                async move { c.delete(key, None).await }
            })
            .await?
            .map_err(other)?;
        Ok(resp.deleted())
    }

    async fn range(&self, prefix: String) -> Result<Vec<KeyValue>, DcsError> {
        Ok(self.range_at(prefix).await?.0)
    }

    /// The entries under `prefix`, and the store's revision they show.
    async fn range_at(&self, prefix: String) -> Result<(Vec<KeyValue>, i64), DcsError> {
        let mut resp = self
            .call(move |mut c| {
                let prefix = prefix.clone();
                async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await }
            })
            .await?
            .map_err(other)?;
        let revision = resp.header().map_or(0, |h| h.revision());
        Ok((resp.take_kvs(), revision))
    }

    /// What `kvs` (entries under the prefix) say, as a snapshot without its revision. A key that
    /// is not text cannot be one of ours; it is read as best it can be, so an unreadable value
    /// under it is named rather than failing the read.
    fn decode(&self, kvs: &[KeyValue]) -> Snapshot {
        let keys: Vec<_> = kvs.iter().map(|kv| String::from_utf8_lossy(kv.key())).collect();
        self.keys.decode(kvs.iter().zip(&keys).map(|(kv, key)| RawEntry { key, value: kv.value(), mod_revision: kv.mod_revision() }))
    }

    /// A transaction that writes only while `token`'s term leads: [`DcsError::Fenced`] otherwise.
    async fn fenced(&self, token: FencingToken, ops: Vec<TxnOp>) -> Result<(), DcsError> {
        let txn = Txn::new().when([Compare::mod_revision(self.keys.leader(), CompareOp::Equal, token.0)]).and_then(ops);
        let resp = self.txn(txn).await?.map_err(other)?;
        if resp.succeeded() {
            Ok(())
        } else {
            Err(DcsError::Fenced(token))
        }
    }
}

struct RotateOnDrop<'a> {
    conn: &'a Mutex<Conn>,
    generation: u64,
    armed: bool,
}

impl Drop for RotateOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            rotate(self.conn, self.generation);
        }
    }
}

fn rotate(conn: &Mutex<Conn>, generation: u64) {
    let mut c = conn.lock().unwrap();
    if c.generation == generation {
        c.client = None;
        c.next = c.next.wrapping_add(1);
        c.generation += 1;
    }
}

/// Whether `e` says the member could not serve the call (so another member may).
fn unreachable(e: &etcd_client::Error) -> bool {
    use etcd_client::Error as E;
    // gRPC status codes: CANCELLED, UNKNOWN (h2 resets), DEADLINE_EXCEEDED, ABORTED, INTERNAL,
    // UNAVAILABLE (refused connections, and etcd's "no leader" and "request timed out").
    const RETRYABLE: [i32; 6] = [1, 2, 4, 10, 13, 14];
    match e {
        E::TransportError(_) | E::IoError(_) | E::EndpointError(_) | E::WatchError(_) => true,
        E::LeaseKeepAliveError(m) => !m.contains("lease not found"),
        E::GRpcStatus(s) => RETRYABLE.contains(&i32::from(s.code())),
        _ => false,
    }
}

/// The lease a write names does not exist (any more).
fn lease_gone(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => s.message().contains("lease not found"),
        etcd_client::Error::LeaseKeepAliveError(m) => m.contains("lease not found"),
        _ => false,
    }
}

/// Any other etcd error: the call failed; nothing more specific can be said.
fn other(e: etcd_client::Error) -> DcsError {
    DcsError::Unavailable(format!("etcd: {}", human(&e)))
}

/// etcd's error in words for people. etcd-client's own text carries tonic's debug dump
/// (`code: '...', source: tonic::transport::Error(Transport, ConnectError(...))`), which an
/// operator reading `status-dhaf` or a notification cannot use.
fn human(e: &etcd_client::Error) -> String {
    use etcd_client::Error as E;
    match e {
        E::GRpcStatus(status) => {
            let message = status.message();
            // etcd's words for a member that is cut off from the majority.
            let no_quorum = ["no leader", "request timed out", "leader changed", "not capable"];
            if no_quorum.iter().any(|m| message.contains(m)) {
                return format!("no quorum (the member says: {message})");
            }
            // The innermost cause of a failed connection says what happened ("Connection refused").
            let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
            let mut root = None;
            while let Some(c) = cause {
                root = Some(c);
                cause = c.source();
            }
            let root = root.map(plain_io_error);
            match (i32::from(status.code()), root) {
                (14, Some(root)) => format!("cannot connect ({root})"),
                (14, None) => format!("unavailable ({message})"),
                (4, _) => "no answer in time".into(),
                (7 | 16, _) => format!("refused: {message}"),
                (8, _) => format!("out of space or over a limit: {message}"),
                (_, Some(root)) => format!("{message} ({root})"),
                (_, None) => message.to_string(),
            }
        }
        E::TransportError(t) => {
            let mut cur: &(dyn std::error::Error + 'static) = t;
            while let Some(next) = cur.source() {
                cur = next;
            }
            format!("cannot connect ({})", plain_io_error(cur))
        }
        E::IoError(io) => plain_io_error(io),
        other => other.to_string(),
    }
}

/// An I/O error without its `(os error 111)` suffix, lowercase: "connection refused".
fn plain_io_error(e: &(dyn std::error::Error + 'static)) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    chars.next().map(|c| c.to_lowercase().chain(chars).collect()).unwrap_or_default()
}

fn utf8<'a>(what: &str, bytes: &'a [u8]) -> Result<&'a str, DcsError> {
    std::str::from_utf8(bytes).map_err(|e| DcsError::Corrupt { key: what.to_string(), message: e.to_string() })
}

/// The key-value pairs a transaction's range reads returned, in order.
fn read_kvs(resp: &etcd_client::TxnResponse) -> Vec<KeyValue> {
    resp.op_responses()
        .into_iter()
        .filter_map(|r| match r {
            TxnOpResponse::Get(mut g) => Some(g.take_kvs()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[async_trait]
impl Dcs for EtcdDcs {
    async fn register(&self, node: &str, ttl: Duration) -> Result<LeaseId, DcsError> {
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let secs = secs.max(1) as i64;
        let resp = self.call(move |mut c| async move { c.lease_grant(secs, None).await }).await?.map_err(other)?;
        let lease = resp.id();
        let k = &self.keys;
        let alive = TxnOp::put(k.alive(node), "", Some(PutOptions::new().with_lease(lease)));
        let txn = Txn::new()
            .when([Compare::create_revision(k.member(node), CompareOp::Equal, 0)])
            .and_then([alive.clone(), TxnOp::put(k.member(node), "", None)])
            .or_else([alive]);
        match self.txn(txn).await? {
            Ok(_) => Ok(lease),
            Err(e) if lease_gone(&e) => Err(DcsError::LeaseExpired(lease)),
            Err(e) => Err(other(e)),
        }
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), DcsError> {
        // One keep-alive on a short-lived stream: the runtime renews once per heartbeat, so a
        // stream kept open would save nothing worth its reconnection logic.
        let res = self
            .call(move |c| async move {
                let (keeper, stream) = c.lease_client().keep_alive(lease).await?;
                drop((keeper, stream));
                Ok(())
            })
            .await?;
        match res {
            Ok(()) => Ok(()),
            Err(e) if lease_gone(&e) => Err(DcsError::LeaseExpired(lease)),
            Err(e) => Err(other(e)),
        }
    }

    async fn revoke(&self, lease: LeaseId) -> Result<(), DcsError> {
        match self.call(move |mut c| async move { c.lease_revoke(lease).await }).await? {
            Ok(_) => Ok(()),
            // Already gone: revoking is done.
            Err(e) if lease_gone(&e) => Ok(()),
            Err(e) => Err(other(e)),
        }
    }

    async fn campaign(&self, node: &str, lease: LeaseId) -> Result<Option<FencingToken>, DcsError> {
        let key = self.keys.leader();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), node, Some(PutOptions::new().with_lease(lease))), TxnOp::get(key.clone(), None)])
            .or_else([TxnOp::get(key.clone(), None)]);
        let resp = match self.txn(txn).await? {
            Ok(resp) => resp,
            Err(e) if lease_gone(&e) => return Err(DcsError::LeaseExpired(lease)),
            Err(e) => return Err(other(e)),
        };
        let Some(kv) = read_kvs(&resp).into_iter().next() else {
            // Taken and gone between the compare and the read cannot happen in one
            // transaction; a missing key means nobody leads and the put was not made.
            return Ok(None);
        };
        let ours = resp.succeeded() || (kv.value() == node.as_bytes() && kv.lease() == lease);
        Ok(ours.then_some(FencingToken(kv.mod_revision())))
    }

    async fn resign(&self, token: FencingToken) -> Result<(), DcsError> {
        let key = self.keys.leader();
        let txn = Txn::new().when([Compare::mod_revision(key.clone(), CompareOp::Equal, token.0)]).and_then([TxnOp::delete(key, None)]);
        self.txn(txn).await?.map_err(other)?;
        Ok(())
    }

    async fn publish_opinion(
        &self,
        node: &str,
        lease: LeaseId,
        service: &str,
        entry_point: &str,
        opinion: &Opinion,
    ) -> Result<(), DcsError> {
        self.put(self.keys.opinion(node, service, entry_point), encode(opinion), Some(lease)).await
    }

    async fn publish_definitions(
        &self,
        node: &str,
        lease: LeaseId,
        definitions: &std::collections::BTreeMap<String, ServiceDefinition>,
    ) -> Result<(), DcsError> {
        self.put(self.keys.definitions(node), encode(definitions), Some(lease)).await
    }

    async fn withdraw_opinion(&self, node: &str, service: &str, entry_point: &str) -> Result<(), DcsError> {
        self.delete(self.keys.opinion(node, service, entry_point)).await.map(drop)
    }

    async fn snapshot(&self) -> Result<Snapshot, DcsError> {
        let (kvs, revision) = self.range_at(self.keys.prefix().to_string()).await?;
        Ok(Snapshot { revision, ..self.decode(&kvs) })
    }

    async fn leader(&self) -> Result<Option<Leader>, DcsError> {
        let key = self.keys.leader();
        let resp = self
            .call(move |mut c| {
                let key = key.clone();
                async move { c.get(key, None).await }
            })
            .await?
            .map_err(other)?;
        // Decoded as the snapshot decodes it, so the two never disagree.
        Ok(self.decode(resp.kvs()).leader)
    }

    async fn watch(&self) -> Result<Watch, DcsError> {
        let prefix = self.keys.prefix().to_string();
        let (client, mut stream) = self
            .call(move |c| {
                let prefix = prefix.clone();
                async move {
                    let mut stream = c.watch_client().watch(prefix, Some(WatchOptions::new().with_prefix())).await?;
                    // The first answer confirms the watch exists: changes from now on are seen.
                    match stream.message().await? {
                        Some(r) if r.created() && !r.canceled() => Ok((c, stream)),
                        Some(r) => Err(etcd_client::Error::WatchError(format!("watch refused: {}", r.cancel_reason()))),
                        None => Err(etcd_client::Error::WatchError("watch stream ended at once".into())),
                    }
                }
            })
            .await?
            .map_err(other)?;
        let (tx, watch) = Watch::channel();
        let keys = self.keys.clone();
        tokio::spawn(async move {
            // The client keeps the connection open as long as the stream is read.
            let _client = client;
            loop {
                match stream.message().await {
                    // Cancelled (compacted past, or the member lost its leader): the watcher
                    // reads everything again and watches anew.
                    Ok(Some(r)) if r.canceled() => break,
                    Ok(Some(r)) => {
                        let changes: Vec<_> = r
                            .events()
                            .iter()
                            .filter_map(|e| {
                                let kv = e.kv()?;
                                let value = (e.event_type() == EventType::Put).then(|| kv.value());
                                Some(keys.change(&String::from_utf8_lossy(kv.key()), value, kv.mod_revision()))
                            })
                            .collect();
                        if !changes.is_empty() && !tx.send(changes) {
                            break;
                        }
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            // Dropping `tx` closes the watch: the watcher watches again.
        });
        Ok(watch)
    }

    async fn put_switchover(&self, service: &str, request: &SwitchoverRequest) -> Result<(), DcsError> {
        let value = encode(&SwitchoverRequest { revision: 0, ..request.clone() });
        self.put(self.keys.switchover(service), value, None).await
    }

    async fn purge_switchover(&self, service: &str, purge: Purge) -> Result<(), DcsError> {
        let key = self.keys.switchover(service);
        let (token, revision) = match purge {
            Purge::Any => return self.delete(key).await.map(drop),
            Purge::Fenced { token, revision } => (token, revision),
        };
        // A compare-and-delete: only the request the leader means, only in its term. When the
        // compare fails, the leader key read back tells a term that is over from a request that
        // was replaced or is gone (nothing to do).
        let leader = self.keys.leader();
        let txn = Txn::new()
            .when([
                Compare::mod_revision(leader.clone(), CompareOp::Equal, token.0),
                Compare::mod_revision(key.clone(), CompareOp::Equal, revision),
            ])
            .and_then([TxnOp::delete(key, None)])
            .or_else([TxnOp::get(leader, None)]);
        let resp = self.txn(txn).await?.map_err(other)?;
        let leads = resp.succeeded() || read_kvs(&resp).first().is_some_and(|kv| kv.mod_revision() == token.0);
        if leads {
            Ok(())
        } else {
            Err(DcsError::Fenced(token))
        }
    }

    async fn set_maintenance(&self, service: &str, entry_point: &str, on: bool) -> Result<(), DcsError> {
        let key = self.keys.maintenance(service, entry_point);
        if on {
            // Only if absent, so setting it twice writes once.
            let txn = Txn::new().when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)]).and_then([TxnOp::put(key, "", None)]);
            self.txn(txn).await?.map_err(other)?;
            Ok(())
        } else {
            self.delete(key).await.map(drop)
        }
    }

    async fn set_pause(&self, pause: Option<&Pause>) -> Result<(), DcsError> {
        match pause {
            Some(p) => self.put(self.keys.paused(), encode(p), None).await,
            None => self.delete(self.keys.paused()).await.map(drop),
        }
    }

    async fn record_switch(&self, service: &str, record: &SwitchRecord) -> Result<(), DcsError> {
        self.fenced(record.token, vec![TxnOp::put(self.keys.record(service), encode(record), None)]).await
    }

    async fn decommission(&self, node: &str) -> Result<(), DcsError> {
        let txn = Txn::new()
            .when([Compare::create_revision(self.keys.alive(node), CompareOp::Equal, 0)])
            .and_then([TxnOp::delete(self.keys.member(node), None)]);
        let resp = self.txn(txn).await?.map_err(other)?;
        if !resp.succeeded() {
            return Err(DcsError::NodeAlive(node.into()));
        }
        let deleted = resp.op_responses().into_iter().any(|r| matches!(r, TxnOpResponse::Delete(d) if d.deleted() > 0));
        if deleted {
            Ok(())
        } else {
            Err(DcsError::UnknownNode(node.into()))
        }
    }

    async fn kv_get(&self, namespace: &str, key: &str) -> Result<Option<String>, DcsError> {
        let full = self.keys.kv(namespace, key);
        let mut resp = self
            .call(move |mut c| {
                let full = full.clone();
                async move { c.get(full, None).await }
            })
            .await?
            .map_err(other)?;
        let key = self.keys.kv(namespace, key);
        resp.take_kvs().first().map(|kv| utf8(&key, kv.value()).map(str::to_string)).transpose()
    }

    async fn kv_put(&self, namespace: &str, key: &str, value: &str) -> Result<(), DcsError> {
        self.put(self.keys.kv(namespace, key), value.to_string(), None).await
    }

    async fn kv_put_if(
        &self,
        namespace: &str,
        key: &str,
        value: &str,
        previous: Option<&str>,
        token: FencingToken,
    ) -> Result<bool, DcsError> {
        // One transaction: the term's leader key as it was won, and the value still the one the
        // caller read. When it fails, the leader key read back tells a term that is over from a
        // value that changed.
        let (leader, full) = (self.keys.leader(), self.keys.kv(namespace, key));
        let unchanged = match previous {
            Some(v) => Compare::value(full.clone(), CompareOp::Equal, v),
            None => Compare::create_revision(full.clone(), CompareOp::Equal, 0),
        };
        let txn = Txn::new()
            .when([Compare::mod_revision(leader.clone(), CompareOp::Equal, token.0), unchanged])
            .and_then([TxnOp::put(full, value, None)])
            .or_else([TxnOp::get(leader, None)]);
        let resp = self.txn(txn).await?.map_err(other)?;
        if resp.succeeded() {
            Ok(true)
        } else if read_kvs(&resp).first().is_some_and(|kv| kv.mod_revision() == token.0) {
            Ok(false)
        } else {
            Err(DcsError::Fenced(token))
        }
    }

    async fn kv_delete(&self, namespace: &str, key: &str) -> Result<(), DcsError> {
        self.delete(self.keys.kv(namespace, key)).await.map(drop)
    }

    async fn kv_list(&self, namespace: &str) -> Result<Vec<(String, String)>, DcsError> {
        let prefix = self.keys.kv_prefix(namespace);
        let kvs = self.range(prefix.clone()).await?;
        kvs.iter()
            .map(|kv| {
                let key = utf8(&prefix, kv.key())?;
                let value = utf8(key, kv.value())?;
                Ok((key[prefix.len()..].to_string(), value.to_string()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhaf_core::config::Config;

    const SEED: &str = "dhaf: { cluster-name: c1, node-name: n1 }
etcd:
  hosts: 127.0.0.1:2379,http://127.0.0.2:2379
services:
  - name: main
    domain: foo.com
    entry-points: [{ name: ep-1, ip: 10.0.0.1 }]
    switcher: { type: exec, init: /i, switch: /s }
    health-checker: { type: tcp, port: 443 }
";

    /// The seed's file with its `etcd:` section replaced, read as the node reads it.
    fn read(etcd: &str) -> Result<Option<EtcdConfig>, ConfigError> {
        let config = Config::parse(&SEED.replace("etcd:\n  hosts: 127.0.0.1:2379,http://127.0.0.2:2379\n", etcd))?;
        let Some(section) = config.dcs else { return Ok(None) };
        let f = section.fields();
        let etcd = EtcdConfig::parse(&f);
        f.into_result(etcd)
    }

    fn problems(etcd: &str) -> Vec<String> {
        let section = SEED.replace("etcd:\n  hosts: 127.0.0.1:2379,http://127.0.0.2:2379\n", etcd);
        let config = Config::parse(&section).expect("the core config is valid");
        match crate::registry().dcs(&config) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn the_seed_s_etcd_section_reads_as_before() {
        let etcd = read(&SEED[SEED.find("etcd:").unwrap()..SEED.find("services:").unwrap()]).unwrap().unwrap();
        assert_eq!(etcd.hosts, vec!["http://127.0.0.1:2379", "http://127.0.0.2:2379"]);
        assert_eq!((etcd.username, etcd.password, etcd.tls), (None, None, None));
        assert!(read("").unwrap().is_none(), "no section: the embedded dcs");
        let typed = read("dcs: { type: etcd, hosts: 10.0.0.1:2379 }\n").unwrap().unwrap();
        assert_eq!(typed.hosts, ["http://10.0.0.1:2379"]);
    }

    #[test]
    fn bad_etcd_settings_are_named_by_their_key_path() {
        assert!(problems("etcd:\n  hosts: nohostport,127.0.0.1:2379\n")[0].starts_with("etcd.hosts: 'http://nohostport'"));
        assert_eq!(problems("etcd:\n  hosts: ' , '\n"), ["etcd.hosts: lists no host; write `ip1:port1,ip2:port2`"]);
        assert_eq!(problems("etcd:\n  hosts: ~\n"), ["etcd.hosts: is required"]);
        assert_eq!(
            problems("etcd:\n  hosts: 127.0.0.1:2379\n  username: u\n"),
            ["etcd.password: etcd.username and etcd.password go together"]
        );
        assert_eq!(
            problems("etcd:\n  hosts: 127.0.0.1:2379\n  tls: { cert: /nonexistent/c.pem }\n  hots: x\n"),
            [
                "etcd.tls.key: etcd.tls.cert and etcd.tls.key go together",
                "etcd.tls.cert: no such file: /nonexistent/c.pem",
                "etcd.hots: unknown key (known here: hosts, password, tls, username)",
            ]
        );
        assert_eq!(problems("dcs: { type: etcd, hosts: 'a' }\n"), ["dcs.hosts: 'http://a' is not `host:port` or `http(s)://host:port`"]);
        assert!(problems("etcd:\n  hosts: 127.0.0.1:2379\n  username: u\n  password: p\n").is_empty());
    }

    #[test]
    fn the_password_is_never_shown() {
        let etcd = read("etcd: { hosts: 127.0.0.1:2379, username: u, password: etcd-secret }\n").unwrap().unwrap();
        assert!(!format!("{etcd:?}").contains("etcd-secret"), "{etcd:?}");
        let dcs = EtcdDcs::new(&etcd, "c1");
        assert!(!format!("{dcs:?}").contains("etcd-secret"), "{dcs:?}");
    }
}
