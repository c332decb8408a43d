//! Fuzzing the host's untrusted inputs: what the PBX posts (call events, IVR look-ups), what
//! the operator writes (plugins.toml, URL grants), what a plugin passes (state keys), and the
//! component files themselves.
//!
//! Property-based (proptest) rather than coverage-guided: cargo-fuzz needs a nightly
//! toolchain and this workspace builds on stable only. Each property is "never panics, and a
//! refusal says what is wrong". The number of cases per property comes from PROPTEST_CASES;
//! the defaults below keep each target to roughly 10-30 s in a debug build on a 2-core
//! machine. Run longer with e.g.
//!
//! ```sh
//! PROPTEST_CASES=1000000 cargo test -p pbx-host --release --test fuzz_inputs
//! FUZZ_BIT_FLIPS=5000 cargo test -p pbx-host --release --test fuzz_inputs corrupt
//! FUZZ_TRUNCATION_STEP=1 cargo test -p pbx-host --release --test fuzz_inputs truncated
//! ```
//!
//! A failure prints the minimal input proptest shrank it to; a regression file is not kept
//! (`failure_persistence: None`): paste the input into a unit test instead.

use std::path::Path;

use pbx_host::capabilities::UrlPattern;
use pbx_host::capabilities::state::check_key;
use pbx_host::events::{CallEvent, IvrLookup};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

