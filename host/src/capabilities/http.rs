//! The `http` capability: buffered outgoing HTTP through one shared client.
//!
//! Three checks stand between a plugin and the network, in this order:
//! 1. the URL must match one of the plugin's granted patterns, after `{config.KEY}` in a
//!    pattern is replaced by the tenant's setting (how a tenant's own Salesforce login host,
//!    My Domain or instance URL is allowed without a test-only bypass); a setting fills one
//!    host label or path segment, never the scheme, host or port (see `Slot`);
//! 2. the name must resolve, and no address it resolves to may be loopback, private,
//!    link-local (cloud metadata) or otherwise internal unless the operator allows that
//!    network in `[host]`, nor special-purpose (documentation, reserved, ...) or one of this
//!    machine's own addresses whatever the operator allows (see [`NetPolicy::refuse`]);
//! 3. the request must fit the invocation's limits (count, bytes out, bytes in, time).
//!
//! The address check runs again inside the client's resolver, on the addresses it actually
//! connects to, so a name that resolves differently the second time gains nothing. No proxy is
//! ever taken from the environment. Both checks judge the address *and port*: the host's own
//! listen sockets (its API) are refused whatever the operator opened, and the operator may open
//! one internal endpoint (`[host] allow_private_endpoints`) rather than a whole network (see
//! [`Egress`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
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

/// Where a `{config.KEY}` placeholder sits in a grant template: that decides what the tenant's
/// value may be. A tenant setting fills one host label or one path segment, never the scheme,
/// the host as a whole or the port; only a template that *begins* with a placeholder takes a
/// whole origin from the tenant (the tenant's own login host), and the address policy still
/// applies to wherever that points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// `{config.login_url}` (`whole`) or `{config.login_url}/services`: an http(s) origin, with
    /// a path only when the placeholder is the whole template.
    Origin { whole: bool },
    /// `https://{config.sub}.my.salesforce.com`: one label, `[A-Za-z0-9-]{1,63}`.
    HostLabel,
    /// `https://api.example.com/t/{config.tenant_id}`: one segment, `[A-Za-z0-9._~-]`, not `.`/`..`.
    PathSegment,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part<'a> {
    Lit(&'a str),
    Key(&'a str, Slot),
}

/// Split a template into literals and placeholders, each placeholder with its position.
fn plan(template: &str) -> Result<Vec<Part<'_>>, String> {
    enum Tok<'a> {
        Lit(&'a str),
        Key(&'a str),
    }
    let only = || format!("'{template}': the only placeholder is {{config.KEY}}");
    let mut toks = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let lit = &rest[..start];
        if lit.contains('}') {
            return Err(only());
        }
        if !lit.is_empty() {
            toks.push(Tok::Lit(lit));
        }
        let Some(body) = rest[start..].strip_prefix("{config.") else {
            return Err(only());
        };
        let Some(len) = body.find('}') else {
            return Err(format!("unclosed placeholder in '{template}'"));
        };
        let key = &body[..len];
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(format!(
                "bad placeholder '{{config.{key}}}' in '{template}'"
            ));
        }
        toks.push(Tok::Key(key));
        rest = &body[len + 1..];
    }
    if rest.contains('}') {
        return Err(only());
    }
    if !rest.is_empty() {
        toks.push(Tok::Lit(rest));
    }

    #[derive(PartialEq)]
    enum At {
        Scheme,
        Host,
        Port,
        Path,
    }
    let mut at = At::Scheme;
    let mut in_brackets = false;
    let mut parts = Vec::with_capacity(toks.len());
    for (i, tok) in toks.iter().enumerate() {
        match *tok {
            Tok::Key(key) => {
                let slot = if i == 0 {
                    let whole = toks.len() == 1;
                    if !whole && !matches!(toks.get(1), Some(Tok::Lit(l)) if l.starts_with('/')) {
                        return Err(format!(
                            "'{template}': a placeholder at the start must be the whole URL or be followed by a path ('/...')"
                        ));
                    }
                    at = At::Path;
                    Slot::Origin { whole }
                } else {
                    match at {
                        At::Scheme => {
                            return Err(format!(
                                "'{template}': a placeholder cannot fill the scheme"
                            ));
                        }
                        At::Host if in_brackets => {
                            return Err(format!(
                                "'{template}': a placeholder cannot fill an IP address"
                            ));
                        }
                        At::Host => Slot::HostLabel,
                        At::Port => {
                            return Err(format!(
                                "'{template}': a placeholder cannot fill the port"
                            ));
                        }
                        At::Path => Slot::PathSegment,
                    }
                };
                parts.push(Part::Key(key, slot));
            }
            Tok::Lit(lit) => {
                let mut s = lit;
                if at == At::Scheme {
                    // The scheme holds no placeholder, so "://" is inside this literal.
                    if let Some((_, after)) = s.split_once("://") {
                        at = At::Host;
                        s = after;
                    }
                }
                for c in s.chars() {
                    match (&at, c) {
                        (At::Host | At::Port, '/' | '?' | '#') => at = At::Path,
                        (At::Host, '[') => in_brackets = true,
                        (At::Host, ']') => in_brackets = false,
                        (At::Host, ':') if !in_brackets => at = At::Port,
                        _ => {}
                    }
                }
                parts.push(Part::Lit(lit));
            }
        }
    }
    Ok(parts)
}

