//! The node's REST API: a thin HTTP layer over [`NodeHandle`], exported so an embedder can mount
//! it next to its own routes.
//!
//! Reads are open; mutations (POST/DELETE) need `Authorization: Bearer <dhaf.web-api.token>`.
//! Every error is JSON, `{"error": {"code": "...", "message": "..."}}`, with a stable code that
//! scripts may match on:
//!
//! | code | status | when |
//! |---|---|---|
//! | `bad_request` | 400 | malformed JSON, unknown or missing fields |
//! | `unauthorized` | 401 | no bearer token, or the wrong one |
//! | `token_not_configured` | 401 | the node has no `dhaf.web-api.token`, so it refuses every mutation |
//! | `not_found` | 404 | no such route |
//! | `method_not_allowed` | 405 | the route exists, the method does not |
//! | `unknown_service`, `unknown_entry_point`, `unknown_node` | 404 | the name is not in the config / cluster |
//! | `node_alive`, `target_in_maintenance` | 409 | the cluster's state forbids it now |
//! | `last_healthy_entry_point` | 409 | maintenance would leave no healthy entry point in rotation (send `{"force": true}` to insist) |
//! | `payload_too_large` | 413 | the body is over [`BODY_LIMIT`] bytes |
//! | `unhealthy_target` | 422 | a switchover to an entry point the majority holds unhealthy |
//! | `dcs_unavailable` | 503 | the node cannot reach the DCS |
//!
//! ```no_run
//! # async fn demo(node: dhaf_core::runtime::Node) {
//! let app = dhaf_node::api::router(node.handle());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8128").await.unwrap();
//! tokio::spawn(async move { axum::serve(listener, app).await });
//! node.run(async { tokio::signal::ctrl_c().await.ok(); }).await.unwrap();
//! # }
//! ```
//!
//! The OpenAPI description ([`OPENAPI`]) is served at `/api/v1/openapi.json`; a test keeps it and
//! [`routes`] equal, and the router is built from [`routes`] alone.

use std::fmt::Write as _;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Json, Router};
use dhaf_core::engine::Verdict;
use dhaf_core::runtime::{CommandError, NodeHandle};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The largest request body accepted; every body this API takes is a few dozen bytes.
pub const BODY_LIMIT: usize = 16 * 1024;

/// The OpenAPI 3 description of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// An API error: an HTTP status and a stable code with a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    /// The HTTP status.
    #[serde(skip)]
    pub status: StatusCode,
    /// A stable, machine-readable code.
    pub code: &'static str,
    /// What went wrong and, where it helps, what to do.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        let status = match &e {
            CommandError::UnknownService(_) | CommandError::UnknownEntryPoint { .. } | CommandError::UnknownNode(_) => {
                StatusCode::NOT_FOUND
            }
            CommandError::Unhealthy { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            CommandError::InMaintenance { .. } | CommandError::LastHealthy { .. } | CommandError::NodeAlive(_) => StatusCode::CONFLICT,
            CommandError::Dcs(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("the request body is over {BODY_LIMIT} bytes"))
        } else {
            ApiError::bad_request(format!("cannot read the request body: {}", r.body_text()))
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self }))).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

/// Proof that the request carries this node's token; extracted before the body is read, so an
/// unauthenticated caller learns nothing about the body's validity.
struct Authorized;

impl FromRequestParts<NodeHandle> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, handle: &NodeHandle) -> Result<Self, ApiError> {
        authorize(&parts.headers, handle.config().dhaf.web_api.token.as_deref()).map(|()| Authorized)
    }
}

fn authorize(headers: &HeaderMap, expected: Option<&str>) -> Result<(), ApiError> {
    let Some(expected) = expected else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "token_not_configured",
            "this node refuses changes because it has no API token: set `dhaf.web-api.token` in its config \
             (at least 8 characters; `${ENV_VAR}` reads it from the environment) and restart it",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    match given {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this request changes the cluster and needs `Authorization: Bearer <dhaf.web-api.token>`",
        )),
        Some(given) if constant_time_eq(given.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "wrong token: use the node's `dhaf.web-api.token`")),
    }
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

/// A path parameter whose rejection is a JSON `bad_request` like every other error.
struct Param<T>(T);

impl<T, S> FromRequestParts<S> for Param<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(Param(v)),
            Err(e) => Err(ApiError::bad_request(format!("invalid path: {}", e.body_text()))),
        }
    }
}

/// Parse a JSON body strictly: malformed JSON, unknown fields and missing fields are refused.
fn parse_body<T: serde::de::DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = body?;
    serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// Every endpoint: method and path (axum's `{param}` syntax, as in the OpenAPI document).
///
/// The router is built from this list only, so a test comparing it with [`OPENAPI`] covers the
/// whole API.
pub fn routes() -> Vec<(Method, &'static str)> {
    endpoints().into_iter().map(|(m, p, _)| (m, p)).collect()
}

