//! The node's REST API: a thin HTTP layer over [`NodeHandle`], exported so an embedder can mount
//! it next to its own routes.
//!
//! Every route needs a role ([`crate::auth::Access`]): reads `read`; switchover, maintenance,
//! pause and resume `operate`; decommission `admin`; given as `Authorization: Bearer <token>`
//! with one of `dhaf.web-api.tokens` (the single `dhaf.web-api.token` is an `admin` token). While no token
//! is configured, or with `public-read: true`, reads are open; `/healthz`, `/leader` and the
//! OpenAPI document always are. Every mutation, accepted or refused, goes to the audit trail
//! (`/api/v1/audit` and the log) with the token's name and the client's address.
//!
//! Every error is JSON, `{"error": {"code": "...", "message": "..."}}`, with a stable code that
//! scripts may match on:
//!
//! | code | status | when |
//! |---|---|---|
//! | `bad_request` | 400 | malformed JSON, unknown or missing fields, a malformed name in the path |
//! | `unauthorized` | 401 | no bearer token, or the wrong one (with `WWW-Authenticate: Bearer`) |
//! | `token_not_configured` | 401 | the node has no token at all, so it refuses every mutation |
//! | `forbidden` | 403 | the token's role does not allow this |
//! | `not_found` | 404 | no such route |
//! | `method_not_allowed` | 405 | the route exists, the method does not |
//! | `unknown_service`, `unknown_entry_point`, `unknown_node` | 404 | the name is not in the config / cluster |
//! | `node_alive`, `target_in_maintenance` | 409 | the cluster's state forbids it now |
//! | `last_healthy_entry_point` | 409 | maintenance would leave no healthy entry point in rotation (send `{"force": true}` to insist) |
//! | `payload_too_large` | 413 | the body is over [`BODY_LIMIT`] bytes (refused on its `Content-Length`, unread) |
//! | `uri_too_long` | 414 | the request line is over 65,534 bytes |
//! | `headers_too_large` | 431 | the request's headers are over 96 KiB or 100 headers |
//! | `unsupported_media_type` | 415 | a body that is not `application/json` |
//! | `unhealthy_target` | 422 | a switchover to an entry point the majority holds unhealthy |
//! | `too_many_failures` | 429 | too many wrong tokens from this address lately (see `Retry-After`) |
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

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRef, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Extension, Json, Router};
use dhaf_core::config::Role;
use dhaf_core::runtime::{CommandError, NodeHandle};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::{now_ms, Access, AuditRecord, Guard, Refusal};
use crate::reload::Reloader;

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
            CommandError::TimeInThePast(_) => StatusCode::UNPROCESSABLE_ENTITY,
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
        let mut response = (self.status, Json(json!({ "error": self }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"dhaf\""));
        }
        // For the audit trail, which sees only the response.
        response.extensions_mut().insert(ErrorCode(self.code));
        response
    }
}

