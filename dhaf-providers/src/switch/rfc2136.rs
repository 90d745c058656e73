//! The `rfc2136` switcher: the service domain's address records on an authoritative DNS server,
//! changed by dynamic update (RFC 2136) signed with TSIG (RFC 8945).
//!
//! ```yaml
//! switcher:
//!   type: rfc2136
//!   server: 192.0.2.53:53        # the zone's primary server (host:port; the port defaults to 53)
//!   zone: foo.com
//!   key-name: dhaf-key
//!   algorithm: hmac-sha256       # default; also hmac-sha384, hmac-sha512
//!   secret: ${DNS_TSIG_SECRET}   # base64, as tsig-keygen / keymgr print it; never logged
//!   ttl: 60                      # of the address records (default 60)
//!   transport: udp               # or tcp (default udp; a truncated answer is asked again over tcp)
//!   timeout: 5                   # seconds per request (default 5)
//! ```
//!
//! Every request, queries included, is signed, and every answer's signature is checked, so an
//! answer nobody with the key made is never believed.
//!
//! Start-up ([`Switcher::init`]) only verifies and reads, on every node: a signed SOA query shows
//! the key is accepted and the server is authoritative for the zone; an update whose only content
//! is a prerequisite that cannot hold (the zone's apex is not in use) shows the key may update
//! the zone while changing nothing; then it reads the address records.
//!
//! Every write is the leader's, in [`Switcher::switch`], in one update message: it deletes the
//! domain's `A` and `AAAA` record sets (the types the entry points use), adds the chosen entry
//! point's address, and replaces the TXT record `_dhaf.<domain>` with `dhaf term-N`, the leader's
//! term. The message carries a prerequisite that the TXT record set is exactly as the switch read
//! it, so a stale leader whose read came before a newer leader's write is refused by the server
//! itself (`NXRRSET`), and a TXT naming a newer term than the caller's is never overwritten. The
//! switch then queries the same server and fails unless it shows the new address.
//!
//! [`Switcher::current`] queries the records themselves: one address of a configured entry point
//! is that entry point; none, several, or an unknown one is "none", so the leader's periodic
//! read-back notices an edit made behind dhaf's back and its switch replaces the whole record set.
//!
//! Failures: a refused or unknown key (`NOTAUTH` with `BADKEY`/`BADSIG`), a server that is not
//! authoritative for the zone (`NOTAUTH`, `NOTZONE`), a policy that refuses the update (`REFUSED`)
//! and an answer whose signature does not verify are permanent; timeouts, unreachable servers,
//! `SERVFAIL` and a failed prerequisite are transient. The leader retries with its own backoff.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use dhaf_core::config::{ConfigError, ProviderConfig};
use dhaf_core::model::{EntryPoint, FencingToken};
use dhaf_core::provider::{BuildContext, ProviderError, Switcher};
use hickory_proto::dnssec::rdata::tsig::TsigAlgorithm;
use hickory_proto::dnssec::rdata::{DNSSECRData, TSIG};
use hickory_proto::dnssec::tsig::TSigner;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode, UpdateMessage};
use hickory_proto::rr::rdata::{A, AAAA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// What the term record says before the term: `dhaf term-N`.
const TERM_PREFIX: &str = "dhaf term-";

/// The label of the TXT record beside the domain that carries the leader's term.
const TERM_LABEL: &str = "_dhaf";

/// How far the server's clock may be from ours for a signature to count (RFC 8945's advice).
const FUDGE: u16 = 300;

/// How the requests travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

/// The TSIG key; shown as `***` so the secret stays out of logs, Debug output and errors.
#[derive(Clone)]
struct Key(TSigner);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A switcher that points the service domain's address records on an authoritative DNS server
/// at the active entry point, by TSIG-signed dynamic update.
#[derive(Debug)]
pub struct Rfc2136Switcher {
    service: String,
    entry_points: Vec<EntryPoint>,
    /// The service's domain, absolute.
    domain: Name,
    /// `_dhaf.<domain>`, the TXT record with the term.
    term_name: Name,
    zone: Name,
    /// `host:port`, resolved at every request (a server that moved is found again).
    server: String,
    key_name: String,
    algorithm: &'static str,
    key: Key,
    ttl: u32,
    transport: Transport,
    timeout: Duration,
}

impl Rfc2136Switcher {
    /// Build from the service's `switcher` section (no I/O: [`Switcher::init`] talks to the server).
    pub fn from_config(section: &ProviderConfig, ctx: &BuildContext) -> Result<Self, ConfigError> {
        let f = section.fields();
        let server = f.required_string("server").map(|s| with_port(s.trim())).unwrap_or_default();
        if f.has("server") && (server.is_empty() || server.starts_with(':')) {
            f.problem(f.key("server"), "must be host:port (or host; the port defaults to 53)");
        }
        let zone_text = f.required_string("zone").unwrap_or_default();
        let zone = absolute_name(&zone_text);
        if f.has("zone") && zone.is_none() {
            f.problem(f.key("zone"), format!("'{zone_text}' is not a domain name"));
        }
        let key_name = f.required_string("key-name").unwrap_or_default().trim().trim_end_matches('.').to_string();
        let key_name_abs = absolute_name(&key_name);
        if f.has("key-name") && key_name_abs.is_none() {
            f.problem(f.key("key-name"), format!("'{key_name}' is not a key name (a domain name, as in the server's key list)"));
        }
        let algorithm_text = f.string("algorithm").unwrap_or_else(|| "hmac-sha256".into()).trim().to_ascii_lowercase();
        let (algorithm, tsig_algorithm) = match algorithm_text.as_str() {
            "hmac-sha256" => ("hmac-sha256", TsigAlgorithm::HmacSha256),
            "hmac-sha384" => ("hmac-sha384", TsigAlgorithm::HmacSha384),
            "hmac-sha512" => ("hmac-sha512", TsigAlgorithm::HmacSha512),
            other => {
                f.problem(f.key("algorithm"), format!("'{other}' is not one of hmac-sha256, hmac-sha384, hmac-sha512"));
                ("hmac-sha256", TsigAlgorithm::HmacSha256)
            }
        };
        // Never echo the secret, not even in a config error.
        let secret = f.required_string("secret").unwrap_or_default();
        let secret = match base64::engine::general_purpose::STANDARD.decode(secret.trim()) {
            Ok(bytes) if !bytes.is_empty() => bytes,
            _ => {
                if f.has("secret") {
                    f.problem(f.key("secret"), "must be the key's secret in base64 (as tsig-keygen or keymgr print it)");
                }
                Vec::new()
            }
        };
        let ttl = f.int("ttl", 60, 1, 86400) as u32;
        let transport = match f.string("transport").unwrap_or_else(|| "udp".into()).trim().to_ascii_lowercase().as_str() {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            other => {
                f.problem(f.key("transport"), format!("'{other}' is not udp or tcp"));
                Transport::Udp
            }
        };
        let timeout = f.seconds("timeout", 5, 1, 300);
        f.finish();

        let svc = ctx.service();
        let domain = absolute_name(&svc.domain);
        if let (Some(zone), Some(domain)) = (&zone, &domain) {
            if !zone.zone_of(domain) {
                f.problem(f.key("zone"), format!("the service's domain {} is not in zone {}", svc.domain, zone_text.trim()));
            }
        }
        let domain = domain.unwrap_or_else(Name::root);
        let term_name = Name::from_ascii(TERM_LABEL).and_then(|l| l.append_domain(&domain)).unwrap_or_else(|_| domain.clone());
        let key = TSigner::new(secret, tsig_algorithm, key_name_abs.unwrap_or_else(Name::root), FUDGE);
        let key = match key {
            Ok(k) => Some(Key(k)),
            Err(e) => {
                f.problem(f.key("algorithm"), format!("cannot sign with {algorithm}: {e}"));
                None
            }
        };
        let Some(key) = key else {
            return Err(ConfigError { problems: f.take_problems() });
        };
        f.into_result(Rfc2136Switcher {
            service: svc.name.clone(),
            entry_points: svc.entry_points.clone(),
            domain,
            term_name,
            zone: zone.unwrap_or_else(Name::root),
            server,
            key_name,
            algorithm,
            key,
            ttl,
            transport,
            timeout,
        })
    }

    /// The record types the service's entry points need.
    fn record_types(&self) -> Vec<RecordType> {
        let mut types = Vec::new();
        if self.entry_points.iter().any(|ep| ep.ip.is_ipv4()) {
            types.push(RecordType::A);
        }
        if self.entry_points.iter().any(|ep| ep.ip.is_ipv6()) {
            types.push(RecordType::AAAA);
        }
        types
    }

    async fn server_addr(&self) -> Result<SocketAddr, ProviderError> {
        let mut addrs = tokio::net::lookup_host(&self.server)
            .await
            .map_err(|e| ProviderError::transient(format!("cannot resolve the dns server {}: {e}", self.server)))?;
        addrs.next().ok_or_else(|| ProviderError::transient(format!("the dns server {} resolves to no address", self.server)))
    }

    /// Sign `msg`, send it, and return the verified answer.
    async fn exchange(&self, mut msg: Message, what: &str) -> Result<Message, ProviderError> {
        msg.set_id(random_id());
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as u32;
        let verifier =
            msg.finalize(&self.key.0, now).map_err(|e| ProviderError::permanent(format!("{what}: cannot sign the request: {e}")))?;
        let bytes = msg.to_vec().map_err(|e| ProviderError::permanent(format!("{what}: cannot encode the request: {e}")))?;
        let addr = self.server_addr().await?;
        let io = async {
            let mut answer = match self.transport {
                Transport::Udp => udp_exchange(addr, &bytes, msg.id()).await?,
                Transport::Tcp => tcp_exchange(addr, &bytes).await?,
            };
            // A truncated answer over UDP is asked again over TCP, as resolvers do.
            if self.transport == Transport::Udp && answer.len() >= 3 && answer[2] & 0x02 != 0 {
                answer = tcp_exchange(addr, &bytes).await?;
            }
            Ok::<_, std::io::Error>(answer)
        };
        let answer = match tokio::time::timeout(self.timeout, io).await {
            Err(_) => {
                return Err(ProviderError::transient(format!(
                    "{what}: no answer from the dns server {} within {}",
                    self.server,
                    crate::check::secs(self.timeout)
                )))
            }
            Ok(Err(e)) => return Err(ProviderError::transient(format!("{what}: cannot reach the dns server {}: {e}", self.server))),
            Ok(Ok(answer)) => answer,
        };
        let parsed = Message::from_vec(&answer).map_err(|e| {
            ProviderError::transient(format!("{what}: the dns server {} sent an answer that does not parse: {e}", self.server))
        })?;
        if parsed.id() != msg.id() {
            return Err(ProviderError::transient(format!("{what}: the answer is for another request")));
        }
        let tsig_error = parsed.signature().iter().find_map(tsig_error);
        if parsed.response_code() == ResponseCode::NotAuth || tsig_error.is_some_and(|e| e != 0) {
            return Err(ProviderError::permanent(self.refused_key(what, parsed.response_code(), tsig_error)));
        }
        if parsed.signature().is_empty() {
            // An unsigned refusal still says something true about the request; an unsigned
            // success proves nothing and is never believed.
            if parsed.response_code() == ResponseCode::NoError {
                return Err(ProviderError::permanent(format!(
                    "{what}: the dns server {} answered without a TSIG signature, so the answer cannot be trusted",
                    self.server
                )));
            }
            return Ok(parsed);
        }
        if let Some(mut verify) = verifier {
            verify(&answer).map_err(|e| {
                ProviderError::permanent(format!(
                    "{what}: the answer's TSIG signature does not verify ({e}): check that key-name, algorithm and secret match the server's key"
                ))
            })?;
        }
        Ok(parsed)
    }

    fn refused_key(&self, what: &str, rcode: ResponseCode, tsig_error: Option<u16>) -> String {
        let why = match tsig_error {
            Some(16) => "BADSIG: the secret (or algorithm) does not match the server's key".to_string(),
            Some(17) => format!(
                "BADKEY: the server knows no key '{}' with algorithm {}, or does not let it do this in zone {}",
                self.key_name, self.algorithm, self.zone
            ),
            Some(18) => "BADTIME: this node's clock and the server's are more than 5 minutes apart".to_string(),
            Some(0) | None => format!("{rcode}: the server does not accept this key for zone {}", self.zone),
            Some(other) => format!("TSIG error {other}"),
        };
        format!("{what}: the dns server {} refused the TSIG key '{}' ({why})", self.server, self.key_name)
    }

    /// A signed query; the answer's records of `rtype` at `name`.
    async fn query(&self, name: &Name, rtype: RecordType) -> Result<(Message, Vec<Record>), ProviderError> {
        let mut msg = Message::new();
        msg.set_message_type(MessageType::Query).set_op_code(OpCode::Query).set_recursion_desired(false);
        msg.add_query(Query::query(name.clone(), rtype));
        let what = format!("query {name} {rtype}");
        let answer = self.exchange(msg, &what).await?;
        match answer.response_code() {
            ResponseCode::NoError | ResponseCode::NXDomain => {}
            ResponseCode::Refused => {
                return Err(ProviderError::permanent(format!(
                    "{what}: the dns server {} refused the query; is it authoritative for zone {}?",
                    self.server, self.zone
                )))
            }
            ResponseCode::ServFail => {
                return Err(ProviderError::transient(format!("{what}: the dns server {} failed (SERVFAIL)", self.server)))
            }
            other => return Err(ProviderError::permanent(format!("{what}: the dns server {} answered {other}", self.server))),
        }
        if !answer.authoritative() {
            return Err(ProviderError::permanent(format!(
                "{what}: the dns server {} is not authoritative for zone {}; point `server` at the zone's primary",
                self.server, self.zone
            )));
        }
        let records = answer.answers().iter().filter(|r| r.record_type() == rtype && r.name() == name).cloned().collect();
        Ok((answer, records))
    }

    /// The addresses the domain has now, of the types the entry points use.
    async fn addresses(&self) -> Result<Vec<IpAddr>, ProviderError> {
        let mut ips = Vec::new();
        for rtype in self.record_types() {
            let (_, records) = self.query(&self.domain, rtype).await?;
            ips.extend(records.iter().filter_map(|r| match r.data() {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            }));
        }
        Ok(ips)
    }

    /// The TXT records beside the domain, as read now (the prerequisite of the next update).
    async fn term_records(&self) -> Result<Vec<Record>, ProviderError> {
        Ok(self.query(&self.term_name, RecordType::TXT).await?.1)
    }

    fn entry_point_at(&self, ip: IpAddr) -> Option<&EntryPoint> {
        self.entry_points.iter().find(|ep| ep.ip == ip)
    }

    /// A new update message for the zone.
    fn update(&self) -> Message {
        let mut msg = Message::new();
        msg.set_message_type(MessageType::Query).set_op_code(OpCode::Update);
        msg.add_zone(Query::query(self.zone.clone(), RecordType::SOA).set_query_class(DNSClass::IN).clone());
        msg
    }

    /// Why an update was not carried out, and whether trying again may help.
    fn update_failed(&self, what: &str, rcode: ResponseCode) -> ProviderError {
        match rcode {
            ResponseCode::NXRRSet | ResponseCode::YXRRSet => ProviderError::transient(format!(
                "{what}: the term record {} changed since it was read (another leader may have written it); not written",
                self.term_name
            )),
            ResponseCode::Refused => ProviderError::permanent(format!(
                "{what}: the dns server {} refused the update (REFUSED): its policy does not let key '{}' update zone {}",
                self.server, self.key_name, self.zone
            )),
            ResponseCode::NotZone => ProviderError::permanent(format!(
                "{what}: the dns server {} says {} is not in zone {} (NOTZONE)",
                self.server, self.domain, self.zone
            )),
            ResponseCode::ServFail => ProviderError::transient(format!("{what}: the dns server {} failed (SERVFAIL)", self.server)),
            other => ProviderError::permanent(format!("{what}: the dns server {} answered {other}", self.server)),
        }
    }
}

#[async_trait]
impl Switcher for Rfc2136Switcher {
    async fn init(&self) -> Result<(), ProviderError> {
        // The key is accepted and the server holds the zone.
        let (answer, soa) = self.query(&self.zone, RecordType::SOA).await?;
        if soa.is_empty() {
            return Err(ProviderError::permanent(format!(
                "the dns server {} has no SOA for zone {} (answer {}); check `zone` and `server`",
                self.server,
                self.zone,
                answer.response_code()
            )));
        }
        // The key may update the zone: an update that can change nothing (its only prerequisite,
        // "the apex is not in use", never holds) is checked against the server's policy first.
        let mut probe = self.update();
        let mut apex = Record::update0(self.zone.clone(), 0, RecordType::ANY);
        apex.set_dns_class(DNSClass::NONE);
        probe.add_pre_requisite(apex);
        let what = format!("update probe of zone {}", self.zone);
        // The query above showed the key is known and right, so a refusal here is the server's
        // policy (Knot answers BADKEY for a key its ACL does not name for updates).
        let may_not_update = |why: String| {
            ProviderError::permanent(format!(
                "key '{}' may not update zone {} on the dns server {} ({why}): allow it in the server's policy \
                 (Knot: an acl with `action: update`; BIND: `update-policy` or `allow-update`)",
                self.key_name, self.zone, self.server
            ))
        };
        let answer = match self.exchange(probe, &what).await {
            Ok(answer) => answer,
            Err(ProviderError::Permanent(why)) => return Err(may_not_update(why)),
            Err(e) => return Err(e),
        };
        match answer.response_code() {
            ResponseCode::YXDomain | ResponseCode::NoError => {}
            ResponseCode::Refused => return Err(may_not_update("REFUSED".into())),
            other => return Err(self.update_failed(&what, other)),
        }
        let ips = self.addresses().await?;
        let points_at = match ips.as_slice() {
            [] => "(no address record yet; the leader writes it)".to_string(),
            [ip] => match self.entry_point_at(*ip) {
                Some(ep) => format!("{} ({ip})", ep.name),
                None => format!("{ip} (not an entry point)"),
            },
            many => format!("{} addresses; the leader replaces them", many.len()),
        };
        tracing::info!(service = %self.service, domain = %self.domain, server = %self.server, %points_at, "rfc2136 switcher ready");
        Ok(())
    }

    async fn current(&self) -> Result<Option<String>, ProviderError> {
        match self.addresses().await?.as_slice() {
            [ip] => Ok(self.entry_point_at(*ip).map(|ep| ep.name.clone())),
            [] => Ok(None),
            many => {
                tracing::warn!(service = %self.service, domain = %self.domain, addresses = many.len(), "several address records; the leader replaces them");
                Ok(None)
            }
        }
    }

    async fn switch(&self, to: &EntryPoint, token: FencingToken) -> Result<(), ProviderError> {
        let seen = self.term_records().await?;
        if let Some(term) = seen.iter().filter_map(record_term).max() {
            if term > token.0 {
                return Err(ProviderError::permanent(format!(
                    "{} was written by term-{term}, newer than this leader's {token}: not overwritten",
                    self.domain
                )));
            }
        }
        let mut msg = self.update();
        // The compare of the compare-and-swap: the term record is still what was just read.
        if seen.is_empty() {
            let mut absent = Record::update0(self.term_name.clone(), 0, RecordType::TXT);
            absent.set_dns_class(DNSClass::NONE);
            msg.add_pre_requisite(absent);
        } else {
            for r in &seen {
                let mut same = Record::from_rdata(self.term_name.clone(), 0, r.data().clone());
                same.set_dns_class(DNSClass::IN);
                msg.add_pre_requisite(same);
            }
        }
        for rtype in self.record_types() {
            let mut delete = Record::update0(self.domain.clone(), 0, rtype);
            delete.set_dns_class(DNSClass::ANY);
            msg.add_update(delete);
        }
        let rdata = match to.ip {
            IpAddr::V4(ip) => RData::A(A(ip)),
            IpAddr::V6(ip) => RData::AAAA(AAAA(ip)),
        };
        msg.add_update(Record::from_rdata(self.domain.clone(), self.ttl, rdata));
        let mut delete_term = Record::update0(self.term_name.clone(), 0, RecordType::TXT);
        delete_term.set_dns_class(DNSClass::ANY);
        msg.add_update(delete_term);
        let term_text = format!("dhaf {token}");
        msg.add_update(Record::from_rdata(self.term_name.clone(), self.ttl, RData::TXT(TXT::new(vec![term_text.clone()]))));

        let what = format!("update {} to {} ({})", self.domain, to.name, to.ip);
        let answer = self.exchange(msg, &what).await?;
        if answer.response_code() != ResponseCode::NoError {
            return Err(self.update_failed(&what, answer.response_code()));
        }

        let ips = self.addresses().await?;
        if ips != [to.ip] {
            let shown: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
            return Err(ProviderError::transient(format!(
                "read back after the switch: {} shows [{}], expected {}",
                self.domain,
                shown.join(", "),
                to.ip
            )));
        }
        let terms: Vec<i64> = self.term_records().await?.iter().filter_map(record_term).collect();
        if terms != [token.0] {
            return Err(ProviderError::transient(format!("read back after the switch: {} does not say '{term_text}'", self.term_name)));
        }
        tracing::info!(service = %self.service, domain = %self.domain, to = %to.name, ip = %to.ip, %token, "dns records updated");
        Ok(())
    }
}

/// `host:port` with the default port when none is given; a bare IPv6 address gets brackets.
fn with_port(server: &str) -> String {
    if server.parse::<SocketAddr>().is_ok() {
        return server.to_string();
    }
    if let Ok(ip) = server.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return SocketAddr::new(ip, 53).to_string();
    }
    match server.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => server.to_string(),
        _ if server.is_empty() => String::new(),
        _ => format!("{server}:53"),
    }
}

