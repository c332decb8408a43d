//! The `http` capability: buffered outgoing HTTP through one shared client.
//!
//! Three checks stand between a plugin and the network, in this order:
//! 1. the URL must match one of the plugin's granted patterns, after `{config.KEY}` in a
//!    pattern is replaced by the tenant's setting (how a tenant's own Salesforce login host,
//!    My Domain or instance URL is allowed without a test-only bypass);
//! 2. the address it resolves to must not be loopback, private, link-local (cloud metadata),
//!    or otherwise internal, unless the operator allows that network in `[host]`;
//! 3. the request must fit the invocation's limits (count, bytes out, bytes in, time).
//!
//! The address check runs again inside the client's resolver, on the addresses it actually
//! connects to, so a name that resolves differently the second time gains nothing.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use url::Url;

use crate::runtime::Invocation;
use crate::runtime::bindings::http::{Host, HttpError, Method, Request, Response};

// ---------------------------------------------------------------------------------------------
// URL patterns

/// A granted URL pattern: `scheme://host[:port][/path-prefix]`, host optionally `*.suffix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlPattern {
    scheme: String,
    host: HostPattern,
    port: Option<u16>,
    path_prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// `*.example.com`: any name ending in `.example.com` (not `example.com` itself).
    Subdomains(String),
}

impl UrlPattern {
    /// Check a pattern as written in plugins.toml (placeholders allowed).
    pub fn parse_template(template: &str) -> Result<(), String> {
        let mut probe = template.to_string();
        while let Some(start) = probe.find("{config.") {
            let Some(len) = probe[start..].find('}') else {
                return Err(format!("unclosed placeholder in '{template}'"));
            };
            let key = &probe[start + 8..start + len];
            if key.is_empty()
                || !key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(format!(
                    "bad placeholder '{{config.{key}}}' in '{template}'"
                ));
            }
            probe.replace_range(start..start + len + 1, "https://placeholder.invalid");
        }
        if probe.contains('{') || probe.contains('}') {
            return Err(format!(
                "'{template}': the only placeholder is {{config.KEY}}"
            ));
        }
        if template.starts_with("{config.") {
            // A pattern that is a whole tenant setting is checked when expanded.
            return Ok(());
        }
        UrlPattern::parse(&probe).map(|_| ())
    }

    /// Parse a concrete pattern.
    pub fn parse(pattern: &str) -> Result<UrlPattern, String> {
        let (scheme, rest) = pattern
            .split_once("://")
            .ok_or_else(|| format!("'{pattern}' is not a URL pattern (scheme://host[/path])"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "https" && scheme != "http" {
            return Err(format!("'{pattern}': only http and https can be granted"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        // "/services/*", "/services/" and "/services" all grant "/services" and below.
        let path_prefix = path.trim_end_matches('*').trim_end_matches('/').to_string();
        if path_prefix.contains('*') {
            return Err(format!(
                "'{pattern}': '*' is allowed only at the end of the path"
            ));
        }
        let bad_port = |p: &str| format!("'{pattern}': bad port '{p}'");
        // "[::1]" and "[::1]:8080": the colons inside the brackets are the address's own.
        let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
            let Some((h, after)) = inner.split_once(']') else {
                return Err(format!("'{pattern}': unclosed '[' in the host"));
            };
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .and_then(|n| n.parse::<u16>().ok())
                        .ok_or_else(|| bad_port(p))?,
                ),
            };
            (h, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p.parse::<u16>().map_err(|_| bad_port(p))?)),
                None => (authority, None),
            }
        };
        let host = host.to_ascii_lowercase();
        if host.is_empty() {
            return Err(format!("'{pattern}' has no host"));
        }
        let host = if let Some(suffix) = host.strip_prefix("*.") {
            if suffix.contains('*') || suffix.split('.').filter(|l| !l.is_empty()).count() < 2 {
                return Err(format!(
                    "'{pattern}': a wildcard must leave at least a registrable domain (e.g. *.salesforce.com)"
                ));
            }
            HostPattern::Subdomains(format!(".{suffix}"))
        } else if host.contains('*') {
            return Err(format!(
                "'{pattern}': '*' is allowed only as the first label of the host"
            ));
        } else {
            HostPattern::Exact(host.trim_matches(|c| c == '[' || c == ']').to_string())
        };
        Ok(UrlPattern {
            scheme,
            host,
            port,
            path_prefix,
        })
    }

    /// Expand `{config.KEY}` with the tenant's settings; `None` if a setting is missing
    /// (the pattern then grants nothing).
    pub fn expand(
        template: &str,
        config: &serde_json::Value,
    ) -> Option<Result<UrlPattern, String>> {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(start) = rest.find("{config.") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}')? + start;
            let key = &rest[start + 8..end];
            let value = config.get(key)?.as_str()?;
            out.push_str(value.trim_end_matches('/'));
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Some(UrlPattern::parse(&out))
    }

    /// Does `url` fall under this pattern?
    pub fn matches(&self, url: &Url) -> bool {
        if url.scheme() != self.scheme {
            return false;
        }
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host
            .trim_matches(|c| c == '[' || c == ']')
            .to_ascii_lowercase();
        let host_ok = match &self.host {
            HostPattern::Exact(h) => &host == h,
            HostPattern::Subdomains(suffix) => {
                host.ends_with(suffix.as_str()) && host.len() > suffix.len()
            }
        };
        if !host_ok {
            return false;
        }
        let port_ok = match self.port {
            Some(p) => url.port_or_known_default() == Some(p),
            None => url.port().is_none(),
        };
        if !port_ok {
            return false;
        }
        let path = url.path();
        if self.path_prefix == "/" || self.path_prefix.is_empty() {
            return true;
        }
        // "/services" grants "/services" and "/services/...", not "/servicesX".
        path.starts_with(&self.path_prefix)
            && (path.len() == self.path_prefix.len()
                || path.as_bytes()[self.path_prefix.len()] == b'/')
    }
}

