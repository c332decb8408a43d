//! Routing of `/services/data/vXX.X/…` resources to their handlers.
//!
//! This layer is synchronous and runs with the org's data locked: the HTTP entry point
//! (`http.rs`) does authentication, faults and accounting first, and composite requests call
//! [`dispatch`] for each subrequest under one lock.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::composite;
use crate::describe;
use crate::errors::ApiError;
use crate::json::J;
use crate::org::{Org, OrgData};
use crate::query;
use crate::sobjects;
use crate::sosl;

/// The newest API version the stand-in serves (Winter '27).
pub const LATEST_VERSION: u32 = 68;
/// The oldest version still served: v21.0–v30.0 were retired in Summer '25, v7–v20 earlier
/// (docs/salesforce-api.md §0, "Retired versions").
pub const OLDEST_VERSION: u32 = 31;

/// A validated API version from a URL (`v53.0`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Version {
    Ok(String),
    /// Retired: 410 GONE.
    Retired(String),
    /// Not a version Salesforce has: 404.
    Unknown,
}

/// Parses `vNN.N`.
pub fn parse_version(seg: &str) -> Version {
    let Some(num) = seg.strip_prefix('v') else {
        return Version::Unknown;
    };
    let Some((major, minor)) = num.split_once('.') else {
        return Version::Unknown;
    };
    let (Ok(major), true) = (major.parse::<u32>(), minor == "0") else {
        return Version::Unknown;
    };
    match major {
        m if (OLDEST_VERSION..=LATEST_VERSION).contains(&m) => Version::Ok(format!("{m}.0")),
        m if (7..OLDEST_VERSION).contains(&m) => Version::Retired(format!("{m}.0")),
        _ => Version::Unknown,
    }
}

/// 410 for a retired version. The errorCode `GONE` is what clients report seeing
/// (restforce issue #941); the message reuses the SOAP API's wording for the same case.
pub fn gone(version: &str) -> ApiError {
    ApiError::new(
        410,
        "GONE",
        format!(
            "The API version that was specified ({version}) is below the minimum supported ({OLDEST_VERSION}.0). Change the version number and run the request again."
        ),
    )
    .code_first()
}

/// `label` of a release, e.g. v44.0 -> "Winter '19".
pub fn release_label(major: u32) -> String {
    let idx = major.saturating_sub(31);
    let season = ["Summer", "Winter", "Spring"][(idx % 3) as usize];
    let year = 14 + idx.div_ceil(3);
    format!("{season} '{year:02}")
}

/// `GET /services/data/`: every supported version (not counted, no session needed).
pub fn versions_body() -> J {
    J::Arr(
        (OLDEST_VERSION..=LATEST_VERSION)
            .map(|m| {
                J::obj([
                    ("label", J::Str(release_label(m))),
                    ("url", J::Str(format!("/services/data/v{m}.0"))),
                    ("version", J::Str(format!("{m}.0"))),
                ])
            })
            .collect(),
    )
}

/// What a handler needs besides the data.
#[derive(Clone, Debug)]
pub struct RestCtx {
    /// `53.0`
    pub version: String,
    pub user_id: String,
    pub batch_size: usize,
    pub now: DateTime<Utc>,
    /// Daily allocation used (this request included) and its maximum, for `limits/`.
    pub api_used: u64,
    pub api_max: u64,
}

impl RestCtx {
    pub fn version_number(&self) -> f64 {
        self.version.parse().unwrap_or(0.0)
    }
}

/// A request below `/services/data/vXX.X/`.
#[derive(Clone, Debug)]
pub struct RestRequest<'a> {
    pub method: &'a str,
    /// Segments after the version, without empty ones (`["sobjects", "Account"]`).
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
    pub body: &'a [u8],
}

impl RestRequest<'_> {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A response before HTTP framing.
#[derive(Clone, Debug)]
pub struct RestResponse {
    pub status: u16,
    pub body: Option<J>,
    pub location: Option<String>,
}

impl RestResponse {
    pub fn ok(body: J) -> RestResponse {
        RestResponse {
            status: 200,
            body: Some(body),
            location: None,
        }
    }

    pub fn no_content() -> RestResponse {
        RestResponse {
            status: 204,
            body: None,
            location: None,
        }
    }

    pub fn error(e: &ApiError) -> RestResponse {
        RestResponse {
            status: e.status,
            body: Some(e.body()),
            location: None,
        }
    }

    pub fn from_result(r: Result<RestResponse, ApiError>) -> RestResponse {
        r.unwrap_or_else(|e| RestResponse::error(&e))
    }
}

/// Splits a URL path (after the version) into segments and decodes `%xx`.
pub fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_else(|| s.to_string())
        })
        .collect()
}

/// Parses a JSON request body; errors are JSON_PARSER_ERROR as in Salesforce.
pub fn json_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::json_parser(
            "No content to map due to end-of-input at [line:1, column:0]",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::json_parser(format!(
            "Unexpected character or structure in JSON body: {e} at [line:{}, column:{}]",
            e.line(),
            e.column()
        ))
    })
}

fn allow(method: &str, allowed: &[&str]) -> Result<(), ApiError> {
    if allowed.contains(&method) || (method == "HEAD" && allowed.contains(&"GET")) {
        Ok(())
    } else {
        Err(ApiError::method_not_allowed(method, allowed))
    }
}

fn resource_list(version: &str) -> J {
    let base = format!("/services/data/v{version}");
    J::Obj(
        [
            "limits",
            "parameterizedSearch",
            "query",
            "queryAll",
            "search",
            "sobjects",
            "composite",
        ]
        .iter()
        .map(|r| (r.to_string(), J::Str(format!("{base}/{r}"))))
        .collect(),
    )
}

