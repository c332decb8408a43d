//! Parsing and validation of `plugins.toml`, with errors that name file, line and field.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::model::*;

/// A problem in `plugins.toml`, located precisely enough for an operator to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (as given).
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// The dotted path of the field at fault, e.g. `tenants.acme.plugins.crm`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Read and validate a file.
pub fn load_file(path: &Path) -> Result<PluginsFile, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            file: path.to_path_buf(),
            line: None,
            column: None,
            field: String::new(),
            message: format!("cannot read the file: {e}"),
        }]
    })?;
    parse_str(path, &text)
}

/// Parse and validate the text of a file named `path`.
pub fn parse_str(path: &Path, text: &str) -> Result<PluginsFile, Vec<ConfigError>> {
    let locate = Locator { file: path, text };
    let file: PluginsFile = toml::from_str(text).map_err(|e| {
        let span = e.span();
        // The toml crate's message repeats the location; keep only its first line of substance.
        let message = e.message().trim().to_string();
        let field = span
            .as_ref()
            .map(|s| field_at(text, s.start))
            .unwrap_or_default();
        vec![locate.error(span, &field, message)]
    })?;
    let mut errors = Vec::new();
    validate(&file, &locate, &mut errors);
    if errors.is_empty() {
        Ok(file)
    } else {
        Err(errors)
    }
}

