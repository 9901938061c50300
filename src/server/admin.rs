//! The admin HTTP listener (axum): the admin API under `/v1`, Prometheus metrics, health.
//!
//! Thin by design: each handler parses its JSON, runs one core operation under the core lock
//! (timed into the latency histogram) and renders the answer or the error. The behaviour lives
//! in the core (`Core::admin_*`). Errors carry the wire protocol's codes and names.
//!
//! Every route is listed once, in [`routes`]: the router is built from that table and
//! [`admin_routes`] reads it, so the test that compares the routes with docs/openapi.json
//! cannot drift from what is served.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{from_fn_with_state, map_response, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::admission::{HttpCaps, HttpTask};
use super::config::{AdminConfig, ConfigError};
use super::error::ServerError;
use super::shared::Shared;
use crate::core::{AdminCreateRoom, AdminMessage, ConnId, Core, MAX_QUERY_COUNT};
use crate::wire::{ErrorBody, ErrorCode};

/// The OpenAPI document of the listener, served at `/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// The shortest bearer secret the server accepts.
const MIN_TOKEN_BYTES: usize = 16;

type St = Arc<Shared>;

/// One route of the admin listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminRoute {
    /// HTTP method, upper case.
    pub method: &'static str,
    /// Path, with `{name}` for a path parameter (as in OpenAPI).
    pub path: &'static str,
    /// Whether the route answers without the bearer token (health, metrics, the document).
    pub public: bool,
}

fn route<H, T>(
    method: &'static str,
    path: &'static str,
    public: bool,
    handler: H,
) -> (AdminRoute, MethodRouter<St>)
where
    H: axum::handler::Handler<T, St>,
    T: 'static,
{
    let filter = match method {
        "GET" => MethodFilter::GET,
        "POST" => MethodFilter::POST,
        "PUT" => MethodFilter::PUT,
        "DELETE" => MethodFilter::DELETE,
        // The table below uses only the four methods above.
        _ => unreachable!("method {method} is not in the route table's set"),
    };
    (AdminRoute { method, path, public }, on(filter, handler))
}

/// Every route: the one table the router and the OpenAPI check both read.
fn routes() -> Vec<(AdminRoute, MethodRouter<St>)> {
    vec![
        route("GET", "/healthz", true, healthz),
        route("GET", "/readyz", true, readyz),
        route("GET", "/metrics", true, metrics),
        route("GET", "/v1/openapi.json", true, openapi),
        route("POST", "/v1/rooms", false, create_room),
        route("GET", "/v1/rooms", false, list_rooms),
        route("GET", "/v1/rooms/{id}", false, get_room),
        route("DELETE", "/v1/rooms/{id}", false, destroy_room),
        route("GET", "/v1/rooms/{id}/members", false, members),
        route("POST", "/v1/rooms/{id}/messages", false, send_message),
        route("PUT", "/v1/rooms/{id}/attributes", false, set_attributes),
        route("DELETE", "/v1/rooms/{id}/attributes", false, delete_attributes),
        route("POST", "/v1/rooms/{id}/kick", false, kick),
        route("POST", "/v1/users/{id}/disconnect", false, disconnect),
        route("GET", "/v1/connections", false, list_connections),
        route("GET", "/v1/connections/{id}", false, get_connection),
    ]
}

/// The routes the admin listener serves.
pub fn admin_routes() -> Vec<AdminRoute> {
    routes().into_iter().map(|(r, _)| r).collect()
}

fn router(shared: St) -> Router {
    let mut router = Router::new();
    for (r, handler) in routes() {
        let handler = if r.public {
            handler
        } else {
            handler.route_layer(from_fn_with_state(shared.clone(), auth))
        };
        router = router.route(r.path, handler);
    }
    router.fallback(not_found).layer(map_response(json_method_not_allowed)).with_state(shared)
}

/// Binds the listener when one is configured; refuses a listener without a good token.
pub(crate) fn bind(config: &AdminConfig) -> Result<Option<std::net::TcpListener>, ServerError> {
    let Some(addr) = config.listen else { return Ok(None) };
    check_token(config)?;
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|source| ServerError::AdminBind { addr, source })?;
    listener.set_nonblocking(true).map_err(ServerError::AdminListener)?;
    Ok(Some(listener))
}

