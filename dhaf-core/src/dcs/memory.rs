//! The in-memory DCS: the embedded default for a single node, and the fake for tests.
//!
//! Inside it is a tiny etcd: a revisioned key-value map with leases, laid out by [`super::keys`]
//! exactly like the etcd implementation. Leases expire on tokio's clock, so tests with paused
//! time are exact. Several [`MemoryDcs`] handles share one store; [`MemoryDcs::client`] gives a
//! handle that acts as one node, so faults can cut that node off alone.
//!
//! Faults ([`Faults`]): the whole store unavailable, every call slow, one node cut off, writes
//! refused while everything else passes (etcd's NOSPACE alarm), one node paused (its calls wait,
//! unsent, until it resumes, as a stopped process's would).
//!
//! With a state file, the entries not bound to a lease (members, switchover requests,
//! maintenance, switch records, providers' data) are written there on every change and read back
//! at start, so a single node keeps them across restarts. A change to them is acknowledged only
//! once it is on disk (a temporary file, synced, renamed over the state file, the directory
//! synced); a change that cannot be saved is undone and the call fails, naming the file.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::keys::{encode, Keys, RawEntry};
use super::{Dcs, DcsError, Leader, LeaseId, Purge, Snapshot, SwitchoverRequest, Watch, WatchSender};
use crate::model::{FencingToken, Opinion, Pause, ServiceDefinition, SwitchRecord};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    value: String,
    #[serde(skip)]
    lease: Option<LeaseId>,
    mod_revision: i64,
}

#[derive(Default)]
struct Store {
    kv: BTreeMap<String, Entry>,
    leases: HashMap<LeaseId, (Instant, Duration)>,
    revision: i64,
    next_lease: LeaseId,
    watchers: Vec<WatchSender>,
    /// The changes made since watchers were last told: key, new value (`None`: deleted), revision.
    pending: Vec<(String, Option<String>, i64)>,
    state_file: Option<PathBuf>,
    /// A durable entry (not bound to a lease) changed since the state file was written.
    durable_dirty: bool,
    reaper: bool,
    /// When each leader term ended (its key deleted, or its lease expired or revoked), by term.
    terms_ended: HashMap<i64, Instant>,
    /// The calls since the start of the current second, for [`Faults::spin_limit`].
    calls: Option<(Instant, u32)>,
    /// When the calls went past [`Faults::spin_limit`].
    spinning: Option<Instant>,
}

/// Faults to inject, shared by every handle of a store; set with [`MemoryDcs`]'s fault methods
/// (`set_faults`, `cut_off`, …), which only the `testing` feature offers.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Every call fails with [`DcsError::Unavailable`].
    pub unavailable: bool,
    /// Every call takes this long first.
    pub latency: Duration,
    /// Calls made by these nodes' handles fail with [`DcsError::Unavailable`].
    pub cut_off: BTreeSet<String>,
    /// Calls that store a value (puts, lease grants, campaigns) fail with
    /// [`DcsError::Unavailable`], while reads, deletes, keep-alives and revokes pass: etcd under
    /// its NOSPACE alarm ("database space exceeded").
    pub writes_refused: bool,
    /// The same, for calls made by these nodes' handles only.
    pub writes_refused_for: BTreeSet<String>,
    /// Calls made by these nodes' handles wait, before they reach the store, until the node is
    /// no longer paused: a stopped process, whose requests go out when it runs again.
    pub paused: BTreeSet<String>,
    /// With `Some(n)`, more than `n` calls within one second of tokio's clock are taken for a
    /// loop that spins: from then on the store answers nobody, so paused time moves on and the
    /// test sees it (`MemoryDcs::spinning`, with the `testing` feature) instead of running out of
    /// memory.
    pub spin_limit: Option<u32>,
}

