//! The host test-suite's probe: exports every handler interface (world `host`) and does
//! whatever its tenant config asks, so the host's tests can exercise every capability and
//! every hostile behaviour without one plugin per case.
//!
//! Vocabulary (stable: the host's tests assert on these exact strings):
//!
//! * `ivr-handler.lookup` runs `config.ops` in order and answers `speech = "probe"` and one
//!   variable per op, named `"{index}:{op}"`, whose value is the op's result:
//!   - `http` `{method,url,headers?,body?,timeout_ms?}` → `ok:{status}:{body}` (body as lossy
//!     UTF-8, cut at 4096 chars)
//!   - `secret` `{name}` → `ok:{value}`
//!   - `state-get` `{key}` → `ok:{value}` or `none`
//!   - `state-set` `{key,value,ttl?}` → `ok`; `state-delete` `{key}` → `ok`
//!   - `contacts-upsert` `{entries:[contact…]}` → `ok:{count}`
//!   - `contacts-get` `{id}` → `ok:{contact as JSON}`
//!   - `contacts-delete` `{id}` → `ok`
//!   - `contacts-lookup` `{number}` → `ok:{n}:{external ids, comma-separated}`
//!   - `log` `{level,message}` → `ok`
//!   - `fs-read` `{path}` → `ok:{byte count}`; `fs-list` `{path}` → `ok:{names, comma-separated}`
//!   - `env` → `ok:{n}:{variable names, comma-separated}`
//!   - `tcp-connect` `{addr}` → `ok:connected`
//!   - `clock` → `ok:{ms since the Unix epoch}`
//!   - `trap` → the instance traps here (the ops before it have run; the look-up fails)
//!   - `repeat` `{times,do:{op}}` → runs the op `times` times: `ok:{times}:{last result}`
//!   - `contacts-fill` `{prefix,count,field?,bytes?,phones?}` → upserts `count` entries
//!     `{prefix}{i}` in batches of 1,000, each with `phones` numbers (default 1) and, if
//!     `field` is given (name, company, email, label, number, record-type, external-id,
//!     account-id), that field `bytes` long: `ok:{stored}`, or the first error then
//!     ` after {stored}`
//!
//!   Errors: the WIT variant's case in kebab-case, then its payload: `err:denied:{msg}`,
//!   `err:not-set:{name}`, `err:timeout`, `err:too-large:{n}`, `err:connect:{msg}`,
//!   `err:invalid-request:{msg}`, `err:unavailable:{msg}`, `err:invalid:{msg}`,
//!   `err:not-found:{msg}`; std I/O failures `err:io:{ErrorKind:?}:{msg}`; a bad op
//!   `err:bad-op:{msg}`; an unknown op name `err:unknown-op:{name}`.
//!
//!   Garbage returns: `config.ivr_error_size: n` makes the look-up fail with a plugin-error
//!   whose message is `n` bytes (before any op runs); `config.pad_bytes: n` adds a variable
//!   `"pad"` of `n` bytes after the ops' results; `config.empty_vars: n` adds `n` variables
//!   whose name and value are empty.
//! * `event-handler.handle-event` performs `config.attack` (see [`Attack`]).
//! * `scheduled.run` logs the schedule name and increments state `runs:{name}`.
//! * `settings-check.check` returns `config.check_items`, or one ok item named "probe".

use std::io::Read;

use exports::pbx::plugin::event_handler::Guest as EventHandler;
use exports::pbx::plugin::ivr_handler::{Guest as IvrHandler, IvrDecision, IvrRequest};
use exports::pbx::plugin::scheduled::{Guest as Scheduled, RunResult};
use exports::pbx::plugin::settings_check::{CheckItem, Guest as SettingsCheck};
use pbx_plugin_sdk::bindings::pbx::plugin::contacts::{Contact, ContactsError, Phone};
use pbx_plugin_sdk::bindings::pbx::plugin::secrets::SecretError;
use pbx_plugin_sdk::bindings::pbx::plugin::state::StateError;
use pbx_plugin_sdk::http::{HttpError, Method, Request};
use pbx_plugin_sdk::log::Level;
use pbx_plugin_sdk::{CallEvent, Context, ErrorKind, Host, PluginError, WasmHost};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pbx_plugin_sdk::generate!("host", "../../../wit");