fn endpoints() -> Vec<(Method, &'static str, MethodRouter<NodeHandle>)> {
    vec![
        (Method::GET, "/api/v1/status", on(MethodFilter::GET, status)),
        (Method::GET, "/api/v1/services", on(MethodFilter::GET, services)),
        (Method::GET, "/api/v1/services/{service}", on(MethodFilter::GET, service)),
        (Method::GET, "/api/v1/services/{service}/candidates", on(MethodFilter::GET, candidates)),
        (Method::POST, "/api/v1/services/{service}/switchover", on(MethodFilter::POST, switchover_to)),
        (Method::DELETE, "/api/v1/services/{service}/switchover", on(MethodFilter::DELETE, switchover_purge)),
        (Method::POST, "/api/v1/services/{service}/entry-points/{entry_point}/maintenance", on(MethodFilter::POST, maintenance_on)),
        (Method::DELETE, "/api/v1/services/{service}/entry-points/{entry_point}/maintenance", on(MethodFilter::DELETE, maintenance_off)),
        (Method::GET, "/api/v1/services/{service}/history", on(MethodFilter::GET, history)),
        (Method::DELETE, "/api/v1/nodes/{node}", on(MethodFilter::DELETE, decommission)),
        (Method::GET, "/api/v1/openapi.json", on(MethodFilter::GET, openapi)),
        (Method::GET, "/healthz", on(MethodFilter::GET, healthz)),
        (Method::GET, "/metrics", on(MethodFilter::GET, metrics)),
    ]
}

/// The REST API of the node behind `handle`, ready to serve or to nest in an embedder's router.
pub fn router(handle: NodeHandle) -> Router {
    let mut by_path: Vec<(&'static str, MethodRouter<NodeHandle>)> = Vec::new();
    for (_, path, mr) in endpoints() {
        match by_path.iter_mut().find(|(p, _)| *p == path) {
            Some((_, existing)) => *existing = std::mem::take(existing).merge(mr),
            None => by_path.push((path, mr)),
        }
    }
    let mut router = Router::new();
    for (path, mr) in by_path {
        router = router.route(path, mr);
    }
    router
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route; see /api/v1/openapi.json") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method; see /api/v1/openapi.json",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(handle)
}

fn ok<T: Serialize>(value: T) -> ApiResult {
    Ok(Json(value).into_response())
}

async fn status(State(h): State<NodeHandle>) -> ApiResult {
    ok(h.status().await?)
}

async fn services(State(h): State<NodeHandle>) -> ApiResult {
    ok(h.status().await?.services)
}

async fn service(State(h): State<NodeHandle>, Param(service): Param<String>) -> ApiResult {
    ok(h.service_status(&service).await?)
}

async fn candidates(State(h): State<NodeHandle>, Param(service): Param<String>) -> ApiResult {
    ok(h.switchover_candidates(&service).await?)
}

async fn history(State(h): State<NodeHandle>, Param(service): Param<String>) -> ApiResult {
    ok(h.history(&service).await?)
}

/// The body of `POST /api/v1/services/{service}/switchover`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchoverBody {
    entry_point: String,
}

async fn switchover_to(
    State(h): State<NodeHandle>,
    _: Authorized,
    Param(service): Param<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body: SwitchoverBody = parse_body(body)?;
    h.switchover_to(&service, &body.entry_point).await?;
    tracing::info!(service = %service, entry_point = %body.entry_point, "api: switchover requested");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "service": service,
            "switchover": body.entry_point,
            "message": "switchover requested; the leader switches to it and keeps it there while it is healthy",
        })),
    )
        .into_response())
}

async fn switchover_purge(State(h): State<NodeHandle>, _: Authorized, Param(service): Param<String>) -> ApiResult {
    h.switchover_purge(&service).await?;
    tracing::info!(service = %service, "api: switchover purged");
    ok(json!({ "service": service, "switchover": null, "message": "switchover purged; automatic rules apply again" }))
}

/// The optional body of `POST .../maintenance`; no body means no force.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MaintenanceBody {
    #[serde(default)]
    force: bool,
}

async fn maintenance_on(
    State(h): State<NodeHandle>,
    _: Authorized,
    Param((service, ep)): Param<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body: MaintenanceBody = match body {
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => MaintenanceBody::default(),
        other => parse_body(other)?,
    };
    maintenance(h, service, ep, true, body.force).await
}

async fn maintenance_off(State(h): State<NodeHandle>, _: Authorized, Param((service, ep)): Param<(String, String)>) -> ApiResult {
    maintenance(h, service, ep, false, false).await
}

async fn maintenance(h: NodeHandle, service: String, ep: String, on: bool, force: bool) -> ApiResult {
    h.set_maintenance(&service, &ep, on, force).await?;
    tracing::info!(service = %service, entry_point = %ep, on, force, "api: maintenance changed");
    let message = if on { "entry point taken out of rotation" } else { "entry point back in rotation" };
    ok(json!({ "service": service, "entry_point": ep, "maintenance": on, "message": message }))
}

