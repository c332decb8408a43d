//! The HTTP/JSON door (axum), for a PBX in any language and for the tenant admin's tools.
//! Every route calls the same [`Host`] methods a Rust PBX calls.
//!
//! Ingest:
//! - `POST /v1/events`: a call event (JSON, see [`crate::events::CallEvent`]) → 202 + receipt
//! - `POST /v1/ivr`: an IVR look-up → 200 + decision, within the request's `deadline_ms`
//!
//! Admin:
//! - `GET  /v1/plugins`: every declared plugin and whether it loaded
//! - `GET  /v1/tenants/{t}/plugins`: the tenant's view (settings; secrets masked)
//! - `PUT  /v1/tenants/{t}/plugins/{p}/enabled` `{"enabled": bool}`
//! - `PUT  /v1/tenants/{t}/plugins/{p}/config` (JSON object)
//! - `PUT  /v1/tenants/{t}/plugins/{p}/secrets/{name}` `{"value": "..."}` (write-only)
//! - `GET  /v1/tenants/{t}/plugins/{p}/secrets` (names, masked)
//! - `POST /v1/tenants/{t}/plugins/{p}/verify`: the settings check
//! - `GET  /v1/tenants/{t}/log?limit=N`, `GET /v1/tenants/{t}/usage`
//! - `GET  /v1/tenants/{t}/deliveries?status=dead`, `POST /v1/tenants/{t}/deliveries/{id}/replay`
//! - `POST /v1/reload`
//! - `POST /v1/tenants/{t}/tokens` `{"label": "..."}` → a tenant-scoped token (operator only);
//!   `DELETE /v1/tenants/{t}/tokens` revokes them all
//!
//! Health (no token needed):
//! - `GET  /healthz`: liveness, "ok" while the process answers
//! - `GET  /metrics`: Prometheus metrics, host-wide (no token).
//! - `GET  /readyz`: readiness ([`Host::readiness`]): 200 `{"ready": true, "checks": {...}}`,
//!   or 503 with the same shape naming each failing check (`storage`, `plugins`, `queue`) and
//!   its `reason`
//!
//! Authentication ([`crate::auth`]): `Authorization: Bearer <token>`. The operator's token may
//! do everything; a tenant token only the `/v1/tenants/{its tenant}/...` admin routes, and of
//! `/v1/tenants/{t}/plugins/{p}/...` only those of plugins the operator offered to the tenant
//! (`[tenants.X] offered`, or configured for it); its plugin list shows only those.
//!
//! The socket the API serves on is refused to plugins ([`Host::protect_listen_socket`]).

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::events::{CallEvent, IvrLookup};
use crate::host::IngestError;
use crate::store::DeliveryStatus;
use crate::{AdminError, Host};

