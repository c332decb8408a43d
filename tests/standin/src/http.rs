//! HTTP entry points: the axum router, the REST pipeline (org resolution, faults, version,
//! session, API permissions, accounting, dispatch, headers, request log) and response
//! framing shared with the auth and SOAP endpoints.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::{any, get, post};
use chrono::Utc;

use crate::errors::ApiError;
use crate::faults::{self, FaultKind, Scope};
use crate::json::J;
use crate::org::Org;
use crate::query;
use crate::rest::{self, RestCtx, RestRequest, RestResponse, Version};
use crate::server::ServerCtl;

/// Server-wide state.
pub(crate) struct Shared {
    pub base_url: String,
    pub orgs: RwLock<Vec<Org>>,
    pub ctl: Arc<ServerCtl>,
}

impl Shared {
    fn orgs(&self) -> Vec<Org> {
        self.orgs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn org(&self, org_id: &str) -> Option<Org> {
        let id = crate::ids::normalize(org_id)?;
        self.orgs().into_iter().find(|o| o.inner.id == id)
    }

    /// The org a session token belongs to: tokens start with the 15-character org id.
    pub fn org_by_token(&self, token: &str) -> Option<Org> {
        let prefix = token.split('!').next()?;
        if prefix.len() != 15 {
            return None;
        }
        self.orgs()
            .into_iter()
            .find(|o| o.inner.id.starts_with(prefix))
    }

    pub fn org_by_username(&self, username: &str) -> Option<Org> {
        self.orgs()
            .into_iter()
            .find(|o| o.inner.spec.username.eq_ignore_ascii_case(username))
    }

    pub fn org_by_client_id(&self, client_id: &str) -> Option<Org> {
        self.orgs()
            .into_iter()
            .find(|o| o.inner.spec.client_id == client_id)
    }

    pub fn add(&self, org: Org) -> Result<(), String> {
        let mut orgs = self
            .orgs
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if orgs.iter().any(|o| o.inner.id == org.inner.id) {
            return Err(format!("org {} already exists", org.inner.id));
        }
        orgs.push(org);
        Ok(())
    }

    pub fn create_org(&self, spec: crate::org::OrgSpec) -> Result<Org, String> {
        let org = Org::create(spec).map_err(|e| e.to_string())?;
        self.add(org.clone())?;
        Ok(org)
    }

    pub fn all_orgs(&self) -> Vec<Org> {
        self.orgs()
    }
}

/// Marks a response whose connection must be closed without sending it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DropConnection;

pub(crate) fn drop_connection() -> Response {
    let mut r = Response::new(Body::empty());
    r.extensions_mut().insert(DropConnection);
    r
}

pub(crate) const JSON: &str = "application/json;charset=UTF-8";
/// Recorded on every HEROKU response.
pub(crate) const CACHE_CONTROL: &str = "no-cache,must-revalidate,max-age=0,no-store,private";

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Frames a REST response with the recorded headers (docs/salesforce-api.md §0, §4).
pub(crate) fn rest_http(resp: &RestResponse, limit_info: Option<String>) -> Response {
    let status = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = match &resp.body {
        Some(b) => Response::new(Body::from(b.to_json())),
        None => Response::new(Body::empty()),
    };
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    if let Some(l) = limit_info {
        h.insert("Sforce-Limit-Info", header_value(&l));
    }
    if resp.body.is_some() {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
        if status.is_success() {
            h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
    }
    if let Some(loc) = &resp.location {
        h.insert(header::LOCATION, header_value(loc));
    }
    r
}

fn error_http(e: &ApiError, limit_info: Option<String>) -> Response {
    rest_http(&RestResponse::error(e), limit_info)
}

/// What an injected fault turns a request into, if it ends it.
pub(crate) enum FaultEffect {
    /// Go on (after any latency).
    Proceed,
    /// Answer with this response (not counted).
    Respond(Response),
    /// Close the connection without a response.
    Drop,
}

/// How error bodies look on an endpoint.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    Rest,
    OAuth,
    Soap,
}

pub(crate) async fn apply_fault(
    sh: &Shared,
    org: &Org,
    kind: Option<FaultKind>,
    style: Style,
    token: Option<&str>,
) -> FaultEffect {
    let Some(kind) = kind else {
        return FaultEffect::Proceed;
    };
    match kind {
        FaultKind::Latency(d) => {
            tokio::time::sleep(capped(d)).await;
            FaultEffect::Proceed
        }
        FaultKind::DropConnection => FaultEffect::Drop,
        FaultKind::RefuseConnections(d) => {
            sh.ctl.refuse(d);
            FaultEffect::Drop
        }
        FaultKind::Status(s) => FaultEffect::Respond(match style {
            Style::Rest => rest_http(
                &RestResponse {
                    status: s,
                    body: Some(faults::status_body(s)),
                    location: None,
                },
                None,
            ),
            Style::OAuth => crate::auth::oauth_error(s, "unknown_error", "retry your request"),
            Style::Soap => crate::soap::fault(
                s,
                "UNKNOWN_EXCEPTION",
                "An unexpected error occurred. Please retry your request.",
            ),
        }),
        FaultKind::ExpireSession => {
            if let Some(t) = token {
                org.end_session(t);
            }
            FaultEffect::Respond(match style {
                Style::Rest => error_http(&ApiError::invalid_session(), None),
                Style::OAuth => {
                    crate::auth::oauth_error(400, "invalid_grant", "expired access/refresh token")
                }
                Style::Soap => crate::soap::invalid_login(),
            })
        }
        FaultKind::RequestLimitExceeded => FaultEffect::Respond(match style {
            Style::Soap => crate::soap::fault(
                500,
                "REQUEST_LIMIT_EXCEEDED",
                "TotalRequests Limit exceeded.",
            ),
            _ => error_http(&ApiError::request_limit_exceeded(), Some(org.limit_info())),
        }),
        FaultKind::UnableToLockRow => FaultEffect::Respond(error_http(
            &ApiError::unable_to_lock_row(&crate::ids::generate("001")),
            Some(org.limit_info()),
        )),
    }
}

fn bearer(headers: &HeaderMap) -> Result<String, ApiError> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::invalid_session());
    };
    let v = v.to_str().map_err(|_| ApiError::invalid_auth_header())?;
    let (scheme, token) = v
        .split_once(' ')
        .ok_or_else(ApiError::invalid_auth_header)?;
    if !(scheme.eq_ignore_ascii_case("Bearer") || scheme.eq_ignore_ascii_case("OAuth")) {
        return Err(ApiError::invalid_auth_header());
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(ApiError::invalid_auth_header());
    }
    Ok(token.to_string())
}