/// The text a tenant's `value` puts into the position `slot`, or why it may not.
fn fill(key: &str, slot: Slot, value: &str) -> Result<String, String> {
    let shown: String = value.chars().take(80).collect();
    let bad = |why: &str| format!("tenant setting '{key}' = {shown:?} {why}");
    match slot {
        Slot::HostLabel => {
            if (1..=63).contains(&value.len())
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                Ok(value.to_ascii_lowercase())
            } else {
                Err(bad(
                    "is not a single host label (letters, digits and '-', at most 63)",
                ))
            }
        }
        Slot::PathSegment => {
            if (1..=255).contains(&value.len())
                && value != "."
                && value != ".."
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
            {
                Ok(value.to_string())
            } else {
                Err(bad(
                    "is not a single path segment (letters, digits and - . _ ~)",
                ))
            }
        }
        Slot::Origin { whole } => origin_value(value, whole).map_err(|why| bad(&why)),
    }
}

/// A tenant's own origin (`https://acme.my.salesforce.com`), re-serialised from the parsed URL
/// so that what is granted is exactly what the URL parser sees.
fn origin_value(value: &str, whole: bool) -> Result<String, String> {
    if value.contains('*') {
        return Err("may not contain '*' (a tenant setting names one host)".into());
    }
    let u = Url::parse(value).map_err(|e| format!("is not a URL ({e})"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err("is not an http or https URL".into());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("may not carry user info".into());
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err("may not carry a query or fragment".into());
    }
    let Some(host) = u.host_str() else {
        return Err("has no host".into());
    };
    let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
    let path = u.path().trim_end_matches('/');
    if !whole && !path.is_empty() {
        return Err("must be scheme://host[:port] here (the grant adds the path)".into());
    }
    Ok(format!("{}://{host}{port}{path}", u.scheme()))
}

impl UrlPattern {
    /// Check a pattern as written in plugins.toml (placeholders allowed, each only where a
    /// tenant value may go: see `Slot`).
    pub fn parse_template(template: &str) -> Result<(), String> {
        let mut probe = String::with_capacity(template.len() + 32);
        for part in plan(template)? {
            match part {
                Part::Lit(l) => probe.push_str(l),
                Part::Key(_, Slot::Origin { .. }) => probe.push_str("https://placeholder.invalid"),
                Part::Key(_, Slot::HostLabel | Slot::PathSegment) => probe.push_str("placeholder"),
            }
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
        if authority.contains('@') {
            return Err(format!(
                "'{pattern}': a grant names a host, not user info ('@')"
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
    /// (the pattern then grants nothing), an error if a value does not fit its position.
    pub fn expand(
        template: &str,
        config: &serde_json::Value,
    ) -> Option<Result<UrlPattern, String>> {
        let parts = match plan(template) {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        let mut out = String::with_capacity(template.len() + 32);
        for part in parts {
            match part {
                Part::Lit(l) => out.push_str(l),
                Part::Key(key, slot) => {
                    let value = config.get(key)?.as_str()?;
                    match fill(key, slot, value) {
                        Ok(v) => out.push_str(&v),
                        Err(e) => return Some(Err(e)),
                    }
                }
            }
        }
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
    /// Internal networks the operator opened anyway (loopback, private, link-local, CGNAT,
    /// unique-local). Special-purpose ranges that are never globally reachable (documentation,
    /// benchmarking, reserved, multicast, ...) and this machine's own addresses stay refused
    /// whatever is listed here; see [`NetPolicy::refuse`].
    pub allowed_internal: Vec<IpNet>,
}

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// An internal network the operator may open in `[host] allow_private_networks`.
    Internal(&'static str),
    /// A special-purpose range that is not globally reachable: never allowed.
    Special(&'static str),
    /// One of this machine's own interface addresses: never allowed (except loopback the
    /// operator opened).
    OwnAddress,
    /// One of this host's own listen sockets (its API, or another listener registered with
    /// [`HttpClient::protect_listen_socket`]): never allowed, whatever the operator opened.
    ListenSocket(SocketAddr),
}

impl Refusal {
    /// The denial text a plugin and the tenant's log see.
    pub fn explain(&self, host: &str, ip: IpAddr) -> String {
        match self {
            Refusal::Internal(kind) => {
                format!("{host} is a {kind} address ({ip}); the operator has not allowed it")
            }
            Refusal::Special(kind) => {
                format!("{host} is a {kind} address ({ip}), which is never allowed")
            }
            Refusal::OwnAddress => {
                format!("{host} is one of this host's own addresses ({ip}), which is never allowed")
            }
            Refusal::ListenSocket(addr) => format!(
                "{host} ({addr}) is one of this host's own listen sockets (its API), which a plugin may never reach"
            ),
        }
    }

    /// The kind of address, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Internal(k) | Refusal::Special(k) => k,
            Refusal::OwnAddress => "this host's own",
            Refusal::ListenSocket(_) => "this host's own listen socket",
        }
    }
}

impl NetPolicy {
    /// Why `ip` is refused, if it is.
    ///
    /// Order: an address that embeds an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64
    /// `64:ff9b::/96`, 6to4 `2002::/16`) is judged as that IPv4 address; a special-purpose
    /// range is refused (internal ones unless the operator allowed them); then any of this
    /// machine's own interface addresses is refused even inside an allowed network. The one
    /// exception is a loopback address inside a network the operator allowed (the tests and
    /// the demo reach the local Salesforce stand-in on 127.0.0.1 that way): loopback is the
    /// machine itself by definition, so allowing it is already an explicit decision to let
    /// plugins reach this host.
    pub fn refuse(&self, ip: IpAddr) -> Option<Refusal> {
        self.refuse_among(ip, host_addresses())
    }

    fn refuse_among(&self, ip: IpAddr, own: &[IpAddr]) -> Option<Refusal> {
        let ip = canonical(ip);
        let allowed = self.allowed_internal.iter().any(|n| n.contains(&ip));
        match special_kind(ip) {
            Some(Refusal::Internal(_)) if allowed => {}
            Some(refusal) => return Some(refusal),
            None => {}
        }
        if own.iter().any(|o| canonical(*o) == ip) && !(ip.is_loopback() && allowed) {
            return Some(Refusal::OwnAddress);
        }
        None
    }
}

/// The address policy of one host, judged on address *and port*: the operator's
/// [`NetPolicy`], the single internal endpoints the operator opened
/// (`[host] allow_private_endpoints`, e.g. the demo's stand-in on 127.0.0.1:18089, instead of
/// all of 127.0.0.0/8), and the host's own listen sockets, which no plugin may reach whatever
/// the operator opened (with an allowed loopback network and a tenant's `{config.login_url}`
/// pointing at the admin API, a plugin could otherwise drive that API).
#[derive(Debug, Default)]
pub struct Egress {
    policy: NetPolicy,
    endpoints: Vec<SocketAddr>,
    listeners: std::sync::RwLock<Vec<SocketAddr>>,
}

impl Egress {
    pub fn new(policy: NetPolicy, endpoints: Vec<SocketAddr>) -> Self {
        Egress {
            policy,
            endpoints,
            listeners: Default::default(),
        }
    }

    /// Refuse `addr` from now on (a listener of this host; `0.0.0.0`/`::` stand for every
    /// address of this machine on that port).
    pub fn add_listener(&self, addr: SocketAddr) {
        let mut l = self.listeners.write().unwrap_or_else(|p| p.into_inner());
        if !l.contains(&addr) {
            l.push(addr);
        }
    }

    /// The listen sockets refused so far.
    pub fn listeners(&self) -> Vec<SocketAddr> {
        self.listeners
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Why `ip` at `port` is refused, if it is. `port` is `None` where it is not known (the
    /// resolver outside a request): then an address a listener uses is refused at any port and
    /// no endpoint opens anything (fail closed).
    pub fn refuse(&self, ip: IpAddr, port: Option<u16>) -> Option<Refusal> {
        self.refuse_among(ip, port, host_addresses())
    }

    fn refuse_among(&self, ip: IpAddr, port: Option<u16>, own: &[IpAddr]) -> Option<Refusal> {
        let ip = canonical(ip);
        let is_own = |ip: IpAddr| own.iter().any(|o| canonical(*o) == ip);
        for l in self
            .listeners
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let at = canonical(l.ip());
            // A wildcard listener answers on every address of this machine, all of
            // 127.0.0.0/8 included.
            let same_address = if at.is_unspecified() {
                ip.is_loopback() || is_own(ip)
            } else {
                at == ip
            };
            if same_address && port.is_none_or(|p| p == l.port()) {
                return Some(Refusal::ListenSocket(SocketAddr::new(
                    ip,
                    port.unwrap_or(l.port()),
                )));
            }
        }
        let endpoint = port.is_some_and(|p| {
            self.endpoints
                .iter()
                .any(|e| canonical(e.ip()) == ip && e.port() == p)
        });
        if endpoint {
            // An opened endpoint opens an internal address, never a special-purpose one, and
            // of this machine's own addresses only loopback (as an opened network does).
            return match special_kind(ip) {
                Some(special @ Refusal::Special(_)) => Some(special),
                _ if is_own(ip) && !ip.is_loopback() => Some(Refusal::OwnAddress),
                _ => None,
            };
        }
        self.policy.refuse_among(ip, own)
    }
}

tokio::task_local! {
    /// The port of the plugin request being sent. reqwest asks its resolver for a name only;
    /// the resolver reads the port here (it is called while the request's future is polled),
    /// so that it can judge address and port as the check before the request did.
    static REQUEST_PORT: u16;
}

/// An IPv6 address that stands for an IPv4 one, as that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else {
        return ip;
    };
    let s = v6.segments();
    let o = v6.octets();
    let v4 = |at: usize| IpAddr::V4(Ipv4Addr::new(o[at], o[at + 1], o[at + 2], o[at + 3]));
    if let Some(mapped) = v6.to_ipv4_mapped() {
        // ::ffff:a.b.c.d: a dual-stack socket connects to a.b.c.d.
        IpAddr::V4(mapped)
    } else if s[..6] == [0; 6] && !(s[6] == 0 && s[7] <= 1) {
        // ::a.b.c.d, IPv4-compatible (deprecated); not :: or ::1.
        v4(12)
    } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // 64:ff9b::/96, NAT64: the gateway connects to the embedded address.
        v4(12)
    } else if s[0] == 0x2002 {
        // 2002:aabb:ccdd::/48, 6to4: the relay tunnels to the embedded address.
        v4(2)
    } else {
        ip
    }
}

/// The IANA special-purpose ranges that are not globally reachable (RFC 6890 registries).
fn special_kind(ip: IpAddr) -> Option<Refusal> {
    use Refusal::{Internal, Special};
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if o[0] == 0 {
                Some(Special("this-network (0.0.0.0/8)"))
            } else if v4.is_loopback() {
                Some(Internal("loopback"))
            } else if v4.is_private() {
                Some(Internal("private"))
            } else if v4.is_link_local() {
                Some(Internal("link-local (cloud metadata)"))
            } else if o[0] == 100 && (o[1] & 0xC0) == 64 {
                Some(Internal("carrier-grade NAT"))
            } else if o[..3] == [192, 0, 0] {
                // 192.0.0.9 and .10 are globally reachable anycast; refused with the rest.
                Some(Special("IETF protocol assignment (192.0.0.0/24)"))
            } else if o[..3] == [192, 0, 2] || o[..3] == [198, 51, 100] || o[..3] == [203, 0, 113] {
                Some(Special("documentation"))
            } else if o[..3] == [192, 88, 99] {
                Some(Special("6to4 relay anycast (deprecated)"))
            } else if o[0] == 198 && (o[1] == 18 || o[1] == 19) {
                Some(Special("benchmarking"))
            } else if v4.is_multicast() {
                Some(Special("multicast"))
            } else if v4.is_broadcast() {
                Some(Special("broadcast"))
            } else if o[0] >= 240 {
                Some(Special("reserved (240.0.0.0/4)"))
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if v6.is_unspecified() {
                Some(Special("unspecified"))
            } else if v6.is_loopback() {
                Some(Internal("loopback"))
            } else if (s[0] & 0xfe00) == 0xfc00 {
                Some(Internal("private (unique local)"))
            } else if (s[0] & 0xffc0) == 0xfe80 {
                Some(Internal("link-local"))
            } else if (s[0] & 0xffc0) == 0xfec0 {
                Some(Internal("site-local (deprecated)"))
            } else if (s[0] & 0xff00) == 0xff00 {
                Some(Special("multicast"))
            } else if s[..4] == [0x100, 0, 0, 0] {
                Some(Special("discard-only (100::/64)"))
            } else if s[..3] == [0x64, 0xff9b, 1] {
                Some(Special("local-use NAT64 (64:ff9b:1::/48)"))
            } else if s[0] == 0x2001 && s[1] < 0x200 {
                // A few sub-ranges (TEREDO's relays, AMT, ...) are globally reachable; the
                // whole /23 is refused, which costs a plugin nothing it needs.
                Some(Special("IETF protocol assignment (2001::/23)"))
            } else if (s[0] == 0x2001 && s[1] == 0xdb8) || (s[0] == 0x3fff && s[1] < 0x1000) {
                // 2001:db8::/32 and 3fff::/20
                Some(Special("documentation"))
            } else if (s[0] & 0xe000) != 0x2000 {
                // Everything outside 2000::/3 (global unicast) is reserved or special-purpose
                // (::/96 and ::ffff:0:0/96 were judged as IPv4 above).
                Some(Special("reserved (outside 2000::/3)"))
            } else {
                None
            }
        }
    }
}

/// This machine's interface addresses, collected once (at the first client's construction,
/// i.e. at start). An address added to an interface later is not known; loopback is always
/// listed.
fn host_addresses() -> &'static [IpAddr] {
    static ADDRESSES: OnceLock<Vec<IpAddr>> = OnceLock::new();
    ADDRESSES.get_or_init(|| {
        let mut addrs = interface_addresses();
        for lo in [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ] {
            if !addrs.contains(&lo) {
                addrs.push(lo);
            }
        }
        addrs
    })
}

/// `getifaddrs(3)`: every IPv4 and IPv6 address on any interface (up or down).
fn interface_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "could not list this host's interface addresses; only loopback is refused as the host's own"
        );
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        let sa = ifa.ifa_addr;
        if !sa.is_null() {
            // SAFETY: a non-null ifa_addr points to a sockaddr whose family tells its type.
            match i32::from(unsafe { (*sa).sa_family }) {
                libc::AF_INET => {
                    // SAFETY: family AF_INET: the sockaddr is a sockaddr_in.
                    let sin = unsafe { &*(sa as *const libc::sockaddr_in) };
                    out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                        sin.sin_addr.s_addr,
                    ))));
                }
                libc::AF_INET6 => {
                    // SAFETY: family AF_INET6: the sockaddr is a sockaddr_in6.
                    let sin6 = unsafe { &*(sa as *const libc::sockaddr_in6) };
                    out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
                }
                _ => {}
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// The client's resolver: the policy applies to every address it hands to the connector.
struct PolicyResolver {
    egress: Arc<Egress>,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let egress = self.egress.clone();
        // Read now: this runs while the request's future is polled (see REQUEST_PORT).
        let port = REQUEST_PORT.try_with(|p| *p).ok();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| egress.refuse(a.ip(), port).is_none())
                .collect();
            if allowed.is_empty() {
                return Err(format!(
                    "{} resolves to no address a plugin may reach",
                    name.as_str()
                )
                .into());
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
    egress: Arc<Egress>,
}