/// Refuses a configured listener without a good enough token.
pub(crate) fn check_token(config: &AdminConfig) -> Result<(), ConfigError> {
    match (&config.listen, &config.token) {
        (None, _) => Ok(()),
        (Some(_), Some(t)) if t.trim().len() >= MIN_TOKEN_BYTES => Ok(()),
        (Some(_), _) => Err(ConfigError::AdminToken { min_bytes: MIN_TOKEN_BYTES }),
    }
}

/// The listener's connection caps and timeouts ([`AdminConfig`]).
#[derive(Clone, Copy, Debug)]
struct ListenerLimits {
    max_connections: usize,
    /// 0: no per-address cap.
    max_per_address: usize,
    header_timeout: Duration,
    body_timeout: Duration,
}

impl ListenerLimits {
    fn new(config: &AdminConfig) -> ListenerLimits {
        ListenerLimits {
            max_connections: config.max_connections.max(1),
            max_per_address: config.max_per_address,
            header_timeout: Duration::from_secs(config.header_timeout_s.max(1)),
            body_timeout: Duration::from_secs(config.body_timeout_s.max(1)),
        }
    }
}

/// Starts serving the admin listener.
///
/// A connection over either cap (`max_connections`, `max_per_address`) is closed as soon as
/// it is accepted, so that a crowd of silent connections neither uses up the process's file
/// descriptors nor keeps `/healthz` from answering once they time out: a request header has
/// `header_timeout_s` to arrive (also between the requests of a kept-alive connection), and a
/// request `body_timeout_s` more for its body and its answer.
pub(crate) fn serve(shared: St, listener: std::net::TcpListener) -> Result<HttpTask, ServerError> {
    let listener =
        tokio::net::TcpListener::from_std(listener).map_err(ServerError::AdminListener)?;
    let limits = ListenerLimits::new(&shared.config.admin);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(
            %addr,
            max_connections = limits.max_connections,
            max_per_address = limits.max_per_address,
            "admin listening"
        );
    }
    let app = router(shared).layer(from_fn_with_state(limits.body_timeout, request_deadline));
    let caps = HttpCaps {
        max_connections: limits.max_connections,
        max_per_address: limits.max_per_address,
        header_timeout: limits.header_timeout,
    };
    Ok(HttpTask::spawn(listener, app, caps, "admin"))
}

/// Bounds the time from a request's header to its answer (reading the body included); the
/// answer past it is 408 and the connection is closed.
async fn request_deadline(
    State(within): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(within, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let error =
                ApiError::new(ErrorCode::FrameTimeout, "the request did not arrive in time");
            let mut answer = (StatusCode::REQUEST_TIMEOUT, error).into_response();
            answer.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            answer
        }
    }
}

/// An error answer: the wire protocol's code and name, with an HTTP status.
struct ApiError(ErrorBody);

impl ApiError {
    fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError(ErrorBody::with_message(code, message))
    }
}

impl From<ErrorBody> for ApiError {
    fn from(e: ErrorBody) -> ApiError {
        ApiError(e)
    }
}

/// The HTTP status of an error code.
fn status_of(code: ErrorCode) -> StatusCode {
    use ErrorCode::*;
    match code {
        NotLoggedIn | TokenInvalid => StatusCode::UNAUTHORIZED,
        RoomDoesNotExist | NotInRoom => StatusCode::NOT_FOUND,
        RoomAlreadyExists
        | ServerRoomLimit
        | RoomFull
        | AttributeCountExceeded
        | AttributesTooLarge => StatusCode::CONFLICT,
        ServerShutdown => StatusCode::SERVICE_UNAVAILABLE,
        Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

#[derive(Serialize)]
struct ErrorJson<'a> {
    code: u16,
    name: &'static str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = ErrorCode::from_u16(self.0.code).unwrap_or(ErrorCode::Internal);
        let body = ErrorJson { code: code.as_u16(), name: code.name(), message: &self.0.message };
        let mut response =
            (status_of(code), Json(serde_json::json!({ "error": body }))).into_response();
        if status_of(code) == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

type ApiResult = Result<Response, ApiError>;

fn json<T: Serialize>(status: StatusCode, value: T) -> ApiResult {
    Ok((status, Json(value)).into_response())
}

/// A JSON request body; a body that is not the expected JSON is `invalid_request`.
struct Body<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.body_text()))?;
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("bad JSON body: {e}")))
    }
}