async fn decommission(State(h): State<NodeHandle>, _: Authorized, Param(node): Param<String>) -> ApiResult {
    h.decommission(&node).await?;
    tracing::info!(node = %node, "api: node decommissioned");
    ok(json!({ "node": node, "message": "node decommissioned" }))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Leadership counts only while the node may act on it: a leader whose lease deadline passed
/// (the DCS is away) may already have been replaced.
fn leads(h: &NodeHandle) -> bool {
    h.is_leader() && h.holds_lease()
}

async fn healthz(State(h): State<NodeHandle>) -> Response {
    let registered = h.holds_lease();
    let body = json!({
        "status": if registered { "ok" } else { "unavailable" },
        "node": h.config().dhaf.node_name,
        "registered": registered,
        "leader": leads(&h),
    });
    let status = if registered { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

async fn metrics(State(h): State<NodeHandle>) -> Response {
    let m = h.metrics();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    let one = |v: u64| vec![(String::new(), v)];
    metric("dhaf_checks_total", "counter", "Health checks this node ran.", &one(m.checks));
    metric("dhaf_checks_failed_total", "counter", "Health checks that found an entry point unhealthy.", &one(m.checks_failed));
    metric("dhaf_switches_total", "counter", "Switches this node carried out as leader.", &one(m.switches));
    metric("dhaf_switch_failures_total", "counter", "Switches that failed at the provider.", &one(m.switch_failures));
    metric("dhaf_leader_changes_total", "counter", "Times this node became the leader.", &one(m.leader_changes));
    metric("dhaf_dcs_errors_total", "counter", "DCS calls that failed for want of the DCS.", &one(m.dcs_errors));
    metric("dhaf_is_leader", "gauge", "1 while this node is the cluster leader.", &one(u64::from(leads(&h))));
    metric("dhaf_registered", "gauge", "1 while this node holds a live lease in the DCS.", &one(u64::from(h.holds_lease())));
    // Verdicts come from the DCS; without it they are the last known ones, and
    // dhaf_dcs_reachable says so.
    if let Ok(status) = h.status().await {
        metric(
            "dhaf_dcs_reachable",
            "gauge",
            "0 while this node cannot read the DCS (the other values are then the last known).",
            &one(u64::from(!status.stale)),
        );
        let mut verdicts = Vec::new();
        let mut current = Vec::new();
        let mut desired = Vec::new();
        let mut failing = Vec::new();
        let mut maintenance = Vec::new();
        let mut panic = Vec::new();
        let mut disagreeing = Vec::new();
        let mut held = Vec::new();
        for s in &status.services {
            panic.push((labels(&[("service", &s.name)]), u64::from(s.panic)));
            disagreeing.push((labels(&[("service", &s.name)]), s.disagreement.len() as u64));
            held.push((labels(&[("service", &s.name)]), u64::from(s.held)));
            failing.push((labels(&[("service", &s.name)]), s.switching.as_ref().map_or(0, |p| u64::from(p.attempts))));
            for ep in &s.entry_points {
                for v in [Verdict::Healthy, Verdict::Unhealthy, Verdict::Unknown] {
                    let name = match v {
                        Verdict::Healthy => "healthy",
                        Verdict::Unhealthy => "unhealthy",
                        Verdict::Unknown => "unknown",
                    };
                    let l = labels(&[("service", &s.name), ("entry_point", &ep.name), ("verdict", name)]);
                    verdicts.push((l, u64::from(ep.verdict == v)));
                }
                let l = labels(&[("service", &s.name), ("entry_point", &ep.name)]);
                // Where the provider points, as read back; the desired one until it is read.
                let live = if s.live.is_some() { ep.live } else { ep.current };
                current.push((l.clone(), u64::from(live)));
                desired.push((l.clone(), u64::from(ep.current)));
                maintenance.push((l, u64::from(ep.maintenance)));
            }
        }
        metric("dhaf_entry_point_verdict", "gauge", "The majority's verdict of each entry point (1 for the verdict it has).", &verdicts);
        metric("dhaf_entry_point_current", "gauge", "1 for the entry point each service's provider points at (as read back).", &current);
        metric("dhaf_entry_point_desired", "gauge", "1 for the entry point each service should point at (the leader's record).", &desired);
        metric(
            "dhaf_switch_failing_attempts",
            "gauge",
            "Failed attempts of a switch that keeps failing; 0 when none is failing.",
            &failing,
        );
        metric("dhaf_entry_point_maintenance", "gauge", "1 while an entry point is in maintenance.", &maintenance);
        metric("dhaf_service_panic", "gauge", "1 while a service has no healthy entry point.", &panic);
        metric(
            "dhaf_config_disagreeing_nodes",
            "gauge",
            "Alive nodes that define a service differently from this node (their votes on it do not count).",
            &disagreeing,
        );
        metric(
            "dhaf_service_held",
            "gauge",
            "1 while fewer than a majority of the nodes share a service's definition: it is not switched.",
            &held,
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out).into_response()
}

/// Prometheus labels, values escaped as the text format requires.
fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> =
        pairs.iter().map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))).collect();
    format!("{{{}}}", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        assert!(constant_time_eq(b"secret-token", b"secret-token"));
        assert!(!constant_time_eq(b"secret-token", b"secret-tokeN"));
        assert!(!constant_time_eq(b"secret-token", b"secret-token-longer"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(labels(&[("a", "x\"y\\z\n")]), "{a=\"x\\\"y\\\\z\\n\"}");
    }
}