/// The client's settings, apart from the resolver.
fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        // Never a proxy from HTTP(S)_PROXY / ALL_PROXY: a proxy resolves names itself, so the
        // address policy would judge nothing (and an unresolvable name would reach it).
        .no_proxy()
        // Redirects would let an allowed host bounce a plugin to a forbidden one.
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(90))
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("pbx-plugin-host/", env!("CARGO_PKG_VERSION")))
}

impl HttpClient {
    pub fn new(policy: NetPolicy) -> anyhow::Result<Self> {
        Self::with_endpoints(policy, Vec::new())
    }

    /// A client whose plugins may also reach each of `endpoints` (an internal address and
    /// port the operator opened, `[host] allow_private_endpoints`).
    pub fn with_endpoints(policy: NetPolicy, endpoints: Vec<SocketAddr>) -> anyhow::Result<Self> {
        // The host's own addresses are collected now, at start.
        let _ = host_addresses();
        let egress = Arc::new(Egress::new(policy, endpoints));
        let client = client_builder()
            .dns_resolver(Arc::new(PolicyResolver {
                egress: egress.clone(),
            }))
            .build()?;
        Ok(HttpClient { client, egress })
    }

    pub fn policy(&self) -> &NetPolicy {
        &self.egress.policy
    }

    /// The whole address policy, listen sockets included.
    pub fn egress(&self) -> &Egress {
        &self.egress
    }

