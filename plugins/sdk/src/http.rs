//! Outgoing HTTP helpers over the buffered `http.send` import.
//!
//! [`Client`] adds default headers, JSON bodies and a typed [`Error`] that separates "no
//! response" (the WIT `http-error`) from "a response we did not want" (a status or a body that
//! does not parse), and maps both to the right [`PluginError`] kind.

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::bindings::pbx::plugin::http::{HttpError, Method, Request, Response};
use crate::{Host, PluginError, WasmHost};

impl Request {
    /// A request without headers or body.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: None,
            timeout_ms: None,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Sets the timeout (the host caps it by the invocation's deadline).
    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// The first header of that name (case-insensitive).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

impl Response {
    /// 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first header of that name (case-insensitive; the host lower-cases names anyway).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body as text (invalid UTF-8 replaced, because this is for messages and logs).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| Error::Decode {
            status: self.status,
            message: e.to_string(),
        })
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Head => "HEAD",
        })
    }
}

/// How the host begins a `connect` error whose request never left (the connection could not
/// be made: refused, no route, DNS). Any other `connect` error may have reached the server.
pub const NOT_SENT_PREFIX: &str = "request not sent: ";

/// Why a request did not give the wanted result.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The host refused the URL (not in the plugin's grants for this tenant).
    Denied(String),
    /// No complete response in time.
    Timeout,
    /// A body over the invocation's limit (the limit in bytes).
    TooLarge(u64),
    /// Connection trouble (DNS, refused, reset, TLS).
    Connect(String),
    /// The request was malformed (bad URL or header).
    InvalidRequest(String),
    /// A response came, with a status that is not 2xx. `body` is kept (truncated) for messages.
    Status { status: u16, body: String },
    /// A 2xx response whose body is not the JSON expected.
    Decode { status: u16, message: String },
}

impl Error {
    /// Whether the request may have reached the server without its answer reaching the
    /// plugin (so whatever it asked for may have been done): a timeout, a connection that
    /// broke after it was made, a response over the limit. A request the host refused, a
    /// malformed one and one whose connection could not be made never left.
    pub fn may_have_reached_the_server(&self) -> bool {
        match self {
            Error::Denied(_) | Error::InvalidRequest(_) => false,
            Error::Connect(m) => !m.starts_with(NOT_SENT_PREFIX),
            Error::Timeout | Error::TooLarge(_) => true,
            Error::Status { .. } | Error::Decode { .. } => false,
        }
    }
}

impl From<HttpError> for Error {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Denied(m) => Error::Denied(m),
            HttpError::Timeout => Error::Timeout,
            HttpError::TooLarge(n) => Error::TooLarge(n),
            HttpError::Connect(m) => Error::Connect(m),
            HttpError::InvalidRequest(m) => Error::InvalidRequest(m),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Denied(m) => write!(f, "request denied by the host: {m}"),
            Error::Timeout => write!(f, "no response in time"),
            Error::TooLarge(n) => write!(f, "body over the limit of {n} bytes"),
            Error::Connect(m) => write!(f, "connection failed: {m}"),
            Error::InvalidRequest(m) => write!(f, "invalid request: {m}"),
            Error::Status { status, body } => write!(f, "HTTP {status}: {body}"),
            Error::Decode { status, message } => {
                write!(f, "unexpected response body (HTTP {status}): {message}")
            }
        }
    }
}

impl std::error::Error for Error {}

/// Longest response excerpt kept in [`Error::Status`]: enough to identify an error, short
/// enough for a log line.
const BODY_EXCERPT: usize = 500;

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    match text.char_indices().nth(BODY_EXCERPT) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.into_owned(),
    }
}

impl From<Error> for PluginError {
    /// Retry what may heal (timeouts, connection trouble, 5xx, 408), pause on 429, and give up
    /// on what will not: a denied URL is a settings problem, a 4xx or undecodable body is data.
    fn from(e: Error) -> Self {
        let msg = e.to_string();
        match e {
            Error::Denied(_) => PluginError::config(msg),
            Error::Timeout | Error::Connect(_) => PluginError::transient(msg),
            Error::TooLarge(_) | Error::InvalidRequest(_) | Error::Decode { .. } => {
                PluginError::permanent(msg)
            }
            Error::Status { status, .. } => match status {
                429 => PluginError::rate_limited(msg),
                408 | 500..=599 => PluginError::transient(msg),
                _ => PluginError::permanent(msg),
            },
        }
    }
}

/// A small HTTP client with default headers and JSON helpers.
///
/// ```no_run
/// # use pbx_plugin_sdk::http::Client;
/// # #[derive(serde::Deserialize)] struct Thing { id: String }
/// # fn f() -> Result<(), pbx_plugin_sdk::PluginError> {
/// let client = Client::new().bearer("token").timeout_ms(5_000);
/// let thing: Thing = client.get_json("https://api.example.com/things/1")?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client<H: Host = WasmHost> {
    host: H,
    headers: Vec<(String, String)>,
    timeout_ms: Option<u32>,
}

impl Client<WasmHost> {
    /// A client on the real host.
    pub fn new() -> Self {
        Self::with_host(WasmHost)
    }
}

impl Default for Client<WasmHost> {
    fn default() -> Self {
        Self::new()
    }
}

impl<H: Host> Client<H> {
    /// A client on any [`Host`] (a `FakeHost` in tests).
    pub fn with_host(host: H) -> Self {
        Self {
            host,
            headers: Vec::new(),
            timeout_ms: None,
        }
    }