/// Longest response body echoed back in an `http` result.
const BODY_ECHO: usize = 4096;

/// One step of `config.ops`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
enum Op {
    Http {
        #[serde(default = "default_method")]
        method: String,
        url: String,
        #[serde(default)]
        headers: Vec<(String, String)>,
        #[serde(default)]
        body: Option<String>,
        #[serde(default)]
        timeout_ms: Option<u32>,
    },
    Secret {
        name: String,
    },
    StateGet {
        key: String,
    },
    StateSet {
        key: String,
        value: String,
        #[serde(default)]
        ttl: Option<u32>,
    },
    StateDelete {
        key: String,
    },
    ContactsUpsert {
        entries: Vec<ContactJson>,
    },
    ContactsGet {
        id: String,
    },
    ContactsDelete {
        id: String,
    },
    ContactsLookup {
        number: String,
    },
    Log {
        #[serde(default = "default_level")]
        level: String,
        message: String,
    },
    FsRead {
        path: String,
    },
    FsList {
        path: String,
    },
    Env,
    TcpConnect {
        addr: String,
    },
    Clock,
    Trap,
    Repeat {
        times: u64,
        #[serde(rename = "do")]
        inner: Box<Op>,
    },
    ContactsFill {
        prefix: String,
        count: u64,
        #[serde(default)]
        field: Option<String>,
        #[serde(default)]
        bytes: usize,
        #[serde(default = "one")]
        phones: u32,
    },
}

fn one() -> u32 {
    1
}

fn default_method() -> String {
    "GET".into()
}

fn default_level() -> String {
    "info".into()
}

/// A phone-book entry as JSON (the WIT `contact` with snake_case names).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ContactJson {
    external_id: String,
    #[serde(default = "default_record_type")]
    record_type: String,
    name: String,
    #[serde(default)]
    company: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    phones: Vec<PhoneJson>,
    #[serde(default)]
    account_id: Option<String>,
    #[serde(default)]
    modified_at: Option<i64>,
}

fn default_record_type() -> String {
    "Contact".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PhoneJson {
    #[serde(default = "default_label")]
    label: String,
    number: String,
}

fn default_label() -> String {
    "Phone".into()
}

impl From<ContactJson> for Contact {
    fn from(c: ContactJson) -> Self {
        Contact {
            external_id: c.external_id,
            record_type: c.record_type,
            name: c.name,
            company: c.company,
            email: c.email,
            phones: c
                .phones
                .into_iter()
                .map(|p| Phone {
                    label: p.label,
                    number: p.number,
                })
                .collect(),
            account_id: c.account_id,
            modified_at: c.modified_at,
        }
    }
}

impl From<Contact> for ContactJson {
    fn from(c: Contact) -> Self {
        ContactJson {
            external_id: c.external_id,
            record_type: c.record_type,
            name: c.name,
            company: c.company,
            email: c.email,
            phones: c
                .phones
                .into_iter()
                .map(|p| PhoneJson {
                    label: p.label,
                    number: p.number,
                })
                .collect(),
            account_id: c.account_id,
            modified_at: c.modified_at,
        }
    }
}

fn http_err(e: HttpError) -> String {
    match e {
        HttpError::Denied(m) => format!("err:denied:{m}"),
        HttpError::Timeout => "err:timeout".into(),
        HttpError::TooLarge(n) => format!("err:too-large:{n}"),
        HttpError::Connect(m) => format!("err:connect:{m}"),
        HttpError::InvalidRequest(m) => format!("err:invalid-request:{m}"),
    }
}

fn secret_err(e: SecretError) -> String {
    match e {
        SecretError::Denied(m) => format!("err:denied:{m}"),
        SecretError::NotSet(m) => format!("err:not-set:{m}"),
    }
}

fn state_err(e: StateError) -> String {
    match e {
        StateError::Denied(m) => format!("err:denied:{m}"),
        StateError::TooLarge(n) => format!("err:too-large:{n}"),
        StateError::Unavailable(m) => format!("err:unavailable:{m}"),
    }
}

fn contacts_err(e: ContactsError) -> String {
    match e {
        ContactsError::Denied(m) => format!("err:denied:{m}"),
        ContactsError::Invalid(m) => format!("err:invalid:{m}"),
        ContactsError::NotFound(m) => format!("err:not-found:{m}"),
        ContactsError::TooLarge(n) => format!("err:too-large:{n}"),
        ContactsError::Unavailable(m) => format!("err:unavailable:{m}"),
    }
}

fn io_err(e: std::io::Error) -> String {
    format!("err:io:{:?}:{e}", e.kind())
}

fn parse_method(m: &str) -> Option<Method> {
    Some(match m.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "PATCH" => Method::Patch,
        "DELETE" => Method::Delete,
        "HEAD" => Method::Head,
        _ => return None,
    })
}