    /// Never let a plugin reach `addr`, one of this host's listen sockets (the API binds it;
    /// an embedding PBX registers its own listeners here too), whatever the operator allows.
    pub fn protect_listen_socket(&self, addr: SocketAddr) {
        self.egress.add_listener(addr);
        tracing::debug!(%addr, "listen socket refused to plugins");
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
        // A tenant value that does not fit its place in a grant makes that grant grant nothing;
        // the denial says why, for the tenant admin.
        let mut unusable = String::new();
        for template in &self.scope.grants.http {
            match UrlPattern::expand(template, config) {
                Some(Ok(p)) if p.matches(url) => return Ok(()),
                Some(Err(why)) => {
                    unusable.push_str(&format!("; grant '{template}' grants nothing: {why}"))
                }
                _ => {}
            }
        }
        Err(format!(
            "{}://{}{} is not granted to plugin '{}' (plugins.toml grants.http){unusable}",
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.port().map(|p| format!(":{p}")).unwrap_or_default(),
            self.scope.plugin_id
        ))
    }

    async fn address_check(egress: Arc<Egress>, url: &Url) -> Result<(), String> {
        let host = url.host_str().unwrap_or("");
        let port = url.port_or_known_default().unwrap_or(443);
        let ips: Vec<IpAddr> = match url.host() {
            Some(url::Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
            Some(url::Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
            _ => match tokio::net::lookup_host((host, port)).await {
                Ok(addrs) => addrs.map(|a| a.ip()).collect(),
                // A name the host cannot resolve cannot be checked: refused (with no proxy it
                // could not be reached anyway, and no proxy may resolve it for the plugin).
                Err(e) => {
                    return Err(format!(
                        "{host} could not be resolved ({e}); a name whose address cannot be checked is refused"
                    ));
                }
            },
        };
        if ips.is_empty() {
            return Err(format!(
                "{host} resolves to no address; a name whose address cannot be checked is refused"
            ));
        }
        for ip in ips {
            if let Some(refusal) = egress.refuse(ip, Some(port)) {
                return Err(refusal.explain(host, ip));
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
        let egress = self.scope.services.http.egress.clone();
        if let Err(why) = Self::address_check(egress, &url).await {
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
        let port = url.port_or_known_default().unwrap_or(443);
        let exchange = async {
            let mut resp = REQUEST_PORT
                .scope(port, builder.send())
                .await
                .map_err(connect_error)?;
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

    /// Answers every connection to `listener` with `200 ok`.
    async fn answer_ok(listener: tokio::net::TcpListener) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await;
        }
    }

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

    fn refused(p: &NetPolicy, own: &[IpAddr], ip: &str) -> Option<Refusal> {
        p.refuse_among(ip.parse().unwrap(), own)
    }

    #[test]
    fn special_purpose_ranges_are_refused_and_stay_refused_when_the_operator_opens_everything() {
        let none = NetPolicy::default();
        let all = NetPolicy {
            allowed_internal: vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()],
        };
        // One address per range that is never globally reachable: refused by default and
        // still refused when the operator lists every network.
        for ip in [
            "0.1.2.3",            // 0.0.0.0/8
            "192.0.0.8",          // 192.0.0.0/24
            "192.0.2.10",         // documentation
            "198.51.100.7",       // documentation
            "203.0.113.9",        // documentation
            "198.18.0.1",         // benchmarking
            "198.19.255.254",     // benchmarking
            "192.88.99.1",        // 6to4 relay anycast
            "240.0.0.1",          // reserved
            "255.255.255.255",    // broadcast
            "224.0.0.1",          // multicast
            "239.255.255.250",    // multicast
            "::",                 // unspecified
            "ff02::1",            // multicast
            "100::1",             // discard-only
            "2001::1",            // 2001::/23 (TEREDO)
            "2001:1ff::1",        // 2001::/23
            "2001:db8::1",        // documentation
            "3fff::1",            // documentation
            "64:ff9b:1::1",       // local-use NAT64
            "5f00::1",            // outside 2000::/3
            "::ffff:192.0.2.1",   // IPv4-mapped documentation
            "::198.51.100.1",     // IPv4-compatible documentation
            "64:ff9b::c000:201",  // NAT64 of 192.0.2.1
            "2002:c000:0201::1",  // 6to4 of 192.0.2.1
            "64:ff9b::ffff:ffff", // NAT64 of the broadcast address
        ] {
            assert!(
                matches!(refused(&none, &[], ip), Some(Refusal::Special(_))),
                "{ip}: {:?}",
                refused(&none, &[], ip)
            );
            assert!(
                matches!(refused(&all, &[], ip), Some(Refusal::Special(_))),
                "{ip} stays refused when the operator opens every network"
            );
        }
        // Internal ranges: refused by default, opened by the operator.
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "fec0::1",
            "::ffff:10.0.0.1",
            "::10.0.0.1",        // IPv4-compatible
            "64:ff9b::a00:1",    // NAT64 of 10.0.0.1
            "64:ff9b::7f00:1",   // NAT64 of 127.0.0.1
            "2002:7f00:0001::1", // 6to4 of 127.0.0.1
            "2002:a9fe:a9fe::1", // 6to4 of 169.254.169.254
        ] {
            assert!(
                matches!(refused(&none, &[], ip), Some(Refusal::Internal(_))),
                "{ip}: {:?}",
                refused(&none, &[], ip)
            );
            assert_eq!(refused(&all, &[], ip), None, "{ip} opened by the operator");
        }
        // Public addresses pass, also when written as NAT64, 6to4, mapped or compatible.
        for ip in [
            "13.110.0.1",
            "8.8.8.8",
            "1.1.1.1",
            "192.0.3.1",
            "198.20.0.1",
            "223.255.255.1",
            "2a00:1450:4001:800::200e",
            "2606:4700::1111",
            "2001:200::1",
            "::ffff:13.110.0.1",
            "64:ff9b::d6e:1",
            "2002:0d6e:0001::1",
        ] {
            assert_eq!(refused(&none, &[], ip), None, "{ip}");
        }
    }

    #[test]
    fn own_interface_addresses_are_refused_even_in_allowed_networks() {
        let own: Vec<IpAddr> = ["127.0.0.1", "::1", "10.0.0.5", "fd00::2", "13.110.0.9"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let p = NetPolicy {
            allowed_internal: vec![
                "127.0.0.0/8".parse().unwrap(),
                "::1/128".parse().unwrap(),
                "10.0.0.0/8".parse().unwrap(),
                "fd00::/8".parse().unwrap(),
            ],
        };
        assert_eq!(refused(&p, &own, "10.0.0.5"), Some(Refusal::OwnAddress));
        assert_eq!(
            refused(&p, &own, "::ffff:10.0.0.5"),
            Some(Refusal::OwnAddress)
        );
        assert_eq!(
            refused(&p, &own, "64:ff9b::a00:5"),
            Some(Refusal::OwnAddress)
        );
        assert_eq!(refused(&p, &own, "fd00::2"), Some(Refusal::OwnAddress));
        assert_eq!(
            refused(&p, &own, "13.110.0.9"),
            Some(Refusal::OwnAddress),
            "a public address of this host too"
        );
        assert_eq!(
            refused(&p, &own, "10.0.0.6"),
            None,
            "a neighbour in the allowed network"
        );
        // The documented exception: loopback the operator opened.
        assert_eq!(refused(&p, &own, "127.0.0.1"), None);
        assert_eq!(refused(&p, &own, "::1"), None);
        let closed = NetPolicy::default();
        assert_eq!(
            refused(&closed, &own, "127.0.0.1"),
            Some(Refusal::Internal("loopback"))
        );
        // The real list: loopback always, and every address of this machine is refused by
        // the real policy even with every network opened.
        let mine = host_addresses();
        assert!(mine.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)), "{mine:?}");
        let all = NetPolicy {
            allowed_internal: vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()],
        };
        for ip in mine.iter().filter(|ip| !ip.is_loopback()) {
            assert!(all.refuse(*ip).is_some(), "{ip}");
        }
    }

    fn sock(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_hosts_listen_sockets_are_refused_whatever_the_operator_opened() {
        let own: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "10.0.0.5".parse().unwrap()];
        let all = NetPolicy {
            allowed_internal: vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()],
        };
        let e = Egress::new(all, vec![sock("127.0.0.1:8080")]);
        let at = |ip: &str, port: Option<u16>| e.refuse_among(ip.parse().unwrap(), port, &own);
        assert_eq!(at("127.0.0.1", Some(8080)), None, "not registered yet");
        e.add_listener(sock("127.0.0.1:8080"));
        e.add_listener(sock("0.0.0.0:9000"));
        assert_eq!(
            at("127.0.0.1", Some(8080)),
            Some(Refusal::ListenSocket(sock("127.0.0.1:8080"))),
            "refused although the operator opened every network and even this endpoint"
        );
        assert!(matches!(
            at("::ffff:127.0.0.1", Some(8080)),
            Some(Refusal::ListenSocket(_))
        ));
        assert_eq!(
            at("127.0.0.1", Some(18089)),
            None,
            "another port of loopback"
        );
        assert_eq!(
            at("127.0.0.2", Some(8080)),
            None,
            "127.0.0.2 is not where 127.0.0.1:8080 listens"
        );
        // A wildcard listener answers on every address of this machine.
        for ip in ["127.0.0.1", "127.0.0.9", "::1", "10.0.0.5"] {
            assert!(
                matches!(at(ip, Some(9000)), Some(Refusal::ListenSocket(_))),
                "{ip}:9000"
            );
        }
        assert_eq!(at("10.0.0.6", Some(9000)), None, "a neighbour");
        // The resolver without a known port refuses a listener's address at any port.
        assert!(matches!(
            at("127.0.0.1", None),
            Some(Refusal::ListenSocket(_))
        ));
        let why = Refusal::ListenSocket(sock("127.0.0.1:8080"))
            .explain("localhost", "127.0.0.1".parse().unwrap());
        assert!(
            why.contains("listen socket") && why.contains("127.0.0.1:8080"),
            "{why}"
        );
    }