struct Shared {
    keys: Keys,
    /// How many snapshots were read, by every handle.
    snapshots: std::sync::atomic::AtomicU64,
    store: Mutex<Store>,
    faults: Mutex<Faults>,
    /// Bumped whenever the faults change, so paused calls look again.
    faults_changed: crate::signal::Signal,
}

/// An in-memory DCS store, or one node's handle to it (see [`MemoryDcs::client`]).
///
/// One node alone needs nothing else (it is what [`crate::runtime::Node::builder`] uses when
/// given no DCS). Several nodes in one process share one store, each through its own client, so
/// presence, votes and the election work as over etcd:
///
/// ```
/// use std::sync::Arc;
/// use dhaf_core::config::Config;
/// use dhaf_core::dcs::memory::MemoryDcs;
/// use dhaf_core::runtime::Node;
///
/// let dcs = MemoryDcs::new("shop");
/// let nodes: Vec<Node> = ["node-1", "node-2", "node-3"]
///     .into_iter()
///     .map(|name| Node::builder(Config::new("shop", name)).dcs(Arc::new(dcs.client(name))).build().unwrap())
///     .collect();
/// assert_eq!(nodes.len(), 3);
/// ```
#[derive(Clone)]
pub struct MemoryDcs {
    shared: Arc<Shared>,
    node: Option<String>,
}

impl MemoryDcs {
    /// A new, empty store for cluster `cluster`.
    pub fn new(cluster: &str) -> Self {
        MemoryDcs {
            shared: Arc::new(Shared {
                keys: Keys::new(cluster),
                snapshots: Default::default(),
                store: Mutex::default(),
                faults: Mutex::default(),
                faults_changed: Default::default(),
            }),
            node: None,
        }
    }