// ---------------------------------------------------------------------------------------------
// Address policy

/// Which addresses plugins may connect to.
#[derive(Debug, Clone, Default)]
pub struct NetPolicy {
    /// Internal networks the operator opened anyway.
    pub allowed_internal: Vec<IpNet>,
}

impl NetPolicy {
    /// Why `ip` is refused, if it is.
    pub fn refuse(&self, ip: IpAddr) -> Option<&'static str> {
        let ip = match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        let why = internal_kind(ip)?;
        if self.allowed_internal.iter().any(|n| n.contains(&ip)) {
            return None;
        }
        Some(why)
    }
}

fn internal_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() {
                Some("private")
            } else if v4.is_link_local() {
                Some("link-local (cloud metadata)")
            } else if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() || o[0] == 0 {
                Some("non-routable")
            } else if o[0] == 100 && (o[1] & 0xC0) == 64 {
                Some("carrier-grade NAT")
            } else if o[0] == 198 && (o[1] == 18 || o[1] == 19) {
                Some("benchmarking")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() || v6.is_multicast() {
                Some("non-routable")
            } else if (s[0] & 0xfe00) == 0xfc00 {
                Some("private (unique local)")
            } else if (s[0] & 0xffc0) == 0xfe80 {
                Some("link-local")
            } else {
                None
            }
        }
    }
}

/// The client's resolver: the policy applies to every address it hands to the connector.
struct PolicyResolver {
    policy: Arc<NetPolicy>,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| policy.refuse(a.ip()).is_none())
                .collect();
            if allowed.is_empty() {
                return Err(
                    format!("{} resolves only to internal addresses", name.as_str()).into(),
                );
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The shared client

/// One client for every plugin and tenant: connections to a tenant's CRM instance are pooled
/// and reused across invocations.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    policy: Arc<NetPolicy>,
}

impl HttpClient {
    pub fn new(policy: NetPolicy) -> anyhow::Result<Self> {
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(PolicyResolver {
                policy: policy.clone(),
            }))
            // Redirects would let an allowed host bounce a plugin to a forbidden one.
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(90))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("pbx-plugin-host/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(HttpClient { client, policy })
    }

    pub fn policy(&self) -> &NetPolicy {
        &self.policy
    }

    /// The client itself (shared connection pool).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

// ---------------------------------------------------------------------------------------------
// The capability

impl Invocation {
    /// Check the URL against the grants; the reason when refused.
    fn http_check(&self, url: &Url) -> Result<(), String> {
        let config = &self.scope.config;
        for template in &self.scope.grants.http {
            if let Some(Ok(p)) = UrlPattern::expand(template, config)
                && p.matches(url)
            {
                return Ok(());
            }
        }
        Err(format!(
            "{}://{}{} is not granted to plugin '{}' (plugins.toml grants.http)",
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.port().map(|p| format!(":{p}")).unwrap_or_default(),
            self.scope.plugin_id
        ))
    }