    #[test]
    fn an_opened_endpoint_opens_that_address_and_port_only() {
        let own: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "10.0.0.5".parse().unwrap()];
        let e = Egress::new(
            NetPolicy::default(),
            vec![
                sock("127.0.0.1:18089"),
                sock("10.0.0.7:443"),
                sock("10.0.0.5:443"),
                sock("192.0.2.1:80"),
            ],
        );
        let at = |ip: &str, port: Option<u16>| e.refuse_among(ip.parse().unwrap(), port, &own);
        assert_eq!(at("127.0.0.1", Some(18089)), None);
        assert_eq!(at("::ffff:127.0.0.1", Some(18089)), None);
        assert_eq!(at("10.0.0.7", Some(443)), None);
        for (ip, port) in [
            ("127.0.0.1", Some(18090)),
            ("127.0.0.1", Some(8080)),
            ("127.0.0.2", Some(18089)),
            ("127.0.0.1", None),
            ("10.0.0.7", Some(80)),
        ] {
            assert_eq!(
                at(ip, port),
                Some(Refusal::Internal(if ip.starts_with("127") {
                    "loopback"
                } else {
                    "private"
                })),
                "{ip}:{port:?}"
            );
        }
        assert_eq!(
            at("10.0.0.5", Some(443)),
            Some(Refusal::OwnAddress),
            "of this machine's own addresses an endpoint opens only loopback"
        );
        assert!(matches!(
            at("192.0.2.1", Some(80)),
            Some(Refusal::Special(_))
        ));
        // A listen socket stays refused even when the operator names it as an endpoint.
        e.add_listener(sock("127.0.0.1:18089"));
        assert!(matches!(
            at("127.0.0.1", Some(18089)),
            Some(Refusal::ListenSocket(_))
        ));
    }

    /// The connector path: a name (not an IP literal, which reqwest connects to without asking
    /// the resolver) that resolves to a listen socket is refused by the resolver, which learns
    /// the port from the request; the same name at another port connects.
    #[tokio::test]
    async fn the_resolver_refuses_a_listen_socket_by_address_and_port() {
        let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api_addr = api.local_addr().unwrap();
        let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let other_addr = other.local_addr().unwrap();
        tokio::spawn(answer_ok(other));
        let client = HttpClient::new(NetPolicy {
            allowed_internal: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        })
        .unwrap();
        client.protect_listen_socket(api_addr);
        let send = |port: u16| {
            let req = client
                .client()
                .get(format!("http://localhost:{port}/v1/tenants/x/tokens"))
                .send();
            tokio::time::timeout(Duration::from_secs(10), REQUEST_PORT.scope(port, req))
        };
        let refused = send(api_addr.port()).await.expect("answered in time");
        let err = refused.expect_err("the listen socket is refused");
        assert!(
            describe(err).contains("resolves to no address a plugin may reach"),
            "refused by the resolver"
        );
        let accepted = tokio::time::timeout(Duration::from_millis(300), api.accept()).await;
        assert!(accepted.is_err(), "the API's listener saw a connection");
        let ok = send(other_addr.port())
            .await
            .expect("answered in time")
            .expect("another loopback port is reachable");
        assert_eq!(ok.status().as_u16(), 200);
    }

    #[tokio::test]
    async fn an_unresolvable_name_is_refused() {
        let policy = Arc::new(Egress::new(
            NetPolicy {
                allowed_internal: vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()],
            },
            Vec::new(),
        ));
        let u = url("https://no-such-host.invalid/services");
        let why = tokio::time::timeout(
            Duration::from_secs(30),
            Invocation::address_check(policy, &u),
        )
        .await
        .expect("the look-up ends")
        .expect_err("refused");
        assert!(why.contains("no-such-host.invalid"), "{why}");
        assert!(why.contains("could not be resolved"), "{why}");
    }

    /// Runs in a child process (the environment is process-wide): HTTP_PROXY and friends
    /// point at a listener that must see no connection, and the request reaches its target.
    #[test]
    fn the_client_never_takes_a_proxy_from_the_environment() {
        const CHILD: &str = "PBX_HOST_PROXY_TEST_CHILD";
        const NAME: &str =
            "capabilities::http::tests::the_client_never_takes_a_proxy_from_the_environment";
        if std::env::var_os(CHILD).is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
                .env(CHILD, "1")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && stdout.contains("1 passed"),
                "child: {stdout}\n{stderr}"
            );
            return;
        }
        let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        proxy.set_nonblocking(true).unwrap();
        let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
        // SAFETY: this child process runs this one test on one thread.
        unsafe {
            for var in [
                "HTTP_PROXY",
                "http_proxy",
                "HTTPS_PROXY",
                "https_proxy",
                "ALL_PROXY",
                "all_proxy",
            ] {
                std::env::set_var(var, &proxy_url);
            }
            std::env::remove_var("NO_PROXY");
            std::env::remove_var("no_proxy");
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = target.local_addr().unwrap();
            tokio::spawn(answer_ok(target));
            let client = HttpClient::new(NetPolicy {
                allowed_internal: vec!["127.0.0.0/8".parse().unwrap()],
            })
            .unwrap();
            let sent = tokio::time::timeout(
                Duration::from_secs(5),
                client.client().get(format!("http://{addr}/x")).send(),
            )
            .await;
            assert!(
                proxy.accept().is_err(),
                "the request went to the proxy from the environment"
            );
            let resp = sent.expect("answered in time").expect("sent");
            assert_eq!(resp.status().as_u16(), 200);
        });
    }

    #[test]
    fn template_values_fill_only_a_host_label_or_a_path_segment() {
        let label = "https://{config.sub}.my.salesforce.com";
        let ok = UrlPattern::expand(label, &serde_json::json!({"sub": "Acme-1"}))
            .unwrap()
            .unwrap();
        assert!(ok.matches(&url("https://acme-1.my.salesforce.com/services/data")));
        for attack in [
            "evil.com/x?",
            "a.b@127.0.0.1",
            "x:443",
            "evil.com#",
            "a.b",
            "",
            "*",
            "127.0.0.1",
            "[::1]",
            "x%2f",
            "a b",
            &"a".repeat(64),
        ] {
            let cfg = serde_json::json!({ "sub": attack });
            assert!(
                matches!(UrlPattern::expand(label, &cfg), Some(Err(_))),
                "{attack:?} accepted as a host label"
            );
        }
        let seg = "https://api.example.com/t/{config.tenant}/v1";
        let ok = UrlPattern::expand(seg, &serde_json::json!({"tenant": "acme_1.x~"}))
            .unwrap()
            .unwrap();
        assert!(ok.matches(&url("https://api.example.com/t/acme_1.x~/v1/calls")));
        for attack in [
            "../other", "..", ".", "a/b", "a?b", "a#b", "%2e%2e", "*", "", "a b",
        ] {
            let cfg = serde_json::json!({ "tenant": attack });
            assert!(
                matches!(UrlPattern::expand(seg, &cfg), Some(Err(_))),
                "{attack:?} accepted as a path segment"
            );
        }
        // A trailing segment placeholder cannot widen the grant with '*'.
        let tail = "https://api.example.com/t/{config.tenant}";
        assert!(matches!(
            UrlPattern::expand(tail, &serde_json::json!({"tenant": "*"})),
            Some(Err(_))
        ));
        // Templates with a placeholder in the scheme, the port or an IP literal are refused
        // as written.
        for bad in [
            "{config.scheme}://x.example.com",
            "http{config.s}://x.example.com",
            "https://x.example.com:{config.port}",
            "https://[{config.ip}]",
            "{config.a}{config.b}",
            "{config.host}.example.com",
        ] {
            assert!(UrlPattern::parse_template(bad).is_err(), "{bad}");
        }
        assert!(UrlPattern::parse_template(label).is_ok());
        assert!(UrlPattern::parse_template(seg).is_ok());
        // The whole-URL template stays: the tenant's own login host (the address policy still
        // applies to it), but only as a plain origin and path.
        let whole = "{config.login_url}";
        let p = UrlPattern::expand(
            whole,
            &serde_json::json!({"login_url": "https://acme.my.salesforce.com/"}),
        )
        .unwrap()
        .unwrap();
        assert!(p.matches(&url("https://acme.my.salesforce.com/services/oauth2/token")));
        for attack in [
            "https://user@evil.example.com",
            "https://*.example.com",
            "https://evil.example.com/?x",
            "https://evil.example.com/#x",
            "ftp://evil.example.com",
            "evil.example.com",
        ] {
            assert!(
                matches!(
                    UrlPattern::expand(whole, &serde_json::json!({ "login_url": attack })),
                    Some(Err(_))
                ),
                "{attack:?}"
            );
        }
        // Backslash: the URL parser's reading (host evil.example.com) is what is granted.
        let p = UrlPattern::expand(
            whole,
            &serde_json::json!({"login_url": "https://evil.example.com\\@good.example.com"}),
        )
        .unwrap()
        .unwrap();
        assert!(!p.matches(&url("https://good.example.com/")));
        // With a path after it, the value is an origin only.
        let origin = "{config.login_url}/services";
        assert!(matches!(
            UrlPattern::expand(
                origin,
                &serde_json::json!({"login_url": "https://a.example.com/x"})
            ),
            Some(Err(_))
        ));
        let p = UrlPattern::expand(
            origin,
            &serde_json::json!({"login_url": "https://a.example.com/"}),
        )
        .unwrap()
        .unwrap();
        assert!(p.matches(&url("https://a.example.com/services/data")));
        assert!(!p.matches(&url("https://a.example.com/other")));
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
