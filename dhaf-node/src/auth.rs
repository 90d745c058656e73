//! Who may call what: bearer tokens with roles, the failed-authentication limit per client
//! address, and the audit trail of mutations.
//!
//! Every route says what it needs ([`Access`]); [`Guard::check`] turns a request's
//! `Authorization` header into a [`Caller`] or a refusal. Tokens are kept as SHA-256 digests
//! only and compared in constant time, all of them every time, so neither memory dumps nor
//! response times tell a secret. A presented token is never logged, stored or echoed.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use dhaf_core::config::{Role, TokenSecret, WebApiConfig};
use serde::Serialize;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Open to all, always (`/healthz`, `/leader`, the OpenAPI document).
    Open,
    /// A token of at least this role. For [`Role::Read`] only while tokens are configured and
    /// `public-read` is off.
    Role(Role),
}

/// The holder of the token a request carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's `name` (`token` for the single `dhaf.web-api.token`).
    pub name: String,
    /// Its role.
    pub role: Role,
}

/// Why a request was refused by the guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No token is configured, so mutations are refused.
    NotConfigured,
    /// No bearer token was presented.
    Missing,
    /// The token matches none configured.
    Wrong,
    /// Too many wrong tokens from this address lately; try again after this long.
    TooManyFailures(Duration),
    /// The token is valid, its role too small.
    Forbidden {
        /// The holder.
        caller: Caller,
        /// The role the route needs.
        needs: Role,
    },
}

/// Wrong tokens allowed per client address within [`FAILURE_WINDOW`] before it is refused outright.
pub const FAILURE_LIMIT: u32 = 20;
/// The window [`FAILURE_LIMIT`] counts in.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Wrong tokens logged per address and window; later ones are counted, logged once in sum.
const FAILURES_LOGGED: u32 = 5;
/// Addresses tracked at most; the oldest are forgotten first, so a spray of sources costs bounded memory.
const TRACKED_ADDRESSES: usize = 4096;

/// Bearer tokens, the failed-authentication limit and the audit trail of one API.
pub struct Guard {
    tokens: Vec<Known>,
    public_read: bool,
    failures: Mutex<HashMap<IpAddr, Failures>>,
    audit: Mutex<VecDeque<AuditRecord>>,
}

struct Known {
    name: String,
    role: Role,
    digest: [u8; 32],
}

struct Failures {
    since: Instant,
    count: u32,
}

/// Mutations remembered per node, newest last.
pub const AUDIT_KEPT: usize = 1000;

/// One mutation, accepted or refused: who, from where, what, and how it ended.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditRecord {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The token's name; `null` when none was valid.
    pub token: Option<String>,
    /// The token's role.
    pub role: Option<Role>,
    /// The client's address (`ip:port`), or `unknown` when the server did not say.
    pub client: String,
    /// HTTP method.
    pub method: String,
    /// Request path, cut at 256 characters.
    pub path: String,
    /// `accepted` or `refused`.
    pub outcome: &'static str,
    /// The HTTP status answered.
    pub status: u16,
    /// The API's error code when refused.
    pub code: Option<String>,
}

fn digest(secret: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, secret);
    d.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// Compare without an early exit, so response time does not tell how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= u64::from(x ^ y);
    }
    diff == 0
}

impl Guard {
    /// The guard for `dhaf.web-api`.
    pub fn new(web: &WebApiConfig) -> Guard {
        let mut tokens: Vec<Known> = web
            .tokens
            .iter()
            .map(|t| Known {
                name: t.name.clone(),
                role: t.role,
                digest: match &t.secret {
                    TokenSecret::Plain(p) => digest(p.as_bytes()),
                    TokenSecret::Sha256(d) => *d,
                },
            })
            .collect();
        if let Some(t) = &web.token {
            tokens.push(Known { name: "token".into(), role: Role::Admin, digest: digest(t.as_bytes()) });
        }
        Guard { tokens, public_read: web.public_read, failures: Mutex::default(), audit: Mutex::default() }
    }