fn path_and_query(uri: &Uri) -> String {
    uri.path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| uri.path().to_string())
}

/// `GET /services/data/`: the versions list (docs/salesforce-api.md §0). Needs no session and
/// does not count (§4).
async fn versions() -> Response {
    rest_http(&RestResponse::ok(rest::versions_body()), None)
}

/// Everything under `/services/data/vXX.X/`.
async fn data(
    State(sh): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let pq = path_and_query(&uri);
    let rest_path = uri.path().strip_prefix("/services/data/").unwrap_or("");
    let mut segs = rest::segments(rest_path);
    if segs.is_empty() {
        return versions().await;
    }
    let version = rest::parse_version(&segs[0]);
    segs.remove(0);

    let token = match bearer(&headers) {
        Ok(t) => t,
        Err(e) => return error_http(&e, None),
    };
    let Some(org) = sh.org_by_token(&token) else {
        return error_http(&ApiError::invalid_session(), None);
    };
    let m = method.as_str().to_string();
    let (resp, counted) = data_for_org(
        &sh, &org, &m, &pq, version, segs, &uri, &headers, &body, &token,
    )
    .await;
    let status = if resp.extensions().get::<DropConnection>().is_some() {
        0
    } else {
        resp.status().as_u16()
    };
    org.log(&m, &pq, status, counted);
    resp
}