/// The `{id}` of a route.
struct Id(String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| Id(id))
            .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.body_text()))
    }
}

/// Paging parameters of the list routes: `next_flag` (empty for the first page) and `count`
/// (1-100, default 100).
struct Page {
    next_flag: String,
    count: u32,
}

impl<S: Send + Sync> FromRequestParts<S> for Page {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(default)]
            next_flag: String,
            count: Option<u32>,
        }
        let q: Raw = query(parts, state).await?;
        Ok(Page::new(q.next_flag, q.count))
    }
}

impl Page {
    fn new(next_flag: String, count: Option<u32>) -> Page {
        Page { next_flag, count: count.unwrap_or(MAX_QUERY_COUNT) }
    }
}

/// A route's query string, unknown parameters refused (`invalid_request`).
async fn query<T: DeserializeOwned, S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
) -> Result<T, ApiError> {
    let Query(q) = Query::<T>::from_request_parts(parts, state)
        .await
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.body_text()))?;
    Ok(q)
}

/// The query of `GET /v1/connections`: paging as [`Page`], and the filters `user` and `room`.
struct ConnectionsQuery {
    page: Page,
    user: Option<String>,
    room: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for ConnectionsQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(default)]
            next_flag: String,
            count: Option<u32>,
            user: Option<String>,
            room: Option<String>,
        }
        let q: Raw = query(parts, state).await?;
        Ok(ConnectionsQuery { page: Page::new(q.next_flag, q.count), user: q.user, room: q.room })
    }
}

/// Compares two secrets in time that depends on neither's content: their SHA-256 digests are
/// compared byte by byte without an early exit.
fn same_token(given: &str, expected: &str) -> bool {
    let a = ring::digest::digest(&ring::digest::SHA256, given.as_bytes());
    let b = ring::digest::digest(&ring::digest::SHA256, expected.as_bytes());
    a.as_ref().iter().zip(b.as_ref()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(State(shared): State<St>, request: Request, next: Next) -> Response {
    // Surrounding whitespace (a newline from a secrets file) is not part of the secret.
    let expected = shared.config.admin.token.as_deref().unwrap_or_default().trim();
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        None => ApiError::new(ErrorCode::NotLoggedIn, "missing bearer token").into_response(),
        Some(t) if expected.is_empty() || !same_token(t.trim(), expected) => {
            ApiError::new(ErrorCode::TokenInvalid, "wrong bearer token").into_response()
        }
        Some(_) => next.run(request).await,
    }
}

async fn not_found() -> Response {
    let error = ApiError::new(ErrorCode::InvalidRequest, "no such route");
    (StatusCode::NOT_FOUND, error).into_response()
}

/// axum answers a served path asked with another method with an empty 405; this gives that
/// answer the JSON error shape of every other error, keeping its `Allow` header.
async fn json_method_not_allowed(response: Response) -> Response {
    if response.status() != StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let message = match allow.as_ref().and_then(|a| a.to_str().ok()) {
        Some(methods) => format!("method not allowed (allowed: {methods})"),
        None => "method not allowed".to_string(),
    };
    let error = ApiError::new(ErrorCode::InvalidRequest, message);
    let mut answer = (StatusCode::METHOD_NOT_ALLOWED, error).into_response();
    if let Some(allow) = allow {
        answer.headers_mut().insert(header::ALLOW, allow);
    }
    answer
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(shared): State<St>) -> Response {
    if shared.accepting.load(Ordering::SeqCst) {
        (StatusCode::OK, Json(serde_json::json!({ "status": "ready" }))).into_response()
    } else {
        let body = Json(serde_json::json!({ "status": "not_ready" }));
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

async fn metrics(State(shared): State<St>) -> Response {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], shared.metrics.render()).into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn create_room(State(shared): State<St>, Body(request): Body<AdminCreateRoom>) -> ApiResult {
    let room =
        shared.timed_core("admin_create_room", |c, now| c.admin_create_room(now, request))?;
    tracing::info!(room = %room.room_id, "admin: room created");
    json(StatusCode::CREATED, room)
}

async fn list_rooms(State(shared): State<St>, p: Page) -> ApiResult {
    let rooms =
        shared.timed_core("admin_list_rooms", |c, _| c.admin_rooms(&p.next_flag, p.count))?;
    json(StatusCode::OK, rooms)
}

async fn get_room(State(shared): State<St>, Id(id): Id) -> ApiResult {
    json(StatusCode::OK, shared.timed_core("admin_get_room", |c, _| c.admin_room(&id))?)
}

async fn destroy_room(State(shared): State<St>, Id(id): Id) -> ApiResult {
    let done = shared.timed_core("admin_destroy_room", |c, _| c.admin_destroy_room(&id))?;
    tracing::info!(room = %done.room_id, members = done.members, "admin: room destroyed");
    json(StatusCode::OK, done)
}

async fn members(State(shared): State<St>, Id(id): Id, p: Page) -> ApiResult {
    let page = shared
        .timed_core("admin_list_members", |c, _| c.admin_members(&id, &p.next_flag, p.count))?;
    json(StatusCode::OK, page)
}

async fn send_message(
    State(shared): State<St>,
    Id(id): Id,
    Body(message): Body<AdminMessage>,
) -> ApiResult {
    let sent = shared
        .timed_core("admin_send_message", |c, now| c.admin_send_message(now, &id, message))?;
    json(StatusCode::OK, sent)
}

/// The body of `PUT /v1/rooms/{id}/attributes`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttributesBody {
    attributes: BTreeMap<String, String>,
}

async fn set_attributes(
    State(shared): State<St>,
    Id(id): Id,
    Body(body): Body<AttributesBody>,
) -> ApiResult {
    let set = |c: &mut Core, _| c.admin_set_attributes(&id, body.attributes);
    json(StatusCode::OK, shared.timed_core("admin_set_attributes", set)?)
}

/// The body of `DELETE /v1/rooms/{id}/attributes`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysBody {
    keys: Vec<String>,
}