fn parse_level(l: &str) -> Level {
    match l {
        "debug" => Level::Debug,
        "warn" => Level::Warn,
        "error" => Level::Error,
        _ => Level::Info,
    }
}

fn cut(s: &str, max_chars: usize) -> &str {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Runs one op and renders its result in the vocabulary of the module docs.
fn run_op(host: &impl Host, op: Op) -> String {
    match op {
        Op::Http {
            method,
            url,
            headers,
            body,
            timeout_ms,
        } => {
            let Some(method) = parse_method(&method) else {
                return format!("err:bad-op:unknown method {method}");
            };
            let mut req = Request::new(method, url);
            req.headers = headers;
            req.body = body.map(String::into_bytes);
            req.timeout_ms = timeout_ms;
            match host.http_send(&req) {
                Ok(r) => {
                    let text = String::from_utf8_lossy(&r.body);
                    format!("ok:{}:{}", r.status, cut(&text, BODY_ECHO))
                }
                Err(e) => http_err(e),
            }
        }
        Op::Secret { name } => match host.secret(&name) {
            Ok(v) => format!("ok:{v}"),
            Err(e) => secret_err(e),
        },
        Op::StateGet { key } => match host.state_get(&key) {
            Ok(Some(v)) => format!("ok:{v}"),
            Ok(None) => "none".into(),
            Err(e) => state_err(e),
        },
        Op::StateSet { key, value, ttl } => match host.state_set(&key, &value, ttl) {
            Ok(()) => "ok".into(),
            Err(e) => state_err(e),
        },
        Op::StateDelete { key } => match host.state_delete(&key) {
            Ok(()) => "ok".into(),
            Err(e) => state_err(e),
        },
        Op::ContactsUpsert { entries } => {
            let entries: Vec<Contact> = entries.into_iter().map(Contact::from).collect();
            match host.contacts_upsert(&entries) {
                Ok(n) => format!("ok:{n}"),
                Err(e) => contacts_err(e),
            }
        }
        Op::ContactsGet { id } => match host.contacts_get(&id) {
            Ok(c) => match serde_json::to_string(&ContactJson::from(c)) {
                Ok(j) => format!("ok:{j}"),
                Err(e) => format!("err:bad-op:{e}"),
            },
            Err(e) => contacts_err(e),
        },
        Op::ContactsDelete { id } => match host.contacts_delete(&id) {
            Ok(()) => "ok".into(),
            Err(e) => contacts_err(e),
        },
        Op::ContactsLookup { number } => match host.contacts_lookup(&number) {
            Ok(found) => {
                let ids: Vec<&str> = found.iter().map(|c| c.external_id.as_str()).collect();
                format!("ok:{}:{}", found.len(), ids.join(","))
            }
            Err(e) => contacts_err(e),
        },
        Op::Log { level, message } => {
            host.log(parse_level(&level), &message);
            "ok".into()
        }
        Op::FsRead { path } => {
            let read = std::fs::File::open(&path).and_then(|mut f| {
                let mut buf = Vec::new();
                f.read_to_end(&mut buf).map(|_| buf.len())
            });
            match read {
                Ok(n) => format!("ok:{n}"),
                Err(e) => io_err(e),
            }
        }
        Op::FsList { path } => match std::fs::read_dir(&path) {
            Ok(entries) => {
                let mut names: Vec<String> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                format!("ok:{}", names.join(","))
            }
            Err(e) => io_err(e),
        },
        Op::Env => {
            let mut names: Vec<String> = std::env::vars_os()
                .map(|(k, _)| k.to_string_lossy().into_owned())
                .collect();
            names.sort();
            format!("ok:{}:{}", names.len(), names.join(","))
        }
        Op::TcpConnect { addr } => match std::net::TcpStream::connect(addr.as_str()) {
            Ok(_) => "ok:connected".into(),
            Err(e) => io_err(e),
        },
        Op::Clock => match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => format!("ok:{}", d.as_millis()),
            Err(e) => format!("err:clock:{e}"),
        },
        Op::Trap => trap(),
        Op::Repeat { times, inner } => {
            let mut last = String::new();
            for _ in 0..times {
                last = run_op(host, (*inner).clone());
            }
            format!("ok:{times}:{last}")
        }
        Op::ContactsFill {
            prefix,
            count,
            field,
            bytes,
            phones,
        } => contacts_fill(host, &prefix, count, field.as_deref(), bytes, phones),
    }
}