struct Locator<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    fn error(&self, span: Option<Range<usize>>, field: &str, message: String) -> ConfigError {
        let (line, column) = match span {
            Some(s) => {
                let (l, c) = line_col(self.text, s.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            field: field.to_string(),
            message,
        }
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The key being defined on the line of `offset` (best effort, for parse errors whose span
/// points into a value): the table header above it plus the key on that line.
fn field_at(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let mut table = String::new();
    for line in before.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            table = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        }
    }
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let key = line.split('=').next().unwrap_or("").trim();
    match (
        table.is_empty(),
        key.is_empty() || line.trim_start().starts_with('['),
    ) {
        (true, _) => key.to_string(),
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}

/// Ids of plugins and tenants appear in paths, URLs and log lines: keep them plain.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && id.as_bytes()[0].is_ascii_alphanumeric()
}

/// Secret names: what the plugin reads through `secrets.get`.
pub fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        && !name.contains("..")
        && !name.starts_with('.')
}

/// The event kinds a plugin may subscribe to (the WIT `event-kind` names).
pub const EVENT_KINDS: &[&str] = &[
    "dial-started",
    "answered",
    "queue-entered",
    "transferred",
    "ended",
    "memo-updated",
    "transcript-updated",
];

/// The largest `[host] min_retry_delay_ms`: a longer floor would hold every retry back for
/// longer than most backoffs (5 minutes at most) and looks like a unit mistake.
const MAX_MIN_RETRY_DELAY_MS: u64 = 3_600_000;

/// Setting names that hold credentials: they belong in the secret store, never in the file.
const SECRET_LOOKING_KEYS: &[&str] = &[
    "password",
    "security_token",
    "securitytoken",
    "client_secret",
    "refresh_token",
    "private_key",
    "access_token",
    "api_key",
    "secret",
    "token",
];

fn validate(file: &PluginsFile, at: &Locator<'_>, errors: &mut Vec<ConfigError>) {
    if file.host.invocations_per_minute == Some(0) {
        errors.push(at.error(
            None,
            "host.invocations_per_minute",
            "must be greater than 0".into(),
        ));
    }
    if file
        .host
        .min_retry_delay_ms
        .is_some_and(|ms| ms > MAX_MIN_RETRY_DELAY_MS)
    {
        errors.push(at.error(
            None,
            "host.min_retry_delay_ms",
            format!("at most {MAX_MIN_RETRY_DELAY_MS} (an hour)"),
        ));
    }
    for (name, message) in crate::runtime::Limits::check_host(&file.host) {
        errors.push(at.error(None, &format!("host.{name}"), message));
    }
    for net in &file.host.allow_private_networks {
        if net.get_ref().parse::<ipnet::IpNet>().is_err() {
            errors.push(at.error(
                Some(net.span()),
                "host.allow_private_networks",
                format!(
                    "'{}' is not a network in CIDR form (e.g. 127.0.0.0/8)",
                    net.get_ref()
                ),
            ));
        }
    }
    for ep in &file.host.allow_private_endpoints {
        if let Err(why) = parse_endpoint(ep.get_ref()) {
            errors.push(at.error(Some(ep.span()), "host.allow_private_endpoints", why));
        }
    }
    for (id, plugin) in &file.plugins {
        let field = format!("plugins.{id}");
        if !valid_id(id) {
            errors.push(at.error(
                Some(plugin.span()),
                &field,
                "plugin ids are lower-case letters, digits, '-' and '_' (at most 64)".into(),
            ));
        }
        validate_plugin(&field, plugin.get_ref(), at, errors);
    }
    for (id, tenant) in &file.tenants {
        let field = format!("tenants.{id}");
        if !valid_id(id) {
            errors.push(at.error(
                Some(tenant.span()),
                &field,
                "tenant ids are lower-case letters, digits, '-' and '_' (at most 64)".into(),
            ));
        }
        let t = tenant.get_ref();
        if pbx_phone::country(&t.default_country).is_none() {
            errors.push(at.error(
                Some(tenant.span()),
                &format!("{field}.default_country"),
                format!(
                    "unknown country '{}' (an ISO 3166 code such as JP)",
                    t.default_country
                ),
            ));
        }
        for offered in &t.offered {
            if !file.plugins.contains_key(offered.get_ref()) {
                errors.push(at.error(
                    Some(offered.span()),
                    &format!("{field}.offered"),
                    format!(
                        "plugin '{}' is not declared in [plugins]",
                        offered.get_ref()
                    ),
                ));
            }
        }
        for (pid, tp) in &t.plugins {
            let pfield = format!("{field}.plugins.{pid}");
            let Some(decl) = file.plugins.get(pid) else {
                errors.push(at.error(
                    Some(tp.span()),
                    &pfield,
                    format!("plugin '{pid}' is not declared in [plugins]"),
                ));
                continue;
            };
            for name in tp.get_ref().schedules.keys() {
                if !decl.get_ref().schedules.contains_key(name) {
                    errors.push(at.error(
                        Some(tp.span()),
                        &format!("{pfield}.schedules.{name}"),
                        format!("plugin '{pid}' declares no schedule '{name}'"),
                    ));
                }
            }
            if let Some(config) = &tp.get_ref().config {
                check_no_secrets(
                    &format!("{pfield}.config"),
                    config.get_ref(),
                    config.span(),
                    at,
                    errors,
                );
            }
        }
    }
}

/// An `[host] allow_private_endpoints` entry: one address and port (`127.0.0.1:18089`,
/// `[::1]:8443`).
fn parse_endpoint(text: &str) -> Result<std::net::SocketAddr, String> {
    let addr: std::net::SocketAddr = text.parse().map_err(|_| {
        format!("'{text}' is not an address and port (e.g. 127.0.0.1:18089 or [::1]:8443)")
    })?;
    if addr.port() == 0 || addr.ip().is_unspecified() {
        return Err(format!(
            "'{text}' names no single endpoint (the address and the port must be given)"
        ));
    }
    Ok(addr)
}

fn validate_plugin(field: &str, p: &PluginDecl, at: &Locator<'_>, errors: &mut Vec<ConfigError>) {
    if p.component.get_ref().as_os_str().is_empty() {
        errors.push(at.error(
            Some(p.component.span()),
            &format!("{field}.component"),
            "the component path is empty".into(),
        ));
    }
    for ev in &p.events {
        let e = ev.get_ref();
        if e != "*" && !EVENT_KINDS.contains(&e.as_str()) {
            errors.push(at.error(
                Some(ev.span()),
                &format!("{field}.events"),
                format!(
                    "unknown event kind '{e}' (one of {}, or \"*\")",
                    EVENT_KINDS.join(", ")
                ),
            ));
        }
    }
    for (name, every) in &p.schedules {
        if *every.get_ref() < 1 {
            errors.push(at.error(
                Some(every.span()),
                &format!("{field}.schedules.{name}"),
                "a schedule interval is at least 1 second".into(),
            ));
        }
    }
    for pattern in &p.grants.http {
        if let Err(e) = crate::capabilities::http::UrlPattern::parse_template(pattern.get_ref()) {
            errors.push(at.error(Some(pattern.span()), &format!("{field}.grants.http"), e));
        }
    }
    for name in &p.grants.secrets {
        if !valid_secret_name(name.get_ref()) {
            errors.push(at.error(
                Some(name.span()),
                &format!("{field}.grants.secrets"),
                format!(
                    "'{}' is not a valid secret name (letters, digits, '.', '-', '_')",
                    name.get_ref()
                ),
            ));
        }
    }
    if let Some(b) = &p.batch
        && (b.max_events == 0 || b.max_events > 1000 || b.window_ms > 600_000)
    {
        errors.push(at.error(
            None,
            &format!("{field}.batch"),
            "max_events is 1 to 1000 and window_ms at most 600000".into(),
        ));
    }
    if let Err((name, msg)) = crate::runtime::Limits::from_decl(&p.limits) {
        errors.push(at.error(None, &format!("{field}.limits.{name}"), msg));
    }
    if p.limits.invocations_per_minute == Some(0) {
        errors.push(at.error(
            None,
            &format!("{field}.limits.invocations_per_minute"),
            "must be greater than 0".into(),
        ));
    }
}

fn check_no_secrets(
    field: &str,
    table: &toml::Table,
    span: Range<usize>,
    at: &Locator<'_>,
    errors: &mut Vec<ConfigError>,
) {
    for (key, value) in table {
        let k = key.to_ascii_lowercase().replace('-', "_");
        if SECRET_LOOKING_KEYS
            .iter()
            .any(|s| k == *s || k.ends_with(&format!("_{s}")))
        {
            errors.push(
                at.error(
                    Some(span.clone()),
                    &format!("{field}.{key}"),
                    "credentials do not belong in plugins.toml: set them as secrets through the \
                 admin API or the secrets file"
                        .into(),
                ),
            );
        }
        if let toml::Value::Table(inner) = value {
            check_no_secrets(&format!("{field}.{key}"), inner, span.clone(), at, errors);
        }
    }
}