/// Largest request body the API accepts.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// An error response: `{"error": {"code": "...", "message": "..."}}`.
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = if matches!(r, JsonRejection::BytesRejection(_)) {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError {
            status,
            code: "invalid-json",
            message: r.body_text(),
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        let (status, code) = match &e {
            AdminError::UnknownTenant(_) => (StatusCode::NOT_FOUND, "unknown-tenant"),
            AdminError::UnknownPlugin(_) => (StatusCode::NOT_FOUND, "unknown-plugin"),
            AdminError::NotLoaded(_) => (StatusCode::CONFLICT, "not-loaded"),
            AdminError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
            AdminError::Storage(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage"),
            AdminError::Check(_) => (StatusCode::BAD_GATEWAY, "check-failed"),
        };
        ApiError {
            status,
            code,
            message: e.to_string(),
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        let (status, code) = match &e {
            IngestError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid-event"),
            IngestError::UnknownTenant(_) => (StatusCode::NOT_FOUND, "unknown-tenant"),
            IngestError::Storage(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage"),
        };
        ApiError {
            status,
            code,
            message: e.to_string(),
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The router over a running host.
pub fn router(host: Host) -> Router {
    Router::new()
        .route("/v1/events", post(post_event))
        .route("/v1/ivr", post(post_ivr))
        .route("/v1/plugins", get(list_plugins))
        .route("/v1/reload", post(reload))
        .route("/v1/tenants/{tenant}/plugins", get(tenant_plugins))
        .route(
            "/v1/tenants/{tenant}/plugins/{plugin}/enabled",
            put(put_enabled),
        )
        .route(
            "/v1/tenants/{tenant}/plugins/{plugin}/config",
            put(put_config),
        )
        .route(
            "/v1/tenants/{tenant}/plugins/{plugin}/secrets",
            get(get_secrets),
        )
        .route(
            "/v1/tenants/{tenant}/plugins/{plugin}/secrets/{name}",
            put(put_secret).delete(delete_secret),
        )
        .route("/v1/tenants/{tenant}/plugins/{plugin}/verify", post(verify))
        .route("/v1/tenants/{tenant}/log", get(log))
        .route("/v1/tenants/{tenant}/usage", get(usage))
        .route("/v1/tenants/{tenant}/deliveries", get(deliveries))
        .route("/v1/tenants/{tenant}/deliveries/{id}/replay", post(replay))
        .route(
            "/v1/tenants/{tenant}/tokens",
            post(issue_token).delete(revoke_tokens),
        )
        .layer(middleware::from_fn_with_state(host.clone(), authorize))
        // Added after the auth layer: a load balancer or an orchestrator asks without a token.
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(host)
}

/// Decide from the token and the path whether the request may proceed.
async fn authorize(State(host): State<Host>, req: Request, next: Next) -> Response {
    let bearer = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(principal) = host.authenticate(bearer) else {
        return ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: "a valid bearer token is required".into(),
        }
        .into_response();
    };
    let path = req.uri().path();
    let tenant_route = path
        .strip_prefix("/v1/tenants/")
        .and_then(|rest| rest.split('/').next());
    let allowed = match (&principal, tenant_route) {
        (crate::auth::Principal::Operator, _) => true,
        // Tenant admins manage their own tenant, but cannot mint tokens.
        (p, Some(tenant)) => p.may_access(tenant) && !path.ends_with("/tokens"),
        (_, None) => false,
    };
    if !allowed {
        return ApiError {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            message: "this token does not grant access to this resource".into(),
        }
        .into_response();
    }
    // A tenant admin touches only the plugins the operator offered to its tenant.
    if let (crate::auth::Principal::Tenant(tenant), Some(plugin)) = (&principal, plugin_route(path))
        && !host.is_offered(tenant, plugin)
    {
        return ApiError {
            status: StatusCode::FORBIDDEN,
            code: "not-offered",
            message: format!(
                "plugin '{plugin}' is not offered to tenant '{tenant}' (the operator offers plugins in plugins.toml: [tenants.{tenant}] offered)"
            ),
        }
        .into_response();
    }
    let mut req = req;
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// The plugin of a `/v1/tenants/{t}/plugins/{p}/...` path.
fn plugin_route(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v1/tenants/")?;
    let (_, rest) = rest.split_once('/')?;
    let plugin = rest.strip_prefix("plugins/")?.split('/').next()?;
    (!plugin.is_empty()).then_some(plugin)
}

#[derive(Deserialize)]
struct TokenRequest {
    #[serde(default)]
    label: String,
}

async fn issue_token(
    State(host): State<Host>,
    Path(tenant): Path<String>,
    body: Result<Json<TokenRequest>, JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    let Json(req) = body?;
    let token = host.issue_tenant_token(&tenant, &req.label)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"tenant": tenant, "token": token})),
    ))
}

async fn revoke_tokens(
    State(host): State<Host>,
    Path(tenant): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        json!({"revoked": host.revoke_tenant_tokens(&tenant)?}),
    ))
}

async fn post_event(
    State(host): State<Host>,
    body: Result<Json<CallEvent>, JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    let Json(event) = body?;
    Ok((StatusCode::ACCEPTED, Json(host.ingest(event)?)))
}

/// Prometheus metrics ([`Host::metrics_text`]); host-wide figures only, no tenant's data.
async fn metrics(State(host): State<Host>) -> Response {
    match tokio::task::spawn_blocking(move || host.metrics_text()).await {
        Ok(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: format!("the metrics could not be gathered: {e}"),
        }
        .into_response(),
    }
}

/// Readiness ([`Host::readiness`]): 200 when ready, 503 naming each failing check and why.
async fn readyz(State(host): State<Host>) -> Response {
    // The storage probe is a (small, at most once a second) blocking database write.
    match tokio::task::spawn_blocking(move || host.readiness()).await {
        Ok(report) => {
            let status = if report.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (status, Json(report)).into_response()
        }
        Err(e) => ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: format!("the readiness check did not complete: {e}"),
        }
        .into_response(),
    }
}