/// One generated phone-book entry of `contacts-fill`.
fn fill_entry(i: u64, prefix: &str, field: Option<&str>, bytes: usize, phones: u32) -> Contact {
    let long = "x".repeat(bytes);
    let mut c = Contact {
        external_id: format!("{prefix}{i}"),
        record_type: "Contact".into(),
        name: format!("Fill {i}"),
        company: None,
        email: None,
        phones: (0..phones)
            .map(|k| Phone {
                label: "Phone".into(),
                number: format!("+8150{:08}", (i * 16 + u64::from(k)) % 100_000_000),
            })
            .collect(),
        account_id: None,
        modified_at: Some(i as i64),
    };
    match field {
        Some("name") => c.name = long,
        Some("company") => c.company = Some(long),
        Some("email") => c.email = Some(long),
        Some("label") => c.phones.iter_mut().for_each(|p| p.label = long.clone()),
        Some("number") => c.phones.iter_mut().for_each(|p| p.number = long.clone()),
        Some("record-type") => c.record_type = long,
        Some("external-id") => c.external_id = long,
        Some("account-id") => c.account_id = Some(long),
        _ => {}
    }
    c
}

fn contacts_fill(
    host: &impl Host,
    prefix: &str,
    count: u64,
    field: Option<&str>,
    bytes: usize,
    phones: u32,
) -> String {
    let mut stored = 0u64;
    let mut i = 0u64;
    while i < count {
        let end = (i + 1000).min(count);
        let batch: Vec<Contact> = (i..end)
            .map(|k| fill_entry(k, prefix, field, bytes, phones))
            .collect();
        match host.contacts_upsert(&batch) {
            Ok(n) => stored += u64::from(n),
            Err(e) => return format!("{} after {stored}", contacts_err(e)),
        }
        i = end;
    }
    format!("ok:{stored}")
}

/// The op's name, for the variable name, even when the op does not parse.
fn op_name(v: &Value) -> String {
    v.get("op")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string()
}

const KNOWN_OPS: &[&str] = &[
    "trap",
    "http",
    "secret",
    "state-get",
    "state-set",
    "state-delete",
    "contacts-upsert",
    "contacts-get",
    "contacts-delete",
    "contacts-lookup",
    "log",
    "fs-read",
    "fs-list",
    "env",
    "tcp-connect",
    "clock",
    "repeat",
    "contacts-fill",
];

fn parse_config(ctx: &Context) -> Result<Value, PluginError> {
    if ctx.config.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_str(&ctx.config)
        .map_err(|e| PluginError::config(format!("probe config is not JSON: {e}")))
}