    /// Whether a route with `access` needs a token at all on this node.
    pub fn needs_token(&self, access: Access) -> bool {
        match access {
            Access::Open => false,
            Access::Role(Role::Read) => !self.tokens.is_empty() && !self.public_read,
            Access::Role(_) => true,
        }
    }

    /// Decide a request needing `access` from its `Authorization` header, sent from `client`.
    /// `Ok(None)`: allowed without a token.
    pub fn check(&self, access: Access, authorization: Option<&[u8]>, client: Option<IpAddr>) -> Result<Option<Caller>, Refusal> {
        let Access::Role(needs) = access else { return Ok(None) };
        if !self.needs_token(access) {
            return Ok(None);
        }
        if self.tokens.is_empty() {
            return Err(Refusal::NotConfigured);
        }
        // No token is no guess: it is answered 401 even from a blocked address, which tells nothing.
        let Some(given) = authorization.and_then(bearer) else { return Err(Refusal::Missing) };
        if let Some(wait) = client.and_then(|ip| self.blocked_for(ip)) {
            return Err(Refusal::TooManyFailures(wait));
        }
        let d = digest(given);
        let mut found = None;
        for t in &self.tokens {
            if constant_time_eq(&t.digest, &d) && found.is_none() {
                found = Some(t);
            }
        }
        let Some(t) = found else {
            if let Some(ip) = client {
                self.failed(ip);
            } else {
                tracing::warn!("rest api: wrong token from an unknown address");
            }
            return Err(Refusal::Wrong);
        };
        let caller = Caller { name: t.name.clone(), role: t.role };
        if t.role < needs {
            return Err(Refusal::Forbidden { caller, needs });
        }
        Ok(Some(caller))
    }

    fn blocked_for(&self, ip: IpAddr) -> Option<Duration> {
        let failures = self.failures.lock().unwrap();
        let f = failures.get(&ip)?;
        let age = f.since.elapsed();
        (f.count >= FAILURE_LIMIT && age < FAILURE_WINDOW).then(|| FAILURE_WINDOW - age)
    }

    fn failed(&self, ip: IpAddr) {
        let mut failures = self.failures.lock().unwrap();
        if failures.len() >= TRACKED_ADDRESSES && !failures.contains_key(&ip) {
            failures.retain(|_, f| f.since.elapsed() < FAILURE_WINDOW);
            if failures.len() >= TRACKED_ADDRESSES {
                let oldest = failures.iter().min_by_key(|(_, f)| f.since).map(|(ip, _)| *ip);
                failures.remove(&oldest.expect("the map is full"));
            }
        }
        let f = failures.entry(ip).or_insert(Failures { since: Instant::now(), count: 0 });
        if f.since.elapsed() >= FAILURE_WINDOW {
            *f = Failures { since: Instant::now(), count: 0 };
        }
        f.count += 1;
        // The presented token is never logged: it may be a real one, mistyped.
        if f.count <= FAILURES_LOGGED {
            tracing::warn!(client = %ip, failures = f.count, "rest api: wrong token");
        } else if f.count == FAILURE_LIMIT {
            tracing::warn!(
                client = %ip,
                failures = f.count,
                window_s = FAILURE_WINDOW.as_secs(),
                "rest api: too many wrong tokens from this address; refusing it for the rest of the window"
            );
        }
    }

    /// Keep and log one mutation's record.
    pub fn audit(&self, record: AuditRecord) {
        tracing::info!(
            target: "dhaf::audit",
            token = record.token.as_deref().unwrap_or("-"),
            client = %record.client,
            method = %record.method,
            path = %record.path,
            outcome = record.outcome,
            status = record.status,
            code = record.code.as_deref().unwrap_or("-"),
            "audit"
        );
        let mut audit = self.audit.lock().unwrap();
        if audit.len() >= AUDIT_KEPT {
            audit.pop_front();
        }
        audit.push_back(record);
    }