/// A domain name made absolute; `None` when it is not one.
fn absolute_name(text: &str) -> Option<Name> {
    let text = text.trim().trim_end_matches('.');
    if text.is_empty() || text.contains(char::is_whitespace) {
        return None;
    }
    let mut name = Name::from_ascii(text).ok()?;
    name.set_fqdn(true);
    Some(name.to_lowercase())
}

/// The term in a `dhaf term-N` TXT record.
fn record_term(record: &Record) -> Option<i64> {
    let RData::TXT(txt) = record.data() else { return None };
    let text: String = txt.txt_data().iter().map(|part| String::from_utf8_lossy(part)).collect();
    text.strip_prefix(TERM_PREFIX)?.trim().parse().ok()
}

/// The error field of an answer's TSIG record (hickory keeps it but has no getter for it).
fn tsig_error(record: &Record) -> Option<u16> {
    let RData::DNSSEC(DNSSECRData::TSIG(tsig)) = record.data() else { return None };
    tsig_error_of(tsig)
}

fn tsig_error_of(tsig: &TSIG) -> Option<u16> {
    let mut buf = Vec::new();
    tsig.emit(&mut BinEncoder::new(&mut buf)).ok()?;
    // Algorithm name, time (6), fudge (2), MAC size (2), MAC, original id (2), error (2), …
    let mut d = BinDecoder::new(&buf);
    Name::read(&mut d).ok()?;
    d.read_slice(8).ok()?;
    let mac_len = d.read_u16().ok()?.unverified();
    d.read_slice(mac_len as usize).ok()?;
    d.read_u16().ok()?;
    Some(d.read_u16().ok()?.unverified())
}