/// `ivr-handler.lookup`: run `config.ops`.
fn lookup(host: &impl Host, ctx: &Context) -> Result<IvrDecision, PluginError> {
    let config = parse_config(ctx)?;
    let error_size = usize::try_from(get_u64(&config, "ivr_error_size", 0)).unwrap_or(usize::MAX);
    if error_size > 0 {
        return Err(PluginError::permanent("e".repeat(error_size)));
    }
    let ops = config
        .get("ops")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut variables = Vec::with_capacity(ops.len());
    for (i, raw) in ops.into_iter().enumerate() {
        let name = op_name(&raw);
        let result = if !KNOWN_OPS.contains(&name.as_str()) {
            format!("err:unknown-op:{name}")
        } else {
            match serde_json::from_value::<Op>(raw) {
                Ok(op) => run_op(host, op),
                Err(e) => format!("err:bad-op:{e}"),
            }
        };
        variables.push((format!("{i}:{name}"), result));
    }
    let pad = usize::try_from(get_u64(&config, "pad_bytes", 0)).unwrap_or(usize::MAX);
    if pad > 0 {
        variables.push(("pad".into(), "p".repeat(pad)));
    }
    let empty = usize::try_from(get_u64(&config, "empty_vars", 0)).unwrap_or(usize::MAX);
    variables.extend(std::iter::repeat_n((String::new(), String::new()), empty));
    Ok(IvrDecision {
        speech: Some("probe".into()),
        route: config
            .get("route")
            .and_then(Value::as_str)
            .map(str::to_string),
        variables,
    })
}

/// The hostile (or plain) behaviours of `event-handler.handle-event`, chosen by
/// `config.attack`; `config.size`, `config.url`, `config.ms`, `config.count`, `config.kind`
/// parameterise them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attack {
    /// Return Ok.
    None,
    /// Spin forever: the host's CPU limit must stop it.
    Loop,
    /// Allocate 1 MiB blocks forever: the memory limit must stop it.
    Alloc,
    /// Recurse without bound with a 256-byte array per frame: the plugin's data stack (in
    /// its linear memory) runs out first, a trap.
    Recursion,
    /// Recurse without bound with nothing in memory: the wasm call stack itself runs out
    /// (the host's `max_wasm_stack`), a "call stack exhausted" trap.
    NativeRecursion,
    /// `panic!` (an abort, so a trap, with the plugin profile's panic=abort).
    Panic,
    /// Execute `unreachable`.
    Trap,
    /// POST `config.size` bytes to `config.url`.
    HugeHttpBody,
    /// Return a plugin-error whose message is `config.size` bytes.
    HugeReturn,
    /// GET `config.url`, which never answers: the wall-clock limit must stop it.
    SlowHttp,
    /// Busy-wait `config.ms` on the monotonic clock.
    Sleep,
    /// Write `config.count` log lines.
    LogFlood,
    /// Return a plugin-error of kind `config.kind`.
    Fail,
}

impl Attack {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "none" => Attack::None,
            "loop" => Attack::Loop,
            "alloc" => Attack::Alloc,
            "recursion" => Attack::Recursion,
            "native-recursion" => Attack::NativeRecursion,
            "panic" => Attack::Panic,
            "trap" => Attack::Trap,
            "huge-http-body" => Attack::HugeHttpBody,
            "huge-return" => Attack::HugeReturn,
            "slow-http" => Attack::SlowHttp,
            "sleep" => Attack::Sleep,
            "log-flood" => Attack::LogFlood,
            "fail" => Attack::Fail,
            _ => return None,
        })
    }
}

fn get_u64(config: &Value, key: &str, default: u64) -> u64 {
    config.get(key).and_then(Value::as_u64).unwrap_or(default)
}

fn get_str<'a>(config: &'a Value, key: &str) -> &'a str {
    config.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Recurses until the stack runs out; the frame keeps a buffer so each level costs stack.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth as u8; 256]);
    if std::hint::black_box(depth) == u64::MAX {
        return 0;
    }
    recurse(depth + 1).wrapping_add(u64::from(frame[(depth % 256) as usize]))
}

/// Recurses until the wasm call stack runs out; no locals in linear memory, and the result
/// is mixed so that the recursion cannot become a loop.
#[inline(never)]
fn recurse_native(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    let r = recurse_native(depth + 1);
    r ^ r.rotate_left((depth % 63) as u32) ^ depth
}

#[cfg(target_arch = "wasm32")]
fn trap() -> ! {
    core::arch::wasm32::unreachable()
}

#[cfg(not(target_arch = "wasm32"))]
fn trap() -> ! {
    std::process::abort()
}