    /// The kept audit records, oldest first.
    pub fn audit_records(&self) -> Vec<AuditRecord> {
        self.audit.lock().unwrap().iter().cloned().collect()
    }
}

/// The token of an `Authorization: Bearer <token>` header; the scheme is case-insensitive.
fn bearer(header: &[u8]) -> Option<&[u8]> {
    let text = std::str::from_utf8(header).ok()?.trim();
    let (scheme, token) = text.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token.as_bytes())
}

/// Milliseconds since the Unix epoch, for records.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhaf_core::config::ApiToken;

    fn web(tokens: &[(&str, Role, &str)], legacy: Option<&str>, public_read: bool) -> WebApiConfig {
        let mut web = WebApiConfig::default();
        web.port = 0;
        web.token = legacy.map(str::to_string);
        web.tokens =
            tokens.iter().map(|(n, r, s)| ApiToken { name: n.to_string(), role: *r, secret: TokenSecret::Plain(s.to_string()) }).collect();
        web.public_read = public_read;
        web
    }

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        assert!(constant_time_eq(b"secret-token", b"secret-token"));
        assert!(!constant_time_eq(b"secret-token", b"secret-tokeN"));
        assert!(!constant_time_eq(b"secret-token", b"secret-token-longer"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"BEARER abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bEaReR   abc  "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(b"Bearerabc"), None);
    }

    #[test]
    fn roles_include_the_ones_below() {
        let g = Guard::new(&web(&[("r", Role::Read, "read-secret"), ("o", Role::Operate, "operate-secret")], Some("admin-secret"), false));
        let check = |need: Role, tok: &str| g.check(Access::Role(need), Some(format!("Bearer {tok}").as_bytes()), None);
        assert_eq!(check(Role::Read, "read-secret").unwrap().unwrap().name, "r");
        assert!(matches!(check(Role::Operate, "read-secret"), Err(Refusal::Forbidden { needs: Role::Operate, .. })));
        assert_eq!(check(Role::Operate, "operate-secret").unwrap().unwrap().role, Role::Operate);
        assert!(matches!(check(Role::Admin, "operate-secret"), Err(Refusal::Forbidden { .. })));
        assert_eq!(check(Role::Admin, "admin-secret").unwrap().unwrap(), Caller { name: "token".into(), role: Role::Admin });
        assert_eq!(check(Role::Read, "nope-secret"), Err(Refusal::Wrong));
        assert_eq!(g.check(Access::Role(Role::Read), None, None), Err(Refusal::Missing));
        assert_eq!(g.check(Access::Open, None, None), Ok(None));
    }

    #[test]
    fn reads_are_open_without_tokens_or_with_public_read() {
        for g in [Guard::new(&web(&[], None, false)), Guard::new(&web(&[("r", Role::Read, "read-secret")], None, true))] {
            assert_eq!(g.check(Access::Role(Role::Read), None, None), Ok(None));
        }
        let g = Guard::new(&web(&[], None, false));
        assert_eq!(g.check(Access::Role(Role::Operate), None, None), Err(Refusal::NotConfigured));
    }

    #[test]
    fn too_many_wrong_tokens_block_only_that_address_for_the_window() {
        let g = Guard::new(&web(&[("r", Role::Read, "read-secret")], None, false));
        let bad: IpAddr = "192.0.2.1".parse().unwrap();
        let good: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..FAILURE_LIMIT {
            assert_eq!(g.check(Access::Role(Role::Read), Some(b"Bearer guess-guess"), Some(bad)), Err(Refusal::Wrong));
        }
        // Blocked even with the right token now; another address is not.
        assert!(matches!(g.check(Access::Role(Role::Read), Some(b"Bearer read-secret"), Some(bad)), Err(Refusal::TooManyFailures(_))));
        assert!(g.check(Access::Role(Role::Read), Some(b"Bearer read-secret"), Some(good)).is_ok());
        assert_eq!(g.check(Access::Role(Role::Read), None, Some(bad)), Err(Refusal::Missing), "no token is no guess");
    }
}