/// The stable code of an error response, kept in its extensions.
#[derive(Debug, Clone, Copy)]
struct ErrorCode(&'static str);

/// The address of the client a request came from; [`crate::serve`] puts it in every request's
/// extensions. (An embedder serving with `axum::serve(...into_make_service_with_connect_info...)`
/// gets the same from axum's `ConnectInfo`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// What the handlers share: the node, and the guard of its API.
#[derive(Clone)]
struct ApiState {
    handle: NodeHandle,
    guard: Arc<Guard>,
    reloader: Option<Arc<Reloader>>,
}

impl FromRef<ApiState> for Option<Arc<Reloader>> {
    fn from_ref(s: &ApiState) -> Option<Arc<Reloader>> {
        s.reloader.clone()
    }
}

impl FromRef<ApiState> for NodeHandle {
    fn from_ref(s: &ApiState) -> NodeHandle {
        s.handle.clone()
    }
}

impl FromRef<ApiState> for Arc<Guard> {
    fn from_ref(s: &ApiState) -> Arc<Guard> {
        s.guard.clone()
    }
}

fn client_addr(req: &Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ClientAddr>()
        .map(|c| c.0)
        .or_else(|| req.extensions().get::<axum::extract::ConnectInfo<SocketAddr>>().map(|c| c.0))
}

fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Who asked for a request, as the audit trail names them: the token's name and the client's
/// address (`ops from 10.0.0.9:51234`). Put in every accepted request's extensions, so what a
/// mutation leaves in the DCS (a pause, a switchover and the switch it leads to) says it too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asker(pub String);

impl Asker {
    fn of(token: Option<&str>, client: Option<SocketAddr>) -> Asker {
        let client = client.map_or_else(|| "an unknown address".to_string(), |c| c.to_string());
        match token {
            Some(name) => Asker(format!("{name} from {client}")),
            None => Asker(format!("no token, from {client}")),
        }
    }
}

/// Before every route: the token and its role, then (for a mutation) the body's declared size
/// and type, all before the body is read; after a mutation, its audit record.
async fn guard(State((guard, access)): State<(Arc<Guard>, Access)>, mut req: Request, next: Next) -> Response {
    let client = client_addr(&req);
    let mutation = req.method() != Method::GET && req.method() != Method::HEAD;
    let method = req.method().to_string();
    let path = cut(req.uri().path(), 256);
    let checked = guard.check(access, req.headers().get(header::AUTHORIZATION).map(HeaderValue::as_bytes), client.map(|c| c.ip()));
    let caller = match &checked {
        Ok(c) => c.clone(),
        Err(Refusal::Forbidden { caller, .. }) => Some(caller.clone()),
        Err(_) => None,
    };
    req.extensions_mut().insert(Asker::of(caller.as_ref().map(|c| c.name.as_str()), client));
    let response = match checked {
        Err(refusal) => refused(refusal).into_response(),
        Ok(_) if mutation => match body_allowed(req.headers()) {
            Err(e) => e.into_response(),
            Ok(()) => next.run(req).await,
        },
        Ok(_) => next.run(req).await,
    };
    if mutation {
        let status = response.status();
        guard.audit(AuditRecord {
            at_ms: now_ms(),
            token: caller.as_ref().map(|c| c.name.clone()),
            role: caller.as_ref().map(|c| c.role),
            client: client.map_or_else(|| "unknown".to_string(), |c| c.to_string()),
            method,
            path,
            outcome: if status.is_success() { "accepted" } else { "refused" },
            status: status.as_u16(),
            code: response.extensions().get::<ErrorCode>().map(|c| c.0.to_string()),
        });
    }
    response
}

fn refused(refusal: Refusal) -> Response {
    match refusal {
        Refusal::NotConfigured => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "token_not_configured",
            "this node refuses changes because it has no API token: add one to `dhaf.web-api.tokens` (or set \
             `dhaf.web-api.token`) in its config (at least 8 characters; `${ENV_VAR}` reads it from the environment) and restart it",
        )
        .into_response(),
        Refusal::Missing => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this request needs `Authorization: Bearer <token>` with a token of `dhaf.web-api.tokens` (or `dhaf.web-api.token`)",
        )
        .into_response(),
        Refusal::Wrong => {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "wrong token: it matches none of the node's tokens").into_response()
        }
        Refusal::Forbidden { caller, needs } => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("the token '{}' has the role {}; this request needs {needs}", caller.name, caller.role),
        )
        .into_response(),
        Refusal::TooManyFailures(wait) => {
            let secs = wait.as_secs().max(1);
            let mut r = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_failures",
                format!("too many wrong tokens from this address; try again in {secs} s"),
            )
            .into_response();
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            r
        }
    }
}

/// A body is refused on its headers alone when it is too large or not JSON, so it is never read
/// (and `Expect: 100-continue` gets the refusal instead of `100 Continue`).
fn body_allowed(headers: &HeaderMap) -> Result<(), ApiError> {
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    if length.is_some_and(|n| n > BODY_LIMIT as u64) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is over {BODY_LIMIT} bytes"),
        ));
    }
    let has_body = length.is_some_and(|n| n > 0) || headers.contains_key(header::TRANSFER_ENCODING);
    if has_body {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the request body must be JSON, sent with `Content-Type: application/json`",
            ));
        }
    }
    Ok(())
}

/// A name from the config (service, entry point, node) in a path: `a-z A-Z 0-9 - _`, at most 64
/// characters. Anything else is refused before the node is asked, and never echoed whole.
struct Name(String);

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Name, D::Error> {
        let s = String::deserialize(d)?;
        let ok = !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(Name(s))
        } else {
            Err(serde::de::Error::custom("a name is 1 to 64 characters of a-z A-Z 0-9 - _"))
        }
    }
}

type ApiResult = Result<Response, ApiError>;

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
/// Every request body is a JSON object (serde alone would also read a struct from an array).
fn parse_body<T: serde::de::DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = body?;
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request("invalid JSON body: it must be a JSON object"));
    }
    T::deserialize(value).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// Every endpoint: method and path (axum's `{param}` syntax, as in the OpenAPI document).
///
/// The router is built from this list only, so a test comparing it with [`OPENAPI`] covers the
/// whole API.
pub fn routes() -> Vec<(Method, &'static str)> {
    endpoints().into_iter().map(|(m, p, _, _)| (m, p)).collect()
}

/// Every endpoint with what it needs: the role matrix, in one place.
pub fn access() -> Vec<(Method, &'static str, Access)> {
    endpoints().into_iter().map(|(m, p, a, _)| (m, p, a)).collect()
}