async fn post_ivr(
    State(host): State<Host>,
    body: Result<Json<IvrLookup>, JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    let Json(req) = body?;
    let decision = host.ivr_lookup(req).await.map_err(|e| ApiError {
        status: StatusCode::BAD_REQUEST,
        code: "invalid-request",
        message: e.to_string(),
    })?;
    Ok(Json(decision))
}

async fn list_plugins(State(host): State<Host>) -> impl IntoResponse {
    Json(json!({"allocator": host.allocator(), "plugins": host.plugin_statuses()}))
}

async fn reload(State(host): State<Host>) -> ApiResult<impl IntoResponse> {
    match host.reload() {
        Ok(statuses) => Ok(Json(json!({"plugins": statuses}))),
        Err(errors) => Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid-config",
            message: errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        }),
    }
}

async fn tenant_plugins(
    State(host): State<Host>,
    Path(tenant): Path<String>,
    principal: Option<axum::Extension<crate::auth::Principal>>,
) -> ApiResult<impl IntoResponse> {
    let mut views = host.tenant_plugins(&tenant)?;
    // A tenant admin sees the plugins offered to it, not the operator's whole catalogue.
    if matches!(
        principal.as_deref(),
        Some(crate::auth::Principal::Tenant(_))
    ) {
        views.retain(|v| v.offered);
    }
    Ok(Json(views))
}

#[derive(Deserialize)]
struct Enabled {
    enabled: bool,
}

async fn put_enabled(
    State(host): State<Host>,
    Path((tenant, plugin)): Path<(String, String)>,
    body: Result<Json<Enabled>, JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    let Json(e) = body?;
    host.set_enabled(&tenant, &plugin, e.enabled)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn put_config(
    State(host): State<Host>,
    Path((tenant, plugin)): Path<(String, String)>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    let Json(config) = body?;
    host.set_config(&tenant, &plugin, config)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_secrets(
    State(host): State<Host>,
    Path((tenant, plugin)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(host.secrets(&tenant, &plugin)?))
}

#[derive(Deserialize)]
struct SecretValue {
    value: String,
}

async fn put_secret(
    State(host): State<Host>,
    Path((tenant, plugin, name)): Path<(String, String, String)>,
    body: Result<Json<SecretValue>, JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    let Json(v) = body?;
    host.set_secret(&tenant, &plugin, &name, &v.value)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_secret(
    State(host): State<Host>,
    Path((tenant, plugin, name)): Path<(String, String, String)>,
) -> ApiResult<impl IntoResponse> {
    host.delete_secret(&tenant, &plugin, &name)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn verify(
    State(host): State<Host>,
    Path((tenant, plugin)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let items = host.verify(&tenant, &plugin).await?;
    let ok = items.iter().all(|i| i.ok);
    Ok(Json(json!({"ok": ok, "items": items})))
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<u32>,
}

async fn log(
    State(host): State<Host>,
    Path(tenant): Path<String>,
    Query(q): Query<Limit>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(host.log(&tenant, q.limit.unwrap_or(200).min(10_000))?))
}

async fn usage(
    State(host): State<Host>,
    Path(tenant): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(host.usage(&tenant)?))
}

#[derive(Deserialize)]
struct StatusFilter {
    status: Option<DeliveryStatus>,
}

async fn deliveries(
    State(host): State<Host>,
    Path(tenant): Path<String>,
    Query(q): Query<StatusFilter>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(host.deliveries(&tenant, q.status)?))
}

async fn replay(
    State(host): State<Host>,
    Path((tenant, id)): Path<(String, i64)>,
) -> ApiResult<impl IntoResponse> {
    if host.replay(&tenant, id)? {
        Ok(StatusCode::ACCEPTED)
    } else {
        Err(ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not-found",
            message: format!("no dead delivery {id} for tenant '{tenant}'"),
        })
    }
}

/// Serve the API on `listener` until `shutdown` resolves.
pub async fn serve(
    host: Host,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Before the first request is answered: no plugin may reach the API.
    host.protect_listen_socket(listener.local_addr()?);
    axum::serve(listener, router(host))
        .with_graceful_shutdown(shutdown)
        .await
}