/// `GET limits/` (docs/salesforce-api.md §2d; numbers as integers).
fn limits(ctx: &RestCtx) -> J {
    let pair = |max: u64, remaining: u64| {
        J::obj([("Max", J::uint(max)), ("Remaining", J::uint(remaining))])
    };
    J::obj([
        ("ConcurrentAsyncGetReportInstances", pair(200, 200)),
        ("ConcurrentSyncReportRuns", pair(20, 20)),
        (
            "DailyApiRequests",
            pair(ctx.api_max, ctx.api_max.saturating_sub(ctx.api_used)),
        ),
        ("DailyAsyncApexExecutions", pair(250_000, 250_000)),
        ("DailyBulkApiBatches", pair(15_000, 15_000)),
        ("DailyBulkV2QueryFileStorageMB", pair(976_562, 976_562)),
        ("DailyBulkV2QueryJobs", pair(10_000, 10_000)),
        ("DailyGenericStreamingApiEvents", pair(10_000, 10_000)),
        ("DailyStreamingApiEvents", pair(10_000, 10_000)),
        ("DataStorageMB", pair(5, 5)),
        ("FileStorageMB", pair(20, 20)),
        ("HourlyTimeBasedWorkflow", pair(50, 50)),
        ("MassEmail", pair(10, 10)),
        ("SingleEmail", pair(15, 15)),
        ("StreamingApiConcurrentClients", pair(20, 20)),
    ])
}

/// Routes one request. `composite_ok` is false inside a composite subrequest, where only the
/// resources composite allows may be used (checked by the caller).
pub fn dispatch(
    org: &Org,
    data: &mut OrgData,
    ctx: &RestCtx,
    req: &RestRequest<'_>,
) -> RestResponse {
    RestResponse::from_result(route(org, data, ctx, req))
}

fn route(
    org: &Org,
    data: &mut OrgData,
    ctx: &RestCtx,
    req: &RestRequest<'_>,
) -> Result<RestResponse, ApiError> {
    let m = req.method;
    let segs: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    match segs.as_slice() {
        [] => {
            allow(m, &["GET"])?;
            Ok(RestResponse::ok(resource_list(&ctx.version)))
        }
        ["limits"] => {
            allow(m, &["GET"])?;
            Ok(RestResponse::ok(limits(ctx)))
        }
        [r @ ("query" | "queryAll")] => {
            allow(m, &["GET"])?;
            let q = req.param("q").unwrap_or("");
            Ok(RestResponse::ok(query::run(
                data,
                ctx,
                q,
                *r == "queryAll",
            )?))
        }
        ["query" | "queryAll", locator] => {
            allow(m, &["GET"])?;
            Ok(RestResponse::ok(query::more(data, ctx, locator)?))
        }
        ["search"] => {
            allow(m, &["GET"])?;
            Ok(RestResponse::ok(sosl::search(
                data,
                ctx,
                req.param("q").unwrap_or(""),
            )?))
        }
        ["parameterizedSearch"] => {
            allow(m, &["GET"])?;
            Ok(RestResponse::ok(sosl::parameterized(
                data, ctx, &req.query,
            )?))
        }
        ["sobjects"] => {
            allow(m, &["GET"])?;
            Ok(RestResponse::ok(describe::describe_global(
                data,
                &ctx.version,
            )))
        }
        ["sobjects", ty, rest @ ..] => sobjects::route(data, ctx, req, ty, rest),
        ["composite"] => {
            allow(m, &["POST"])?;
            Ok(composite::composite(org, data, ctx, req.body))
        }
        ["composite", "sobjects"] => {
            allow(m, &["POST", "PATCH", "DELETE"])?;
            Ok(composite::collections(org, data, ctx, req))
        }
        ["composite", "sobjects", ty] => {
            allow(m, &["GET", "POST"])?;
            composite::retrieve(data, ctx, req, ty)
        }
        // Upsert by external id exists from v46.0; before, the resource does not exist and
        // answers like any unknown one (404 NOT_FOUND below).
        ["composite", "sobjects", ty, field] if ctx.version_number() >= 46.0 => {
            allow(m, &["PATCH"])?;
            composite::upsert(org, data, ctx, req, ty, field)
        }
        ["composite", what @ ("graph" | "tree" | "batch"), ..] => {
            Err(ApiError::standin_unsupported(&format!("composite/{what}")))
        }
        _ => Err(ApiError::not_found()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("v53.0"), Version::Ok("53.0".into()));
        assert_eq!(parse_version("v30.0"), Version::Retired("30.0".into()));
        assert_eq!(parse_version("v21.0"), Version::Retired("21.0".into()));
        assert_eq!(parse_version("v99.0"), Version::Unknown);
        assert_eq!(parse_version("v53"), Version::Unknown);
        assert_eq!(parse_version("53.0"), Version::Unknown);
        assert_eq!(release_label(44), "Winter '19");
        assert_eq!(release_label(53), "Winter '22");
        assert_eq!(release_label(64), "Summer '25");
        assert_eq!(release_label(68), "Winter '27");
    }

    #[test]
    fn segment_decoding() {
        assert_eq!(segments("/sobjects/Account/"), vec!["sobjects", "Account"]);
        assert_eq!(
            segments("sobjects/X/Ext__c/a%20b"),
            vec!["sobjects", "X", "Ext__c", "a b"]
        );
    }
}