fn endpoints() -> Vec<(Method, &'static str, Access, MethodRouter<ApiState>)> {
    use Access::{Open, Role as R};
    vec![
        (Method::GET, "/api/v1/status", R(Role::Read), on(MethodFilter::GET, status)),
        (Method::GET, "/api/v1/services", R(Role::Read), on(MethodFilter::GET, services)),
        (Method::GET, "/api/v1/services/{service}", R(Role::Read), on(MethodFilter::GET, service)),
        (Method::GET, "/api/v1/services/{service}/candidates", R(Role::Read), on(MethodFilter::GET, candidates)),
        (Method::POST, "/api/v1/services/{service}/switchover", R(Role::Operate), on(MethodFilter::POST, switchover_to)),
        (Method::DELETE, "/api/v1/services/{service}/switchover", R(Role::Operate), on(MethodFilter::DELETE, switchover_purge)),
        (
            Method::POST,
            "/api/v1/services/{service}/entry-points/{entry_point}/maintenance",
            R(Role::Operate),
            on(MethodFilter::POST, maintenance_on),
        ),
        (
            Method::DELETE,
            "/api/v1/services/{service}/entry-points/{entry_point}/maintenance",
            R(Role::Operate),
            on(MethodFilter::DELETE, maintenance_off),
        ),
        (Method::GET, "/api/v1/services/{service}/history", R(Role::Read), on(MethodFilter::GET, history)),
        (Method::DELETE, "/api/v1/nodes/{node}", R(Role::Admin), on(MethodFilter::DELETE, decommission)),
        (Method::POST, "/api/v1/reload", R(Role::Admin), on(MethodFilter::POST, reload)),
        (Method::POST, "/api/v1/pause", R(Role::Operate), on(MethodFilter::POST, pause)),
        (Method::POST, "/api/v1/resume", R(Role::Operate), on(MethodFilter::POST, resume)),
        (Method::GET, "/api/v1/config", R(Role::Read), on(MethodFilter::GET, running_config)),
        (Method::GET, "/api/v1/audit", R(Role::Read), on(MethodFilter::GET, audit)),
        (Method::GET, "/api/v1/openapi.json", Open, on(MethodFilter::GET, openapi)),
        (Method::GET, "/healthz", Open, on(MethodFilter::GET, healthz)),
        (Method::GET, "/leader", Open, on(MethodFilter::GET, leader)),
        (Method::GET, "/metrics", R(Role::Read), on(MethodFilter::GET, metrics)),
    ]
}

/// The REST API of the node behind `handle`, ready to serve or to nest in an embedder's router.
/// `POST /api/v1/reload` answers that the node has no config file to reload; see
/// [`router_with_reload`].
pub fn router(handle: NodeHandle) -> Router {
    router_with_reload(handle, None)
}

/// [`router`], with `reloader` behind `POST /api/v1/reload` and the reload metrics.
pub fn router_with_reload(handle: NodeHandle, reloader: Option<Arc<Reloader>>) -> Router {
    let guard_state = Arc::new(Guard::new(&handle.config().dhaf.web_api));
    let mut by_path: Vec<(&'static str, MethodRouter<ApiState>)> = Vec::new();
    for (_, path, access, mr) in endpoints() {
        let mr = mr.route_layer(axum::middleware::from_fn_with_state((guard_state.clone(), access), guard));
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
        .with_state(ApiState { handle, guard: guard_state, reloader })
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

async fn service(State(h): State<NodeHandle>, Param(Name(service)): Param<Name>) -> ApiResult {
    ok(h.service_status(&service).await?)
}

async fn candidates(State(h): State<NodeHandle>, Param(Name(service)): Param<Name>) -> ApiResult {
    ok(h.switchover_candidates(&service).await?)
}

async fn history(State(h): State<NodeHandle>, Param(Name(service)): Param<Name>) -> ApiResult {
    ok(h.history(&service).await?)
}

/// The body of `POST /api/v1/services/{service}/switchover`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchoverBody {
    entry_point: String,
    /// A scheduled switchover: RFC 3339 (`2026-12-24T03:00:00Z`).
    #[serde(default)]
    at: Option<String>,
}

async fn switchover_to(
    State(h): State<NodeHandle>,
    Param(Name(service)): Param<Name>,
    Extension(asker): Extension<Asker>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body: SwitchoverBody = parse_body(body)?;
    if let Some(text) = &body.at {
        let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).map_err(|e| {
            ApiError::bad_request(format!("at: '{}' is not an RFC 3339 time like 2026-12-24T03:00:00Z ({e})", cut(text, 64)))
        })?;
        let at = std::time::SystemTime::from(at);
        h.switchover_at(&service, &body.entry_point, at, Some(&asker.0)).await?;
        tracing::info!(service = %service, entry_point = %body.entry_point, at = %text, "api: switchover scheduled");
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({
                "service": service,
                "switchover": body.entry_point,
                "at": text,
                "message": "switchover scheduled; the leader at that time carries it out if the target is healthy then, or refuses it",
            })),
        )
            .into_response());
    }
    h.switchover_to_by(&service, &body.entry_point, &asker.0).await?;
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