fn handle_event(host: &impl Host, ctx: &Context, event: &CallEvent) -> Result<(), PluginError> {
    let config = parse_config(ctx)?;
    let name = config
        .get("attack")
        .and_then(Value::as_str)
        .unwrap_or("none");
    let Some(attack) = Attack::parse(name) else {
        return Err(PluginError::config(format!("unknown attack {name}")));
    };
    let size = usize::try_from(get_u64(&config, "size", 0)).unwrap_or(usize::MAX);
    // Every delivery is visible in the tenant log, in the order the plugin saw it (the host's
    // ordering and batching tests read these lines).
    host.log(
        Level::Info,
        &format!(
            "probe: received {} {:?} attempt {}",
            event.call.call_id, event.kind, ctx.attempt
        ),
    );
    // `fail_attempts: n` fails transiently until the host has retried n times.
    if u64::from(ctx.attempt) < get_u64(&config, "fail_attempts", 0) {
        return Err(PluginError::transient(format!(
            "probe: failing attempt {}",
            ctx.attempt
        )));
    }
    match attack {
        Attack::None => {
            host.log(Level::Debug, &format!("probe: event {} ok", event.event_id));
            Ok(())
        }
        Attack::Loop => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        Attack::Alloc => {
            let mut held: Vec<Vec<u8>> = Vec::new();
            loop {
                held.push(std::hint::black_box(vec![0xA5u8; 1 << 20]));
                std::hint::black_box(&held);
            }
        }
        Attack::Recursion => {
            let r = recurse(0);
            Err(PluginError::permanent(format!("recursion ended at {r}")))
        }
        Attack::NativeRecursion => {
            let r = recurse_native(0);
            Err(PluginError::permanent(format!("recursion ended at {r}")))
        }
        Attack::Panic => panic!("probe: panic requested by config"),
        Attack::Trap => trap(),
        Attack::HugeHttpBody => {
            let req = Request::new(Method::Post, get_str(&config, "url")).body(vec![b'x'; size]);
            match host.http_send(&req) {
                Ok(r) => {
                    host.log(
                        Level::Info,
                        &format!("probe: huge body sent, HTTP {}", r.status),
                    );
                    Ok(())
                }
                Err(e) => Err(PluginError::permanent(http_err(e))),
            }
        }
        Attack::HugeReturn => Err(PluginError::permanent("x".repeat(size))),
        Attack::SlowHttp => {
            let req = Request::new(Method::Get, get_str(&config, "url"));
            match host.http_send(&req) {
                Ok(r) => Err(PluginError::permanent(format!(
                    "slow-http answered: HTTP {}",
                    r.status
                ))),
                Err(e) => Err(PluginError::transient(http_err(e))),
            }
        }
        Attack::Sleep => {
            let ms = get_u64(&config, "ms", 0);
            let start = std::time::Instant::now();
            while start.elapsed() < std::time::Duration::from_millis(ms) {
                std::hint::spin_loop();
            }
            Ok(())
        }
        Attack::LogFlood => {
            for i in 0..get_u64(&config, "count", 0) {
                host.log(Level::Info, &format!("probe: flood line {i}"));
            }
            Ok(())
        }
        Attack::Fail => {
            let kind_name = config
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("permanent");
            let kind = ErrorKind::parse(kind_name).unwrap_or(ErrorKind::Permanent);
            let message = config
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("probe: failure requested by config");
            let mut e = PluginError::new(kind, message);
            e.retry_after_ms = config
                .get("retry_after_ms")
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok());
            Err(e)
        }
    }
}

/// `scheduled.run`: log and count runs per schedule name.
fn run_schedule(host: &impl Host, schedule: &str) -> Result<(), PluginError> {
    let key = format!("runs:{schedule}");
    let runs: u64 = host
        .state_get(&key)?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        + 1;
    host.state_set(&key, &runs.to_string(), None)?;
    host.log(
        Level::Info,
        &format!("probe: schedule {schedule} run {runs}"),
    );
    Ok(())
}

#[derive(Debug, Deserialize)]
struct CheckItemJson {
    name: String,
    #[serde(default)]
    ok: bool,
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    message: String,
}