#[allow(clippy::too_many_arguments)]
async fn data_for_org(
    sh: &Shared,
    org: &Org,
    method: &str,
    pq: &str,
    version: Version,
    segs: Vec<String>,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    token: &str,
) -> (Response, bool) {
    let is_composite = segs.first().map(String::as_str) == Some("composite");
    let scope = if is_composite {
        Scope::CompositeRequest
    } else {
        Scope::Request
    };
    let fault = org.take_fault(method, pq, scope);
    let lock_row = fault == Some(FaultKind::UnableToLockRow);
    match apply_fault(sh, org, fault, Style::Rest, Some(token)).await {
        FaultEffect::Proceed => {}
        FaultEffect::Drop => return (drop_connection(), false),
        FaultEffect::Respond(r) => {
            // A lock failure happens inside a DML call, which Salesforce counts.
            if lock_row && org.charge().is_ok() {
                let mut r = r;
                r.headers_mut()
                    .insert("Sforce-Limit-Info", header_value(&org.limit_info()));
                return (r, true);
            }
            return (r, false);
        }
    }
    let version = match version {
        Version::Ok(v) => v,
        Version::Retired(v) => return (error_http(&rest::gone(&v), None), false),
        Version::Unknown => return (error_http(&ApiError::not_found(), None), false),
    };
    let Some(user_id) = org.check_session(token) else {
        return (error_http(&ApiError::invalid_session(), None), false);
    };
    let spec = &org.inner.spec;
    if !spec.rest_api_available {
        let e = ApiError::new(
            403,
            "API_DISABLED_FOR_ORG",
            "The REST API is not enabled for this Organization.",
        );
        return (error_http(&e, None), false);
    }
    if !spec.api_enabled {
        let e = ApiError::new(
            403,
            "API_DISABLED_FOR_ORG",
            "API is not enabled for this Organization or Partner",
        );
        return (error_http(&e, None), false);
    }
    if org.charge().is_err() {
        return (
            error_http(&ApiError::request_limit_exceeded(), Some(org.limit_info())),
            false,
        );
    }
    let (api_used, api_max) = org.api_usage();
    let ctx = RestCtx {
        version,
        user_id,
        batch_size: query::batch_size(
            headers
                .get("Sforce-Query-Options")
                .and_then(|v| v.to_str().ok()),
        ),
        now: Utc::now(),
        api_used,
        api_max,
    };
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let req = RestRequest {
        method,
        segments: segs,
        query,
        body,
    };
    let resp = {
        let mut data = org.data();
        rest::dispatch(org, &mut data, &ctx, &req)
    };
    (rest_http(&resp, Some(org.limit_info())), true)
}

/// Unknown paths outside the API: Salesforce's generic 404.
async fn fallback() -> Response {
    error_http(&ApiError::not_found(), None)
}

pub(crate) fn router(sh: Arc<Shared>) -> Router {
    Router::new()
        .route("/services/oauth2/token", post(crate::auth::token))
        .route("/services/oauth2/revoke", post(crate::auth::revoke))
        .route("/id/{org}/{user}", get(crate::auth::identity))
        .route("/services/Soap/u/{version}", post(crate::soap::login))
        .route("/services/Soap/c/{version}", post(crate::soap::login))
        .route("/services/data", get(versions))
        .route("/services/data/", get(versions))
        .route("/services/data/{*rest}", any(data))
        .nest("/__standin", crate::control::router())
        .fallback(fallback)
        .with_state(sh)
}

/// A small helper for handlers answering JSON outside the REST API.
pub(crate) fn json_http(status: u16, body: &J, cache_control: &'static str) -> Response {
    let mut r = Response::new(Body::from(body.to_json()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    r
}

/// Sleeps are capped so that a mistaken fault cannot hang a test run forever.
pub(crate) fn capped(d: Duration) -> Duration {
    d.min(Duration::from_secs(600))
}