    /// A store kept in `path`: read now if it exists, written on every change. Fails, naming
    /// the file, if it cannot be read whole or cannot be written: better not to start than to
    /// acknowledge requests that a restart would lose.
    pub fn with_state_file(cluster: &str, path: &Path) -> Result<Self, DcsError> {
        let dcs = MemoryDcs::new(cluster);
        {
            let mut store = lock(&dcs.shared.store);
            if path.exists() {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| DcsError::Unavailable(format!("cannot read the state file {}: {e}", path.display())))?;
                let kv: BTreeMap<String, Entry> = serde_json::from_str(&text).map_err(|e| {
                    let what = if text.trim().is_empty() {
                        "is empty".to_string()
                    } else if e.is_eof() {
                        format!("is cut short ({e})")
                    } else {
                        format!("is not a state file ({e})")
                    };
                    DcsError::Corrupt {
                        key: path.display().to_string(),
                        message: format!("the state file {what}; restore it from a backup, or remove it to start without saved requests"),
                    }
                })?;
                store.revision = kv.values().map(|e| e.mod_revision).max().unwrap_or(0);
                store.kv = kv;
            }
            // Writing it now proves it can be written, before anything is acknowledged.
            save(path, &store.kv).map_err(|e| unsaved(path, &e))?;
            store.state_file = Some(path.to_path_buf());
        }
        Ok(dcs)
    }

    /// A handle that acts as node `node`: [`Faults::cut_off`] applies to it.
    pub fn client(&self, node: &str) -> MemoryDcs {
        MemoryDcs { shared: self.shared.clone(), node: Some(node.to_string()) }
    }

    /// Change the injected faults.
    #[cfg(any(test, feature = "testing"))]
    pub fn set_faults(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut lock(&self.shared.faults));
        self.shared.faults_changed.changed();
    }

    /// Make the whole store (un)available.
    #[cfg(any(test, feature = "testing"))]
    pub fn set_unavailable(&self, on: bool) {
        self.set_faults(|f| f.unavailable = on);
    }

    /// Cut node `node` off from the store, or reconnect it.
    #[cfg(any(test, feature = "testing"))]
    pub fn cut_off(&self, node: &str, on: bool) {
        self.set_faults(|f| {
            if on {
                f.cut_off.insert(node.to_string());
            } else {
                f.cut_off.remove(node);
            }
        });
    }

    /// Refuse node `node`'s writes (see [`Faults::writes_refused`]), or accept them again.
    #[cfg(any(test, feature = "testing"))]
    pub fn refuse_writes(&self, node: &str, on: bool) {
        self.set_faults(|f| {
            if on {
                f.writes_refused_for.insert(node.to_string());
            } else {
                f.writes_refused_for.remove(node);
            }
        });
    }

    /// Pause node `node` (see [`Faults::paused`]), or let it run again.
    #[cfg(any(test, feature = "testing"))]
    pub fn pause(&self, node: &str, on: bool) {
        self.set_faults(|f| {
            if on {
                f.paused.insert(node.to_string());
            } else {
                f.paused.remove(node);
            }
        });
    }

    /// When the calls went past [`Faults::spin_limit`], if they did.
    #[cfg(any(test, feature = "testing"))]
    pub fn spinning(&self) -> Option<Instant> {
        lock(&self.shared.store).spinning
    }

    /// When the leader term `term` ended: its leader key deleted, or the lease it was bound to
    /// revoked or expired (then the lease's deadline, even if the store noticed later). `None`
    /// while it lasts, or if it never was.
    #[cfg(any(test, feature = "testing"))]
    pub fn term_ended(&self, term: FencingToken) -> Option<Instant> {
        let mut store = lock(&self.shared.store);
        expire(&mut store, &self.shared.keys, Instant::now());
        store.terms_ended.get(&term.0).copied()
    }

    /// Make every call take `latency` first.
    #[cfg(any(test, feature = "testing"))]
    pub fn set_latency(&self, latency: Duration) {
        self.set_faults(|f| f.latency = latency);
    }

    /// Put `value` at `key` (relative to the cluster's prefix) beneath the [`Dcs`] contract, as a
    /// newer version of dhaf or a hand edit would leave it.
    #[cfg(any(test, feature = "testing"))]
    pub fn raw_put(&self, key: &str, value: &str) {
        if let Err(e) = self.with_store(|s, k| put(s, format!("{}{key}", k.prefix()), value.to_string(), None)) {
            panic!("raw put of {key}: {e}");
        }
    }

    /// How many full snapshots have been read from the store, through any handle.
    pub fn snapshots_read(&self) -> u64 {
        self.shared.snapshots.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many writes the store has taken (its revision).
    pub fn revision(&self) -> i64 {
        lock(&self.shared.store).revision
    }

    /// Pass the injected faults for a call that reads, deletes or renews.
    /// Count a call against [`Faults::spin_limit`]: whether the store has stopped answering.
    fn spins(&self) -> bool {
        let Some(limit) = lock(&self.shared.faults).spin_limit else { return false };
        let now = Instant::now();
        let mut store = lock(&self.shared.store);
        let calls = match store.calls {
            Some((since, n)) if now < since + Duration::from_secs(1) => (since, n + 1),
            _ => (now, 1),
        };
        store.calls = Some(calls);
        if calls.1 > limit && store.spinning.is_none() {
            store.spinning = Some(now);
        }
        store.spinning.is_some()
    }

    async fn enter(&self) -> Result<(), DcsError> {
        self.enter_as(false).await
    }

    /// Pass the injected faults for a call that stores a value.
    async fn enter_write(&self) -> Result<(), DcsError> {
        self.enter_as(true).await
    }

    async fn enter_as(&self, write: bool) -> Result<(), DcsError> {
        if let Some(node) = &self.node {
            self.shared.faults_changed.wait_until(|| !lock(&self.shared.faults).paused.contains(node)).await;
        }
        if self.spins() {
            return std::future::pending().await;
        }
        let (latency, down, refused) = {
            let f = lock(&self.shared.faults);

            let mine = |set: &BTreeSet<String>| self.node.as_ref().is_some_and(|n| set.contains(n));
            (f.latency, f.unavailable || mine(&f.cut_off), write && (f.writes_refused || mine(&f.writes_refused_for)))
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if down {
            return Err(DcsError::Unavailable("injected fault: dcs unreachable".into()));
        }
        if refused {
            return Err(DcsError::Unavailable("injected fault: writes refused, database space exceeded".into()));
        }
        Ok(())
    }

    /// Run `f` on the store after expiring leases; save and notify watchers if it wrote.
    ///
    /// With a state file, a durable change that cannot be saved is undone whole (the call's other
    /// changes with it) and the call fails: nobody has seen it, and nothing unsaved is
    /// acknowledged. The store stays locked while it saves, so no other call sees the change
    /// before it is durable; that costs a sync per durable change, rare next to the reads.
    fn with_store<T>(&self, f: impl FnOnce(&mut Store, &Keys) -> T) -> Result<T, DcsError> {
        let mut store = lock(&self.shared.store);
        let at_entry = store.revision;
        expire(&mut store, &self.shared.keys, Instant::now());
        let before = store.revision;
        let undo = store.state_file.is_some().then(|| (store.kv.clone(), store.leases.clone()));
        let out = f(&mut store, &self.shared.keys);
        if std::mem::take(&mut store.durable_dirty) {
            if let (Some(path), Some((kv, leases))) = (store.state_file.clone(), undo) {
                if let Err(e) = save(&path, &store.kv) {
                    (store.kv, store.leases, store.revision) = (kv, leases, before);
                    store.pending.clear();
                    tracing::error!(path = %path.display(), error = %e, "cannot save the embedded dcs state file: the change is refused");
                    return Err(unsaved(&path, &e));
                }
            }
        }
        if store.revision != at_entry {
            tell_watchers(&mut store, &self.shared.keys);
        }
        if !store.reaper && !store.leases.is_empty() {
            store.reaper = true;
            spawn_reaper(Arc::downgrade(&self.shared));
        }
        Ok(out)
    }
}

/// Lock `m` even if a panic poisoned it. Nothing read from the store can panic any more, but a
/// store that panicked on every call after one bad moment would stop every node at once; each
/// change to the store is made whole or not at all, so what a panic leaves behind is consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Send the changes made since the last call to every watcher, forgetting those gone.
fn tell_watchers(store: &mut Store, keys: &Keys) {
    let pending = std::mem::take(&mut store.pending);
    let changes: Vec<_> = pending.iter().map(|(key, value, rev)| keys.change(key, value.as_deref().map(str::as_bytes), *rev)).collect();
    store.watchers.retain(|w| w.send(changes.clone()));
}

fn expire(store: &mut Store, keys: &Keys, now: Instant) {
    let mut dead: Vec<(LeaseId, Instant)> =
        store.leases.iter().filter(|(_, (deadline, _))| *deadline <= now).map(|(id, (deadline, _))| (*id, *deadline)).collect();
    // In the order they expired (then by id), not the map's: the deletions' revisions and the
    // watch's changes come out the same in every run, so a simulated run replays.
    dead.sort_by_key(|(id, deadline)| (*deadline, *id));
    for (id, deadline) in dead {
        revoke_lease(store, keys, id, deadline);
    }
}

/// Revoke lease `id` as of `at`, with every key bound to it.
fn revoke_lease(store: &mut Store, keys: &Keys, id: LeaseId, at: Instant) -> bool {
    if store.leases.remove(&id).is_none() {
        return false;
    }
    if let Some((_, term, Some(lease))) = leader_of(store, keys) {
        if lease == id {
            store.terms_ended.insert(term, at);
        }
    }
    let gone: Vec<String> = store.kv.iter().filter(|(_, e)| e.lease == Some(id)).map(|(k, _)| k.clone()).collect();
    if !gone.is_empty() {
        store.revision += 1;
        let revision = store.revision;
        for key in gone {
            store.kv.remove(&key);
            store.pending.push((key, None, revision));
        }
    }
    true
}

/// Save the durable entries to `path` so that a crash at any moment leaves either the old file
/// or the new one, whole: a temporary file beside it, synced, renamed over it, the directory
/// synced so the rename itself survives. Only durable entries go to the file: opinions and
/// presence change far more often and are worthless after a restart.
fn save(path: &Path, kv: &BTreeMap<String, Entry>) -> std::io::Result<()> {
    use std::io::Write as _;
    let durable: BTreeMap<&String, &Entry> = kv.iter().filter(|(_, e)| e.lease.is_none()).collect();
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(encode(&durable).as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

fn unsaved(path: &Path, e: &std::io::Error) -> DcsError {
    DcsError::Unavailable(format!("cannot save the state file {}: {e}", path.display()))
}

fn put(store: &mut Store, key: String, value: String, lease: Option<LeaseId>) {
    store.revision += 1;
    store.durable_dirty |= lease.is_none() || store.kv.get(&key).is_some_and(|e| e.lease.is_none());
    let mod_revision = store.revision;
    store.pending.push((key.clone(), Some(value.clone()), mod_revision));
    store.kv.insert(key, Entry { value, lease, mod_revision });
}

fn delete(store: &mut Store, key: &str) -> bool {
    if let Some(e) = store.kv.remove(key) {
        store.revision += 1;
        store.pending.push((key.to_string(), None, store.revision));
        store.durable_dirty |= e.lease.is_none();
        true
    } else {
        false
    }
}

/// Expire leases on time even when nobody calls, so watchers hear of dead nodes.
fn spawn_reaper(shared: Weak<Shared>) {
    tokio::spawn(async move {
        loop {
            let next = {
                let Some(shared) = shared.upgrade() else { return };
                let mut store = lock(&shared.store);
                let before = store.revision;
                expire(&mut store, &shared.keys, Instant::now());
                // Only leases expire here: nothing durable changes, nothing to save.
                if store.revision != before {
                    tell_watchers(&mut store, &shared.keys);
                }
                store.leases.values().map(|(d, _)| *d).min()
            };
            let wake = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            tokio::time::sleep_until(wake.max(Instant::now() + Duration::from_millis(1))).await;
        }
    });
}

fn leader_of(store: &Store, keys: &Keys) -> Option<(String, i64, Option<LeaseId>)> {
    store.kv.get(&keys.leader()).map(|e| (e.value.clone(), e.mod_revision, e.lease))
}

#[cfg(any(test, feature = "testing"))]
#[async_trait]
impl super::conformance::RawPut for MemoryDcs {
    async fn raw_put(&self, key: &str, value: &str) {
        MemoryDcs::raw_put(self, key, value);
    }
}

#[async_trait]
impl Dcs for MemoryDcs {
    async fn register(&self, node: &str, ttl: Duration) -> Result<LeaseId, DcsError> {
        self.enter_write().await?;
        self.with_store(|s, k| {
            s.next_lease += 1;
            let id = s.next_lease;
            s.leases.insert(id, (Instant::now() + ttl, ttl));
            put(s, k.alive(node), String::new(), Some(id));
            if !s.kv.contains_key(&k.member(node)) {
                put(s, k.member(node), String::new(), None);
            }
            id
        })
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), DcsError> {
        self.enter().await?;
        self.with_store(|s, _| match s.leases.get_mut(&lease) {
            Some((deadline, ttl)) => {
                *deadline = Instant::now() + *ttl;
                Ok(())
            }
            None => Err(DcsError::LeaseExpired(lease)),
        })?
    }

    async fn revoke(&self, lease: LeaseId) -> Result<(), DcsError> {
        self.enter().await?;
        self.with_store(|s, k| {
            revoke_lease(s, k, lease, Instant::now());
        })?;
        Ok(())
    }

    async fn campaign(&self, node: &str, lease: LeaseId) -> Result<Option<FencingToken>, DcsError> {
        self.enter_write().await?;
        self.with_store(|s, k| {
            if !s.leases.contains_key(&lease) {
                return Err(DcsError::LeaseExpired(lease));
            }
            match leader_of(s, k) {
                Some((leader, rev, held)) => Ok((leader == node && held == Some(lease)).then_some(FencingToken(rev))),
                None => {
                    put(s, k.leader(), node.to_string(), Some(lease));
                    Ok(Some(FencingToken(s.revision)))
                }
            }
        })?
    }

    async fn resign(&self, token: FencingToken) -> Result<(), DcsError> {
        self.enter().await?;
        self.with_store(|s, k| {
            if matches!(leader_of(s, k), Some((_, rev, _)) if rev == token.0) {
                delete(s, &k.leader());
                s.terms_ended.insert(token.0, Instant::now());
            }
        })?;
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
        self.enter_write().await?;
        self.with_store(|s, k| {
            if !s.leases.contains_key(&lease) {
                return Err(DcsError::LeaseExpired(lease));
            }
            put(s, k.opinion(node, service, entry_point), encode(opinion), Some(lease));
            Ok(())
        })?
    }

    async fn publish_definitions(
        &self,
        node: &str,
        lease: LeaseId,
        definitions: &BTreeMap<String, ServiceDefinition>,
    ) -> Result<(), DcsError> {
        self.enter_write().await?;
        self.with_store(|s, k| {
            if !s.leases.contains_key(&lease) {
                return Err(DcsError::LeaseExpired(lease));
            }
            put(s, k.definitions(node), encode(definitions), Some(lease));
            Ok(())
        })?
    }

    async fn withdraw_opinion(&self, node: &str, service: &str, entry_point: &str) -> Result<(), DcsError> {
        self.enter().await?;
        self.with_store(|s, k| delete(s, &k.opinion(node, service, entry_point)))?;
        Ok(())
    }

    async fn snapshot(&self) -> Result<Snapshot, DcsError> {
        self.enter().await?;
        // Copied out and decoded outside the lock: reading values is the caller's business and
        // must not hold up (or, by a bug, poison) the store.
        let (entries, revision): (Vec<(String, Entry)>, i64) = self.with_store(|s, k| {
            let entries =
                s.kv.range(k.prefix().to_string()..)
                    .take_while(|(key, _)| key.starts_with(k.prefix()))
                    .map(|(k, e)| (k.clone(), e.clone()))
                    .collect();
            (entries, s.revision)
        })?;
        self.shared.snapshots.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let snapshot = self.shared.keys.decode(entries.iter().map(|(key, e)| RawEntry {
            key,
            value: e.value.as_bytes(),
            mod_revision: e.mod_revision,
        }));
        Ok(Snapshot { revision, ..snapshot })
    }

    async fn leader(&self) -> Result<Option<Leader>, DcsError> {
        self.enter().await?;
        let (key, entry) = self.with_store(|s, k| (k.leader(), s.kv.get(&k.leader()).cloned()))?;
        // Decoded as the snapshot decodes it, so the two never disagree.
        Ok(entry.and_then(|e| {
            self.shared.keys.decode(std::iter::once(RawEntry { key: &key, value: e.value.as_bytes(), mod_revision: e.mod_revision })).leader
        }))
    }

    async fn watch(&self) -> Result<Watch, DcsError> {
        self.enter().await?;
        let (tx, watch) = Watch::channel();
        self.with_store(|s, _| s.watchers.push(tx))?;
        Ok(watch)
    }

    async fn put_switchover(&self, service: &str, request: &SwitchoverRequest) -> Result<(), DcsError> {
        self.enter_write().await?;
        self.with_store(|s, k| put(s, k.switchover(service), encode(&SwitchoverRequest { revision: 0, ..request.clone() }), None))?;
        Ok(())
    }

    async fn purge_switchover(&self, service: &str, purge: Purge) -> Result<(), DcsError> {
        self.enter().await?;
        self.with_store(|s, k| {
            let key = k.switchover(service);
            if let Purge::Fenced { token, revision } = purge {
                if !matches!(leader_of(s, k), Some((_, rev, _)) if rev == token.0) {
                    return Err(DcsError::Fenced(token));
                }
                if s.kv.get(&key).is_none_or(|e| e.mod_revision != revision) {
                    return Ok(());
                }
            }
            delete(s, &key);
            Ok(())
        })?
    }

    async fn set_maintenance(&self, service: &str, entry_point: &str, on: bool) -> Result<(), DcsError> {
        self.enter_as(on).await?;
        self.with_store(|s, k| {
            let key = k.maintenance(service, entry_point);
            if on {
                if !s.kv.contains_key(&key) {
                    put(s, key, String::new(), None);
                }
            } else {
                delete(s, &key);
            }
        })?;
        Ok(())
    }

    async fn set_pause(&self, pause: Option<&Pause>) -> Result<(), DcsError> {
        self.enter_as(pause.is_some()).await?;
        self.with_store(|s, k| match pause {
            Some(p) => put(s, k.paused(), encode(p), None),
            None => {
                delete(s, &k.paused());
            }
        })?;
        Ok(())
    }

    async fn record_switch(&self, service: &str, record: &SwitchRecord) -> Result<(), DcsError> {
        self.enter_write().await?;
        self.with_store(|s, k| {
            if !matches!(leader_of(s, k), Some((_, rev, _)) if rev == record.token.0) {
                return Err(DcsError::Fenced(record.token));
            }
            put(s, k.record(service), encode(record), None);
            Ok(())
        })?
    }

    async fn decommission(&self, node: &str) -> Result<(), DcsError> {
        self.enter().await?;
        self.with_store(|s, k| {
            if s.kv.contains_key(&k.alive(node)) {
                return Err(DcsError::NodeAlive(node.into()));
            }
            if !delete(s, &k.member(node)) {
                return Err(DcsError::UnknownNode(node.into()));
            }
            Ok(())
        })?
    }

    async fn kv_get(&self, namespace: &str, key: &str) -> Result<Option<String>, DcsError> {
        self.enter().await?;
        self.with_store(|s, k| s.kv.get(&k.kv(namespace, key)).map(|e| e.value.clone()))
    }

    async fn kv_put(&self, namespace: &str, key: &str, value: &str) -> Result<(), DcsError> {
        self.enter_write().await?;
        self.with_store(|s, k| put(s, k.kv(namespace, key), value.to_string(), None))?;
        Ok(())
    }

    async fn kv_put_if(
        &self,
        namespace: &str,
        key: &str,
        value: &str,
        previous: Option<&str>,
        token: FencingToken,
    ) -> Result<bool, DcsError> {
        self.enter_write().await?;
        self.with_store(|s, k| {
            if !matches!(leader_of(s, k), Some((_, rev, _)) if rev == token.0) {
                return Err(DcsError::Fenced(token));
            }
            let key = k.kv(namespace, key);
            if s.kv.get(&key).map(|e| e.value.as_str()) != previous {
                return Ok(false);
            }
            put(s, key, value.to_string(), None);
            Ok(true)
        })?
    }

    async fn kv_delete(&self, namespace: &str, key: &str) -> Result<(), DcsError> {
        self.enter().await?;
        self.with_store(|s, k| delete(s, &k.kv(namespace, key)))?;
        Ok(())
    }

    async fn kv_list(&self, namespace: &str) -> Result<Vec<(String, String)>, DcsError> {
        self.enter().await?;
        self.with_store(|s, k| {
            let prefix = k.kv_prefix(namespace);
            s.kv.range(prefix.clone()..)
                .take_while(|(key, _)| key.starts_with(&prefix))
                .map(|(key, e)| (key[prefix.len()..].to_string(), e.value.clone()))
                .collect()
        })
    }
}