/// `settings-check.check`: `config.check_items` or one ok item.
fn check(ctx: &Context) -> Vec<CheckItem> {
    let items = parse_config(ctx).ok().and_then(|c| {
        c.get("check_items")
            .cloned()
            .and_then(|v| serde_json::from_value::<Vec<CheckItemJson>>(v).ok())
    });
    match items {
        Some(items) => items
            .into_iter()
            .map(|i| CheckItem {
                name: i.name,
                ok: i.ok,
                field: i.field,
                message: i.message,
            })
            .collect(),
        None => vec![CheckItem {
            name: "probe".into(),
            ok: true,
            field: None,
            message: "probe settings are fine".into(),
        }],
    }
}

/// The export; wasm32 only, because natively the export symbol names do not link.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Probe;

impl EventHandler for Probe {
    fn handle_event(ctx: Context, event: CallEvent) -> Result<(), PluginError> {
        handle_event(&WasmHost, &ctx, &event)
    }
}

impl exports::pbx::plugin::event_batch_handler::Guest for Probe {
    /// Each event as `handle-event` would take it; the batch itself is what the host tests.
    fn handle_events(ctx: Context, events: Vec<CallEvent>) -> Vec<Result<(), PluginError>> {
        events
            .iter()
            .map(|e| handle_event(&WasmHost, &ctx, e))
            .collect()
    }
}

impl IvrHandler for Probe {
    fn lookup(ctx: Context, _request: IvrRequest) -> Result<IvrDecision, PluginError> {
        lookup(&WasmHost, &ctx)
    }
}

impl Scheduled for Probe {
    fn run(ctx: Context, schedule: String) -> Result<RunResult, PluginError> {
        run_schedule(&WasmHost, &schedule)?;
        // `run_again_after_ms` in the config asks the scheduler for an early next run.
        let again = parse_config(&ctx)
            .ok()
            .and_then(|c| c.get("run_again_after_ms").and_then(Value::as_u64))
            .and_then(|v| u32::try_from(v).ok());
        Ok(RunResult {
            run_again_after_ms: again,
        })
    }
}

impl SettingsCheck for Probe {
    fn check(ctx: Context) -> Vec<CheckItem> {
        check(&ctx)
    }
}

#[cfg(target_arch = "wasm32")]
export!(Probe);

#[cfg(test)]
mod tests {
    use super::*;
    use pbx_plugin_sdk::testing::{FakeHost, sample_context, sample_event};
    use pbx_plugin_sdk::{Direction, EventKind};

    fn vars(host: &FakeHost, ops: Value) -> Vec<(String, String)> {
        let ctx = sample_context(&serde_json::json!({ "ops": ops }).to_string());
        let d = lookup(host, &ctx).expect("lookup");
        assert_eq!(d.speech.as_deref(), Some("probe"));
        d.variables
    }

    #[test]
    fn capability_ops_render_results() {
        let host = FakeHost::new();
        host.push_response(200, &[], b"hello");
        host.push_error(HttpError::Denied("not granted".into()));
        host.push_error(HttpError::TooLarge(1024));
        host.set_secret("a", "s");
        let v = vars(
            &host,
            serde_json::json!([
                {"op":"http","method":"GET","url":"https://x.test/"},
                {"op":"http","method":"POST","url":"https://evil.test/","body":"b"},
                {"op":"http","url":"https://x.test/big"},
                {"op":"secret","name":"a"},
                {"op":"secret","name":"b"},
                {"op":"state-set","key":"k","value":"v","ttl":5},
                {"op":"state-get","key":"k"},
                {"op":"state-delete","key":"k"},
                {"op":"state-get","key":"k"},
                {"op":"contacts-upsert","entries":[{"external_id":"Contact/1","name":"A",
                    "phones":[{"label":"Phone","number":"+81312345678"}]}]},
                {"op":"contacts-lookup","number":"+81312345678"},
                {"op":"contacts-get","id":"Contact/1"},
                {"op":"contacts-delete","id":"Contact/1"},
                {"op":"contacts-get","id":"Contact/1"},
                {"op":"log","level":"warn","message":"hi"},
                {"op":"nope"},
                {"op":"secret"},
            ]),
        );
        let got: Vec<(&str, &str)> = v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(got[0], ("0:http", "ok:200:hello"));
        assert_eq!(got[1], ("1:http", "err:denied:not granted"));
        assert_eq!(got[2], ("2:http", "err:too-large:1024"));
        assert_eq!(got[3], ("3:secret", "ok:s"));
        assert_eq!(got[4], ("4:secret", "err:not-set:b"));
        assert_eq!(got[5], ("5:state-set", "ok"));
        assert_eq!(got[6], ("6:state-get", "ok:v"));
        assert_eq!(got[7], ("7:state-delete", "ok"));
        assert_eq!(got[8], ("8:state-get", "none"));
        assert_eq!(got[9], ("9:contacts-upsert", "ok:1"));
        assert_eq!(got[10], ("10:contacts-lookup", "ok:1:Contact/1"));
        assert!(
            got[11].1.starts_with("ok:{\"external_id\":\"Contact/1\""),
            "{}",
            got[11].1
        );
        assert_eq!(got[12], ("12:contacts-delete", "ok"));
        assert_eq!(got[13], ("13:contacts-get", "err:not-found:Contact/1"));
        assert_eq!(got[14], ("14:log", "ok"));
        assert_eq!(got[15], ("15:nope", "err:unknown-op:nope"));
        assert!(got[16].1.starts_with("err:bad-op:"), "{}", got[16].1);
        assert_eq!(host.requests()[1].body.as_deref(), Some(&b"b"[..]));
    }