/// Cases per property: PROPTEST_CASES, or `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(default_cases: u32) -> Config {
    Config {
        cases: cases(default_cases),
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------------
// (a) call events and IVR look-ups

fn valid_event() -> Value {
    json!({
        "tenant": "acme",
        "event_id": "call-1-ended",
        "kind": "ended",
        "occurred_at": 1_700_000_000_000i64,
        "call": {
            "call_id": "call-1",
            "direction": "inbound",
            "caller": "+81312345678",
            "callee": "0501111222",
            "agent": {"extension": "201", "user_id": "u-201", "user_name": "Sato", "user_email": "sato@example.jp"},
            "queue": "support",
            "dial_started_at": 1_700_000_000_000i64,
            "answered_at": 1_700_000_005_000i64,
            "ended_at": 1_700_000_065_000i64,
            "duration_seconds": 60,
            "outcome": "answered",
            "transfer": {"kind": "external", "target_number": "0312345679"},
            "recording_url": "https://rec.example/1",
            "predictive": {"answered_by_callee": true, "answered_by_agent": false},
            "crm_record_id": "003000000000001"
        },
        "memo": ["sales", "follow-up"],
        "transcript": {"text": "hello", "summary": "greeting"}
    })
}

fn valid_ivr() -> Value {
    json!({
        "tenant": "acme",
        "ivr_name": "main",
        "digits": "1",
        "deadline_ms": 1500,
        "plugin": "ivr-greeting",
        "call": valid_event()["call"].clone()
    })
}

/// Fields a validation error may name (a prefix of its dotted path).
const EVENT_FIELDS: &[&str] = &[
    "tenant",
    "event_id",
    "call.",
    "memo",
    "transcript.",
    "deadline_ms",
    "ivr_name",
];

/// Any JSON value, with long strings and deep-ish nesting.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::String),
        (0usize..300_000).prop_map(|n| Value::String("x".repeat(n))),
        Just(json!("")),
        Just(json!(" ")),
        Just(json!(-1)),
        Just(json!(u64::MAX)),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every (object) path in `v`, as a list of keys.
fn paths(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if let Value::Object(m) = v {
        for (k, child) in m {
            prefix.push(k.clone());
            out.push(prefix.clone());
            paths(child, prefix, out);
            prefix.pop();
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, Value),
    Remove(usize),
    AddUnknown(usize, String, Value),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any_json()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        any::<usize>().prop_map(Mutation::Remove),
        (any::<usize>(), "[a-z_]{1,10}", any_json())
            .prop_map(|(i, k, v)| Mutation::AddUnknown(i, k, v)),
    ]
}

fn apply(mut v: Value, muts: &[Mutation]) -> Value {
    for m in muts {
        let mut all = Vec::new();
        paths(&v, &mut Vec::new(), &mut all);
        if all.is_empty() {
            break;
        }
        let (i, op) = match m {
            Mutation::Replace(i, _) | Mutation::Remove(i) | Mutation::AddUnknown(i, _, _) => {
                (*i % all.len(), m)
            }
        };
        let path = &all[i];
        let (last, parents) = path.split_last().unwrap();
        let mut node = &mut v;
        for p in parents {
            node = &mut node[p.as_str()];
        }
        let Some(obj) = node.as_object_mut() else {
            continue;
        };
        match op {
            Mutation::Replace(_, new) => {
                obj.insert(last.clone(), new.clone());
            }
            Mutation::Remove(_) => {
                obj.remove(last);
            }
            Mutation::AddUnknown(_, k, new) => {
                obj.insert(k.clone(), new.clone());
            }
        }
    }
    v
}

/// Decoding and validating never panic; a decoding error has a position, a validation
/// error names a known field.
fn check_event_bytes(bytes: &[u8]) {
    match serde_json::from_slice::<CallEvent>(bytes) {
        Ok(e) => {
            if let Err(err) = e.validate() {
                assert!(
                    EVENT_FIELDS.iter().any(|f| err.field.starts_with(f)),
                    "validation error names no field: {err:?}"
                );
                assert!(!err.message.is_empty());
            }
        }
        Err(e) => assert!(e.line() >= 1 && !e.to_string().is_empty(), "{e}"),
    }
    match serde_json::from_slice::<IvrLookup>(bytes) {
        Ok(l) => {
            if let Err(err) = l.validate() {
                assert!(
                    EVENT_FIELDS.iter().any(|f| err.field.starts_with(f)),
                    "validation error names no field: {err:?}"
                );
            }
        }
        Err(e) => assert!(e.line() >= 1, "{e}"),
    }
}

#[test]
fn the_unmutated_inputs_are_valid() {
    let e: CallEvent = serde_json::from_value(valid_event()).unwrap();
    e.validate().unwrap();
    let l: IvrLookup = serde_json::from_value(valid_ivr()).unwrap();
    l.validate().unwrap();
}

#[test]
fn arbitrary_bytes_into_events_and_ivr_lookups_never_panic() {
    let mut runner = TestRunner::new(config(20_000));
    runner
        .run(&prop::collection::vec(any::<u8>(), 0..2048), |bytes| {
            check_event_bytes(&bytes);
            Ok(())
        })
        .unwrap();
}

#[test]
fn mutated_json_events_and_ivr_lookups_are_refused_with_a_named_field() {
    let mut runner = TestRunner::new(config(6_000));
    let strategy = (
        any::<bool>(),
        prop::collection::vec(mutation(), 1..5),
        any::<Option<u16>>(),
    );
    runner
        .run(&strategy, |(ivr, muts, cut)| {
            let base = if ivr { valid_ivr() } else { valid_event() };
            let mutated = apply(base, &muts);
            let mut bytes = serde_json::to_vec(&mutated).unwrap();
            check_event_bytes(&bytes);
            // and the same text cut short
            if let Some(cut) = cut {
                bytes.truncate(usize::from(cut) % (bytes.len() + 1));
                check_event_bytes(&bytes);
            }
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// (b) plugins.toml

const VALID_TOML: &str = r#"
[host]
allow_private_networks = ["127.0.0.0/8"]

[plugins.history-logger]
component = "plugins/history_logger.wasm"
events = ["ended", "memo-updated"]
schedules = { sync = 86400 }
[plugins.history-logger.grants]
http = ["https://*.my.salesforce.com", "{config.login_url}"]
secrets = ["salesforce.password"]
state = true
contacts = "read"
[plugins.history-logger.limits]
cpu_ms = 200
memory_mib = 32
wall_ms = 20000

[tenants.acme]
default_country = "JP"
ivr_fallback = { speech = "hold", route = "queue:reception" }
[tenants.acme.plugins.history-logger]
config = { login_url = "https://acme.my.salesforce.com", username = "admin" }
"#;

/// Parse `text`; never panics; when the text is not even TOML, every error has a line.
fn check_toml(text: &str) {
    let result = pbx_host::config::parse_str(Path::new("plugins.toml"), text);
    let syntax_error = toml::from_str::<toml::Table>(text).is_err();
    if let Err(errors) = result {
        assert!(!errors.is_empty());
        for e in &errors {
            assert!(!e.message.is_empty(), "{e:?}");
            // The whole message renders.
            let _ = e.to_string();
        }
        if syntax_error {
            assert!(
                errors.iter().all(|e| e.line.is_some_and(|l| l >= 1)),
                "a syntax error without a line: {errors:?}\n--- input ---\n{text}"
            );
        }
    } else {
        assert!(!syntax_error, "accepted text that is not TOML:\n{text}");
    }
}

#[test]
fn the_unmutated_toml_is_valid() {
    pbx_host::config::parse_str(Path::new("plugins.toml"), VALID_TOML).unwrap();
}

#[test]
fn arbitrary_toml_text_never_panics_and_syntax_errors_have_a_line() {
    let mut runner = TestRunner::new(config(10_000));
    runner
        .run(&"(?s).{0,400}", |text| {
            check_toml(&text);
            Ok(())
        })
        .unwrap();
}

#[test]
fn mutated_plugins_toml_never_panics_and_syntax_errors_have_a_line() {
    let mut runner = TestRunner::new(config(4_000));
    // Splice tokens that matter to TOML (and to the validator) into a valid file.
    let token = prop_oneof![
        Just("[".to_string()),
        Just("]".to_string()),
        Just("[[".to_string()),
        Just("\"".to_string()),
        Just("'''".to_string()),
        Just("=".to_string()),
        Just("\n".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just(",".to_string()),
        Just("#".to_string()),
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("99999999999999999999".to_string()),
        Just("{config.".to_string()),
        Just("*.".to_string()),
        Just("..".to_string()),
        Just("[tenants.x.plugins.y]\n".to_string()),
        Just("password = \"hunter2\"\n".to_string()),
        "(?s).{0,12}",
    ];
    let edit = (any::<usize>(), 0usize..12, token);
    runner
        .run(&prop::collection::vec(edit, 1..6), |edits| {
            let mut text = VALID_TOML.to_string();
            for (at, remove, insert) in edits {
                let mut at = at % (text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                let mut end = (at + remove).min(text.len());
                while !text.is_char_boundary(end) {
                    end += 1;
                }
                text.replace_range(at..end, &insert);
            }
            check_toml(&text);
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// (c) URL patterns, (d) state keys

#[test]
fn arbitrary_url_patterns_never_panic() {
    let mut runner = TestRunner::new(config(30_000));
    let pattern = prop_oneof![
        ".{0,60}",
        // Pattern-shaped: scheme, host with wildcards, brackets, ports and placeholders.
        (
            prop_oneof![
                Just("https://"),
                Just("http://"),
                Just("ftp://"),
                Just(""),
                Just("HTTPS://")
            ],
            "(\\*\\.|\\[|\\]|:|\\{config\\.|\\}|[a-z0-9.-]){0,20}",
            "(:[0-9]{0,6})?",
            "(/[a-z*{}.]{0,8}){0,3}",
        )
            .prop_map(|(s, h, p, path)| format!("{s}{h}{p}{path}")),
    ];
    runner
        .run(&pattern, |p| {
            let _ = UrlPattern::parse_template(&p);
            if let Ok(parsed) = UrlPattern::parse(&p) {
                // A parsed pattern matches URLs without panicking.
                for u in [
                    "https://a.example.com/x",
                    "http://[::1]/",
                    "http://127.0.0.1:8080/a/b",
                ] {
                    let _ = parsed.matches(&url::Url::parse(u).unwrap());
                }
            }
            let _ = UrlPattern::expand(&p, &json!({"login_url": p.clone(), "x": "https://a.b.c"}));
            Ok(())
        })
        .unwrap();
}

#[test]
fn arbitrary_state_keys_never_panic_and_escapes_are_refused() {
    let mut runner = TestRunner::new(config(50_000));
    let key = prop_oneof![".{0,300}", "(\\.\\.|/|\\\\|[a-z]|:|\u{0}|\n){0,12}",];
    runner
        .run(&key, |k| {
            let ok = check_key(&k).is_ok();
            if ok {
                prop_assert!(!k.is_empty() && k.len() <= 256);
                prop_assert!(!k.starts_with('/'));
                prop_assert!(!k.split(['/', '\\']).any(|s| s == ".."), "{k:?}");
                prop_assert!(!k.chars().any(char::is_control), "{k:?}");
            }
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Component files

fn small_component() -> Option<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    std::fs::read(target.join("wasm32-wasip2/plugin/minimal_plugin.wasm")).ok()
}

fn runtime() -> pbx_host::runtime::Runtime {
    pbx_host::runtime::Runtime::new(
        &pbx_host::runtime::EngineOptions {
            max_instances: 4,
            ..Default::default()
        },
        None,
    )
    .unwrap()
}

/// Every truncation of a small component is refused with an error (a truncation that happens
/// to leave a complete component, e.g. one cut only in trailing custom sections, may load).
#[test]
fn truncated_components_are_refused_never_panic() {
    let Some(wasm) = small_component() else {
        eprintln!("minimal_plugin.wasm is not built (cargo xtask plugins); skipped");
        return;
    };
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.wasm");
    // Every cut point in the first 4 KiB (the preamble and the first sections' headers), then
    // every FUZZ_TRUNCATION_STEP-th (default 4: ~20 s in debug; 1 tries all ~50 000 points,
    // ~80 s).
    let step: usize = std::env::var("FUZZ_TRUNCATION_STEP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
        .max(1);
    let head = 4096.min(wasm.len());
    let mut loaded = 0;
    for len in (0..head).chain((head..wasm.len()).step_by(step)) {
        std::fs::write(&path, &wasm[..len]).unwrap();
        match rt.load(&path) {
            Ok(_) => loaded += 1,
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    assert!(
        loaded <= 1 + wasm.len() / 1000,
        "{loaded} truncated components loaded"
    );
    std::fs::write(&path, &wasm).unwrap();
    assert!(rt.load(&path).is_ok(), "the whole component loads");
}

/// Random bit flips: an error or (rarely, a flip in a name or custom section) a component
/// that loads; never a panic.
#[test]
fn corrupt_components_are_refused_never_panic() {
    let Some(wasm) = small_component() else {
        eprintln!("minimal_plugin.wasm is not built (cargo xtask plugins); skipped");
        return;
    };
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flipped.wasm");
    let flips: u32 = std::env::var("FUZZ_BIT_FLIPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let mut runner = TestRunner::new(Config {
        cases: flips,
        failure_persistence: None,
        ..Config::default()
    });
    let len = wasm.len();
    runner
        .run(&prop::collection::vec((0..len, 0u8..8), 1..4), |flips| {
            let mut bytes = wasm.clone();
            for (at, bit) in flips {
                bytes[at] ^= 1 << bit;
            }
            std::fs::write(&path, &bytes).unwrap();
            if let Err(e) = rt.load(&path) {
                prop_assert!(!e.to_string().is_empty());
            }
            Ok(())
        })
        .unwrap();
}