async fn switchover_purge(State(h): State<NodeHandle>, Param(Name(service)): Param<Name>) -> ApiResult {
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
    Param((Name(service), Name(ep))): Param<(Name, Name)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body: MaintenanceBody = match body {
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => MaintenanceBody::default(),
        other => parse_body(other)?,
    };
    maintenance(h, service, ep, true, body.force).await
}

async fn maintenance_off(State(h): State<NodeHandle>, Param((Name(service), Name(ep))): Param<(Name, Name)>) -> ApiResult {
    maintenance(h, service, ep, false, false).await
}

async fn maintenance(h: NodeHandle, service: String, ep: String, on: bool, force: bool) -> ApiResult {
    h.set_maintenance(&service, &ep, on, force).await?;
    tracing::info!(service = %service, entry_point = %ep, on, force, "api: maintenance changed");
    let message = if on { "entry point taken out of rotation" } else { "entry point back in rotation" };
    ok(json!({ "service": service, "entry_point": ep, "maintenance": on, "message": message }))
}

/// `POST /api/v1/pause` and `/resume` take no settings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoSettings {}

fn no_settings(body: Result<Bytes, BytesRejection>) -> Result<(), ApiError> {
    let body = body?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        let _: NoSettings = parse_body(Ok(body))?;
    }
    Ok(())
}

async fn pause(State(h): State<NodeHandle>, Extension(asker): Extension<Asker>, body: Result<Bytes, BytesRejection>) -> ApiResult {
    no_settings(body)?;
    h.pause(&asker.0).await?;
    let status = h.status().await?;
    tracing::warn!(by = %asker.0, "api: cluster paused");
    ok(json!({
        "paused": status.paused,
        "message": "cluster paused: every node goes on checking and reporting; nothing is switched until it is resumed",
    }))
}

async fn resume(State(h): State<NodeHandle>, Extension(asker): Extension<Asker>, body: Result<Bytes, BytesRejection>) -> ApiResult {
    no_settings(body)?;
    h.resume().await?;
    tracing::info!(by = %asker.0, "api: cluster resumed");
    ok(json!({ "paused": null, "message": "cluster resumed: the leader switches again as usual" }))
}

async fn decommission(State(h): State<NodeHandle>, Param(Name(node)): Param<Name>) -> ApiResult {
    h.decommission(&node).await?;
    tracing::info!(node = %node, "api: node decommissioned");
    ok(json!({ "node": node, "message": "node decommissioned" }))
}

async fn reload(State(r): State<Option<Arc<Reloader>>>, body: Result<Bytes, BytesRejection>) -> ApiResult {
    // An empty body or `{}`: there is nothing to say but "reload".
    let body = body?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        let _: ReloadRequestBody = parse_body(Ok(body))?;
    }
    let Some(r) = r else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_config_file",
            "this node was not started from a config file; nothing to reload",
        ));
    };
    match r.reload().await {
        Ok(report) => ok(json!({ "reloaded": true, "message": format!("config reloaded: {report}"), "changes": report })),
        Err(e) => {
            Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "reload_refused", format!("{e}; the node goes on with the config it had")))
        }
    }
}

/// What `dhaf-node --check --diff` compares a file with: the running node's service definitions
/// and the settings only a restart can change (no secret is among either).
async fn running_config(State(h): State<NodeHandle>) -> ApiResult {
    let config = h.config();
    ok(json!({
        "node": config.dhaf.node_name,
        "definitions": h.definitions(),
        "restart_only": dhaf_core::runtime::restart_only_settings(&config),
    }))
}

/// `POST /api/v1/reload` takes no settings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReloadRequestBody {}

async fn audit(State(g): State<Arc<Guard>>) -> ApiResult {
    ok(g.audit_records())
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

use crate::metrics::leads;

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

/// 200 while this node leads (for a load balancer that sends writes to the leader), else 503.
async fn leader(State(h): State<NodeHandle>) -> Response {
    let leads = leads(&h);
    let body = json!({ "node": h.config().dhaf.node_name, "leader": leads });
    let status = if leads { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

async fn metrics(State(h): State<NodeHandle>, State(reloader): State<Option<Arc<Reloader>>>) -> Response {
    let text = crate::metrics::render(&h, reloader.as_deref()).await;
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
}