    #[test]
    fn garbage_returns_are_sized_by_config() {
        let host = FakeHost::new();
        let d = lookup(
            &host,
            &sample_context(r#"{"pad_bytes":1000,"ops":[{"op":"clock"}]}"#),
        )
        .expect("lookup");
        assert_eq!(d.variables.len(), 2);
        assert_eq!(d.variables[1], ("pad".to_string(), "p".repeat(1000)));
        let e = lookup(&host, &sample_context(r#"{"ivr_error_size":5000}"#)).expect_err("err");
        assert_eq!(e.message.len(), 5000);
    }

    #[test]
    fn os_ops_render_results_natively() {
        let host = FakeHost::new();
        let v = vars(
            &host,
            serde_json::json!([
                {"op":"fs-read","path":"/definitely/not/here"},
                {"op":"clock"},
                {"op":"env"},
            ]),
        );
        assert!(v[0].1.starts_with("err:io:NotFound:"), "{}", v[0].1);
        assert!(v[1].1.starts_with("ok:17"), "{}", v[1].1);
        assert!(v[2].1.starts_with("ok:"), "{}", v[2].1);
    }

    #[test]
    fn fail_and_huge_return() {
        let host = FakeHost::new();
        let ev = sample_event(EventKind::Ended, Direction::Inbound);
        let ctx = sample_context(r#"{"attack":"fail","kind":"rate-limited","retry_after_ms":7}"#);
        let e = handle_event(&host, &ctx, &ev).expect_err("fail");
        assert_eq!(
            (e.kind, e.retry_after_ms),
            (ErrorKind::RateLimited, Some(7))
        );
        let ctx = sample_context(r#"{"attack":"huge-return","size":100000}"#);
        let e = handle_event(&host, &ctx, &ev).expect_err("huge");
        assert_eq!(e.message.len(), 100_000);
        let ctx = sample_context(r#"{"attack":"log-flood","count":3}"#);
        handle_event(&host, &ctx, &ev).expect("flood");
        // Besides one "received" line per delivery.
        let flood = host
            .logs()
            .iter()
            .filter(|(_, m)| m.contains("flood line"))
            .count();
        assert_eq!(flood, 3);
        handle_event(&host, &sample_context(""), &ev).expect("none");
        let e = handle_event(&host, &sample_context(r#"{"attack":"x"}"#), &ev).expect_err("x");
        assert_eq!(e.kind, ErrorKind::Config);
    }

    #[test]
    fn schedule_counts_runs() {
        let host = FakeHost::new();
        run_schedule(&host, "sync").expect("1");
        run_schedule(&host, "sync").expect("2");
        assert_eq!(host.state_value("runs:sync").as_deref(), Some("2"));
    }

    #[test]
    fn check_items_from_config() {
        let items = check(&sample_context(
            r#"{"check_items":[{"name":"login","ok":false,"field":"security_token","message":"bad"}]}"#,
        ));
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].field.as_deref(), Some("security_token"));
        assert!(check(&sample_context("{}"))[0].ok);
    }
}