    /// Adds a header sent with every request.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// `Authorization: Bearer <token>` on every request.
    pub fn bearer(self, token: &str) -> Self {
        self.header("Authorization", format!("Bearer {token}"))
    }

    /// Timeout of every request.
    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// Sends a request with the default headers added; any status is a success here.
    pub fn send(&self, mut req: Request) -> Result<Response, Error> {
        for (n, v) in &self.headers {
            if req.header_value(n).is_none() {
                req.headers.push((n.clone(), v.clone()));
            }
        }
        if req.timeout_ms.is_none() {
            req.timeout_ms = self.timeout_ms;
        }
        Ok(self.host.http_send(&req)?)
    }

    /// Sends and insists on a 2xx status.
    pub fn send_ok(&self, req: Request) -> Result<Response, Error> {
        let resp = self.send(req)?;
        if resp.is_success() {
            Ok(resp)
        } else {
            Err(Error::Status {
                status: resp.status,
                body: excerpt(&resp.body),
            })
        }
    }

    /// GET, 2xx, JSON body.
    pub fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, Error> {
        let req = Request::new(Method::Get, url).header("Accept", "application/json");
        self.send_ok(req)?.json()
    }

    /// POST a JSON body, 2xx, JSON body back.
    pub fn post_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        url: &str,
        body: &B,
    ) -> Result<T, Error> {
        self.send_ok(json_request(Method::Post, url, body)?)?.json()
    }

    /// PATCH a JSON body, 2xx; the body back is ignored (often 204 No Content).
    pub fn patch_json<B: Serialize + ?Sized>(
        &self,
        url: &str,
        body: &B,
    ) -> Result<Response, Error> {
        self.send_ok(json_request(Method::Patch, url, body)?)
    }

    /// PUT a JSON body, 2xx; the body back is ignored.
    pub fn put_json<B: Serialize + ?Sized>(&self, url: &str, body: &B) -> Result<Response, Error> {
        self.send_ok(json_request(Method::Put, url, body)?)
    }

    /// DELETE, 2xx.
    pub fn delete(&self, url: &str) -> Result<Response, Error> {
        self.send_ok(Request::new(Method::Delete, url))
    }
}

/// A request with a JSON body and JSON content headers.
pub fn json_request<B: Serialize + ?Sized>(
    method: Method,
    url: &str,
    body: &B,
) -> Result<Request, Error> {
    let bytes = serde_json::to_vec(body).map_err(|e| Error::InvalidRequest(e.to_string()))?;
    Ok(Request::new(method, url)
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .body(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use crate::testing::FakeHost;

    #[test]
    fn client_adds_headers_and_parses_json() {
        let host = FakeHost::new();
        host.push_response(200, &[("content-type", "application/json")], br#"{"a":1}"#);
        let client = Client::with_host(&host).bearer("t").timeout_ms(1234);
        let v: serde_json::Value = client.get_json("https://x.test/a").expect("ok");
        assert_eq!(v["a"], 1);
        let reqs = host.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].header_value("authorization"), Some("Bearer t"));
        assert_eq!(reqs[0].timeout_ms, Some(1234));
        assert_eq!(reqs[0].method, Method::Get);
    }

    #[test]
    fn statuses_map_to_error_kinds() {
        let host = FakeHost::new();
        for (status, kind) in [
            (500, ErrorKind::Transient),
            (503, ErrorKind::Transient),
            (429, ErrorKind::RateLimited),
            (400, ErrorKind::Permanent),
            (404, ErrorKind::Permanent),
        ] {
            host.push_response(status, &[], b"nope");
            let err = Client::with_host(&host)
                .get_json::<serde_json::Value>("https://x.test/")
                .expect_err("status");
            assert_eq!(
                err,
                Error::Status {
                    status,
                    body: "nope".into()
                }
            );
            assert_eq!(PluginError::from(err).kind, kind, "{status}");
        }
    }

    #[test]
    fn transport_errors_map_to_error_kinds() {
        let host = FakeHost::new();
        for (e, kind) in [
            (HttpError::Timeout, ErrorKind::Transient),
            (HttpError::Connect("reset".into()), ErrorKind::Transient),
            (HttpError::Denied("not granted".into()), ErrorKind::Config),
            (HttpError::TooLarge(10), ErrorKind::Permanent),
        ] {
            host.push_error(e);
            let err = Client::with_host(&host)
                .delete("https://x.test/")
                .expect_err("error");
            assert_eq!(PluginError::from(err).kind, kind);
        }
    }

    #[test]
    fn bad_json_is_a_decode_error() {
        let host = FakeHost::new();
        host.push_response(200, &[], b"<html>");
        let err = Client::with_host(&host)
            .post_json::<_, serde_json::Value>("https://x.test/", &serde_json::json!({"a": 1}))
            .expect_err("decode");
        assert!(matches!(err, Error::Decode { status: 200, .. }), "{err:?}");
        let req = &host.requests()[0];
        assert_eq!(req.body.as_deref(), Some(&br#"{"a":1}"#[..]));
        assert_eq!(req.header_value("content-type"), Some("application/json"));
    }

    #[test]
    fn long_bodies_are_cut_in_errors() {
        let host = FakeHost::new();
        host.push_response(400, &[], "é".repeat(2000).as_bytes());
        let Err(Error::Status { body, .. }) = Client::with_host(&host).delete("https://x.test/")
        else {
            panic!("expected a status error");
        };
        assert_eq!(body.chars().count(), BODY_EXCERPT + 1);
    }
}