async fn delete_attributes(
    State(shared): State<St>,
    Id(id): Id,
    Body(body): Body<KeysBody>,
) -> ApiResult {
    let delete = |c: &mut Core, _| c.admin_delete_attributes(&id, body.keys);
    json(StatusCode::OK, shared.timed_core("admin_delete_attributes", delete)?)
}

/// The body of `POST /v1/rooms/{id}/kick`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KickBody {
    user_id: String,
}

async fn kick(State(shared): State<St>, Id(id): Id, Body(body): Body<KickBody>) -> ApiResult {
    let done = shared.timed_core("admin_kick", |c, now| c.admin_kick(now, &id, &body.user_id))?;
    tracing::info!(room = %done.room_id, user = %done.user_id, "admin: member kicked");
    json(StatusCode::OK, done)
}

async fn disconnect(State(shared): State<St>, Id(id): Id) -> ApiResult {
    let done =
        shared.timed_core("admin_disconnect_user", |c, now| c.admin_disconnect_user(now, &id))?;
    tracing::info!(user = %done.user_id, sessions = done.sessions, "admin: user disconnected");
    json(StatusCode::OK, done)
}

async fn list_connections(State(shared): State<St>, q: ConnectionsQuery) -> ApiResult {
    let (user, room, p) = (q.user.as_deref(), q.room.as_deref(), &q.page);
    let list = |c: &Core| c.admin_connections(user, room, &p.next_flag, p.count);
    json(StatusCode::OK, shared.timed_connections("admin_list_connections", list)?)
}

async fn get_connection(State(shared): State<St>, Id(id): Id) -> ApiResult {
    let conn: ConnId = id
        .parse()
        .map_err(|_| ApiError::new(ErrorCode::InvalidRequest, "a connection id is a number"))?;
    match shared.timed_connection("admin_get_connection", |c| c.admin_connection(conn)) {
        Some(info) => json(StatusCode::OK, info),
        None => {
            let error = ApiError::new(ErrorCode::InvalidRequest, format!("no connection {conn}"));
            Ok((StatusCode::NOT_FOUND, error).into_response())
        }
    }
}