/// A message id nobody can guess (a spoofed UDP answer must match it; TSIG is the real guard).
fn random_id() -> u16 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    h.finish() as u16
}

async fn udp_exchange(addr: SocketAddr, request: &[u8], id: u16) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if addr.is_ipv4() { "0.0.0.0:0".parse().unwrap() } else { "[::]:0".parse().unwrap() };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(addr).await?;
    socket.send(request).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await?;
        // A late answer to an earlier request on a reused port is not this one's.
        if n >= 12 && u16::from_be_bytes([buf[0], buf[1]]) == id {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn tcp_exchange(addr: SocketAddr, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await?;
    let len = u16::try_from(request.len()).map_err(|_| std::io::Error::other("request too long for tcp"))?;
    let mut framed = Vec::with_capacity(request.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(request);
    stream.write_all(&framed).await?;
    let len = stream.read_u16().await? as usize;
    let mut answer = vec![0u8; len];
    stream.read_exact(&mut answer).await?;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_get_the_default_port() {
        assert_eq!(with_port("192.0.2.1"), "192.0.2.1:53");
        assert_eq!(with_port("192.0.2.1:5353"), "192.0.2.1:5353");
        assert_eq!(with_port("2001:db8::1"), "[2001:db8::1]:53");
        assert_eq!(with_port("[2001:db8::1]:5353"), "[2001:db8::1]:5353");
        assert_eq!(with_port("ns1.foo.com"), "ns1.foo.com:53");
        assert_eq!(with_port("ns1.foo.com:5353"), "ns1.foo.com:5353");
    }

    #[test]
    fn the_term_is_read_from_the_txt_record() {
        let name = Name::from_ascii("_dhaf.foo.com.").unwrap();
        let rec = |text: &str| Record::from_rdata(name.clone(), 60, RData::TXT(TXT::new(vec![text.to_string()])));
        assert_eq!(record_term(&rec("dhaf term-42")), Some(42));
        assert_eq!(record_term(&rec("v=spf1 -all")), None);
    }

    #[test]
    fn the_tsig_error_field_is_found() {
        let tsig = TSIG::new(TsigAlgorithm::HmacSha256, 1, 300, vec![], 7, 17, vec![]);
        assert_eq!(tsig_error_of(&tsig), Some(17));
        let tsig = TSIG::new(TsigAlgorithm::HmacSha256, 1, 300, vec![1; 32], 7, 0, vec![]);
        assert_eq!(tsig_error_of(&tsig), Some(0));
    }
}