    async fn address_check(policy: Arc<NetPolicy>, url: &Url) -> Result<(), String> {
        let host = url.host_str().unwrap_or("");
        let port = url.port_or_known_default().unwrap_or(443);
        let ips: Vec<IpAddr> = match url.host() {
            Some(url::Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
            Some(url::Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
            _ => match tokio::net::lookup_host((host, port)).await {
                Ok(addrs) => addrs.map(|a| a.ip()).collect(),
                // Resolution failures surface as connect errors from the client itself.
                Err(_) => return Ok(()),
            },
        };
        for ip in ips {
            if let Some(kind) = policy.refuse(ip) {
                return Err(format!(
                    "{host} is a {kind} address ({ip}); the operator has not allowed it"
                ));
            }
        }
        Ok(())
    }

    fn deny_http(&mut self, why: String) -> HttpError {
        self.meter.http_denied += 1;
        self.record_denial("http", &why);
        HttpError::Denied(why)
    }

    async fn send_checked(&mut self, req: Request) -> Result<Response, HttpError> {
        let limits = self.scope.limits.clone();
        let url =
            Url::parse(&req.url).map_err(|e| HttpError::InvalidRequest(format!("bad URL: {e}")))?;
        if let Err(why) = self.http_check(&url) {
            return Err(self.deny_http(why));
        }
        let policy = self.scope.services.http.policy.clone();
        if let Err(why) = Self::address_check(policy, &url).await {
            return Err(self.deny_http(why));
        }
        if self.meter.http_requests >= limits.http_requests {
            self.log_line(
                "warn",
                format!(
                    "http: request limit of {} per invocation reached",
                    limits.http_requests
                ),
            );
            return Err(HttpError::TooLarge(u64::from(limits.http_requests)));
        }
        let body_len = req.body.as_ref().map_or(0, |b| b.len() as u64);
        if body_len > limits.http_request_bytes {
            self.log_line(
                "warn",
                format!(
                    "http: request body of {body_len} bytes is over the limit of {}",
                    limits.http_request_bytes
                ),
            );
            return Err(HttpError::TooLarge(limits.http_request_bytes));
        }
        let method = match req.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
            Method::Head => reqwest::Method::HEAD,
        };
        let mut builder = self.scope.services.http.client.request(method, url.clone());
        for (name, value) in &req.headers {
            let Ok(name) = reqwest::header::HeaderName::from_bytes(name.as_bytes()) else {
                return Err(HttpError::InvalidRequest(format!(
                    "bad header name '{name}'"
                )));
            };
            if name == reqwest::header::HOST || name == reqwest::header::CONTENT_LENGTH {
                continue;
            }
            let Ok(value) = reqwest::header::HeaderValue::from_str(value) else {
                return Err(HttpError::InvalidRequest(format!(
                    "bad value for header '{name}'"
                )));
            };
            builder = builder.header(name, value);
        }
        if let Some(body) = req.body {
            builder = builder.body(body);
        }
        let wanted = req
            .timeout_ms
            .map_or(Duration::MAX, |ms| Duration::from_millis(u64::from(ms)));
        let timeout = wanted.min(self.remaining());
        self.meter.http_requests += 1;
        self.meter.http_bytes_out += body_len;
        let max_in = limits.http_response_bytes;
        let exchange = async {
            let mut resp = builder.send().await.map_err(connect_error)?;
            if resp.content_length().is_some_and(|n| n > max_in) {
                return Err(HttpError::TooLarge(max_in));
            }
            let status = resp.status().as_u16();
            let headers: Vec<(String, String)> = resp
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let mut body = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| HttpError::Connect(describe(e)))?
            {
                if body.len() as u64 + chunk.len() as u64 > max_in {
                    return Err(HttpError::TooLarge(max_in));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Response {
                status,
                headers,
                body,
            })
        };
        let result = match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout),
        };
        match &result {
            Ok(resp) => {
                self.meter.http_bytes_in += resp.body.len() as u64;
                if let Some(usage) = crm_api_usage(&resp.headers) {
                    self.meter.crm_api_usage = Some(usage);
                }
            }
            Err(HttpError::TooLarge(n)) => self.log_line(
                "warn",
                format!(
                    "http: response from {} is over the limit of {n} bytes",
                    url.host_str().unwrap_or("")
                ),
            ),
            Err(HttpError::Timeout) => self.log_line(
                "warn",
                format!(
                    "http: {} did not answer within {} ms",
                    url.host_str().unwrap_or(""),
                    timeout.as_millis()
                ),
            ),
            Err(e) => self.log_line(
                "warn",
                format!("http: {} failed: {e:?}", url.host_str().unwrap_or("")),
            ),
        }
        result
    }
}

/// reqwest's error text without the URL's query (which may hold data the plugin sent).
/// How a `connect` error whose request never left begins (the connection could not be made).
/// The guest library tells from it that a create cannot have happened (a retry needs neither
/// a wait nor a look-up); any other `connect` error may have reached the server.
pub const NOT_SENT_PREFIX: &str = "request not sent: ";

/// A failed `send`: whether the request left decides how a plugin may retry a write.
fn connect_error(e: reqwest::Error) -> HttpError {
    if e.is_connect() {
        HttpError::Connect(format!("{NOT_SENT_PREFIX}{}", describe(e)))
    } else {
        HttpError::Connect(describe(e))
    }
}

fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut s = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// `Sforce-Limit-Info: api-usage=18/5000` (the CRM's own usage figure, shown to the admin).
fn crm_api_usage(headers: &[(String, String)]) -> Option<(u64, u64)> {
    let (_, v) = headers.iter().find(|(k, _)| k == "sforce-limit-info")?;
    let usage = v
        .split(';')
        .find_map(|part| part.trim().strip_prefix("api-usage="))?;
    let (used, max) = usage.split_once('/')?;
    Some((used.trim().parse().ok()?, max.trim().parse().ok()?))
}

impl Host for Invocation {
    async fn send(&mut self, req: Request) -> wasmtime::Result<Result<Response, HttpError>> {
        let started = Instant::now();
        // What the plugin wrote to its state before this request is durable before the
        // request can have an effect (the effectively-once markers depend on it).
        if let Err(e) = self.flush_state() {
            return Err(wasmtime::Error::msg(format!(
                "the plugin's state could not be saved before its HTTP request: {e}"
            )));
        }
        let result = self.send_checked(req).await;
        tracing::trace!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "plugin http request"
        );
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn patterns_match_host_port_and_path_prefix() {
        let p = UrlPattern::parse("https://*.salesforce.com").unwrap();
        assert!(p.matches(&url("https://acme.my.salesforce.com/services/data")));
        assert!(
            !p.matches(&url("https://salesforce.com/")),
            "the bare domain is not a subdomain"
        );
        assert!(!p.matches(&url("https://evilsalesforce.com/")));
        assert!(!p.matches(&url("http://acme.salesforce.com/")), "scheme");
        assert!(
            !p.matches(&url("https://acme.salesforce.com:8443/")),
            "port"
        );
        let p = UrlPattern::parse("http://127.0.0.1:18089/services/*").unwrap();
        assert!(p.matches(&url("http://127.0.0.1:18089/services/data/v59.0/query")));
        assert!(p.matches(&url("http://127.0.0.1:18089/services")));
        assert!(!p.matches(&url("http://127.0.0.1:18089/servicesX")));
        assert!(!p.matches(&url("http://127.0.0.1:18090/services/")));
        // IPv6 literals, with and without a port (a bare "[::1]" once parsed as host ":"
        // port 1, so the grant silently matched nothing).
        let p = UrlPattern::parse("http://[::1]").unwrap();
        assert!(p.matches(&url("http://[::1]/")));
        assert!(!p.matches(&url("http://[::1]:1/")));
        let p = UrlPattern::parse("http://[::1]:8080/x").unwrap();
        assert!(p.matches(&url("http://[::1]:8080/x/y")));
        assert!(UrlPattern::parse("http://[::1").is_err());
        assert!(UrlPattern::parse("http://[::1]x").is_err());
    }

    #[test]
    fn templates_expand_tenant_settings() {
        let cfg = serde_json::json!({"login_url": "http://127.0.0.1:4000/"});
        let p = UrlPattern::expand("{config.login_url}", &cfg)
            .unwrap()
            .unwrap();
        assert!(p.matches(&url("http://127.0.0.1:4000/services/oauth2/token")));
        assert!(
            UrlPattern::expand("{config.instance_url}", &cfg).is_none(),
            "unset setting grants nothing"
        );
        assert!(UrlPattern::parse_template("{config.login_url}/services").is_ok());
        assert!(UrlPattern::parse_template("{config.}").is_err());
        assert!(UrlPattern::parse_template("ftp://x.example.com").is_err());
        assert!(UrlPattern::parse_template("https://*.com").is_err());
        assert!(UrlPattern::parse_template("https://a.*.com").is_err());
    }

    #[test]
    fn internal_addresses_are_refused_unless_allowed() {
        let p = NetPolicy::default();
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
            "100.64.0.1",
        ] {
            assert!(p.refuse(ip.parse().unwrap()).is_some(), "{ip}");
        }
        assert!(p.refuse("13.110.0.1".parse().unwrap()).is_none());
        let p = NetPolicy {
            allowed_internal: vec!["127.0.0.0/8".parse().unwrap()],
        };
        assert!(p.refuse("127.0.0.1".parse().unwrap()).is_none());
        assert!(p.refuse("169.254.169.254".parse().unwrap()).is_some());
    }

    #[test]
    fn reads_crm_usage_header() {
        let h = vec![(
            "sforce-limit-info".to_string(),
            "api-usage=18/5000; per-app-api-usage=1/2(appName=x)".to_string(),
        )];
        assert_eq!(crm_api_usage(&h), Some((18, 5000)));
    }
}
