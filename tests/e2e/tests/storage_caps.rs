//! Everything a plugin can make the host store or send is capped (issue 11, item 3 and the
//! second half of item 6): the lines the host writes on a plugin's behalf count against the
//! invocation's log cap and are summarised beyond it; the phone book has a total (`too-large`
//! when full) and a length for every field (`invalid` naming the field over it), with nothing
//! of the batch written; a returned value
//! is measured by the JSON that reaches the PBX; one plugin cannot replace or delete another's
//! phone-book entries unless the operator grants it; old log lines and dead letters are pruned.
//! Real components (the probe), a real SQLite file.

use pbx_e2e::TestEnv;
use pbx_host::store::{Journal, LogEntry, NewDelivery, Retention, SqliteStorage, Storage};
use serde_json::{Value, json};

const TOML: &str = r#"
[host]
contacts_per_tenant = 1500

[plugins.probe]
component = "@PLUGINS@/probe_plugin.wasm"
events = []
[plugins.probe.grants]
secrets = ["probe.token"]
state = true
contacts = "read-write"
[plugins.probe.limits]
cpu_ms = 5000
wall_ms = 20000
log_lines = 20

[plugins.probe2]
component = "@PLUGINS@/probe_plugin.wasm"
events = []
[plugins.probe2.grants]
contacts = "read-write"

[plugins.merger]
component = "@PLUGINS@/probe_plugin.wasm"
events = []
[plugins.merger.grants]
contacts = "read-write-all"

[tenants.acme]
ivr_fallback = { speech = "Please hold", route = "queue:main" }
[tenants.acme.plugins.probe]
config = {}
[tenants.acme.plugins.probe2]
config = {}
[tenants.acme.plugins.merger]
config = {}
"#;

/// Ask `plugin` of acme for an IVR decision with `config` as its settings.
async fn ivr(env: &TestEnv, plugin: &str, config: Value) -> Value {
    env.host.set_config("acme", plugin, config).unwrap();
    let (status, decision) = env
        .post(
            "/v1/ivr",
            &json!({"tenant": "acme", "plugin": plugin, "deadline_ms": 20000,
                    "call": {"call_id": "ivr-1", "direction": "inbound", "caller": "0312345678",
                             "callee": "0501111222", "dial_started_at": 0}}),
        )
        .await;
    assert_eq!(status, 200, "{decision}");
    decision
}

/// The ops' results of a probe decision, in order.
async fn run_ops(env: &TestEnv, plugin: &str, ops: Value) -> Vec<String> {
    let decision = ivr(env, plugin, json!({ "ops": ops })).await;
    assert_eq!(decision["source"], "plugin", "{decision}");
    decision["variables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| kv[1].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_host_lines_past_the_log_cap_are_summarised_not_stored() {
    let env = TestEnv::start(TOML, "http://unused.invalid").await;
    // 3,000 refusals (an undeclared secret) and 3,000 "secret not set" lines in one
    // invocation whose log cap is 20 lines.
    let r = run_ops(
        &env,
        "probe",
        json!([
            {"op": "repeat", "times": 3000, "do": {"op": "secret", "name": "other.secret"}},
            {"op": "repeat", "times": 3000, "do": {"op": "secret", "name": "probe.token"}},
        ]),
    )
    .await;
    assert!(r[0].starts_with("ok:3000:err:denied:"), "{r:?}");
    assert!(r[1].starts_with("ok:3000:err:not-set:"), "{r:?}");
    let log = env.log_lines("acme").await;
    // 20 lines within the cap and one summary per kind: not 6,000 rows.
    assert!(
        log.len() <= 24,
        "{} rows stored: {:#?}",
        log.len(),
        &log[..30.min(log.len())]
    );
    assert_eq!(
        log.iter()
            .filter(|l| l.contains("denied: secrets: secret 'other.secret'"))
            .count(),
        20,
        "{log:#?}"
    );
    assert!(
        log.iter().any(|l| l
            == "warn probe: 2,980 more refusals of the same kind (denied: secrets) not stored \
                (limit 20 lines per invocation)"),
        "{log:#?}"
    );
    assert!(
        log.iter().any(|l| l
            == "warn probe: 3,000 more host lines of the same kind (secret) not stored \
                (limit 20 lines per invocation)"),
        "{log:#?}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_phone_book_answers_too_large_and_nothing_of_the_batch_is_written() {
    let env = TestEnv::start(TOML, "http://unused.invalid").await;
    let count = || env.host.storage().contacts_count("acme").unwrap();
    // Batches of 1,000 against a cap of 1,500: the second batch does not fit, whole.
    let r = run_ops(
        &env,
        "probe",
        json!([{"op": "contacts-fill", "prefix": "a/", "count": 2500}]),
    )
    .await;
    assert_eq!(r, ["err:too-large:1500 after 1000"]);
    assert_eq!(count(), 1000, "nothing of the refused batch was written");
    let r = run_ops(
        &env,
        "probe",
        json!([
            {"op": "contacts-fill", "prefix": "b/", "count": 500},
            {"op": "contacts-fill", "prefix": "c/", "count": 1},
            // Replacing entries of a full phone book still fits.
            {"op": "contacts-fill", "prefix": "a/", "count": 1000},
        ]),
    )
    .await;
    assert_eq!(r, ["ok:500", "err:too-large:1500 after 0", "ok:1000"]);
    assert_eq!(count(), 1500);
    let log = env.log_lines("acme").await;
    assert!(
        log.iter().any(|l| l.contains(
            "contacts: the phone book is full: at most 1500 entries per tenant ([host] contacts_per_tenant)"
        )),
        "{log:#?}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_long_fields_and_too_many_phones_are_invalid_naming_the_field_with_nothing_stored() {
    let env = TestEnv::start(TOML, "http://unused.invalid").await;
    let fill = |field: &str, bytes: usize| {
        json!({"op": "contacts-fill", "prefix": format!("{field}/"), "count": 1,
               "field": field, "bytes": bytes})
    };
    let r = run_ops(
        &env,
        "probe",
        json!([
            fill("name", 1025),
            fill("company", 1025),
            fill("email", 1025),
            fill("label", 257),
            fill("number", 257),
            fill("record-type", 257),
            fill("external-id", 257),
            fill("account-id", 257),
            {"op": "contacts-fill", "prefix": "phones/", "count": 1, "phones": 11},
            // At the caps: stored.
            fill("name", 1024),
            fill("label", 256),
            {"op": "contacts-fill", "prefix": "ten/", "count": 1, "phones": 10},
        ]),
    )
    .await;
    let refused = [
        ("name", 1024),
        ("company", 1024),
        ("email", 1024),
        ("a phone label", 256),
        ("a phone number", 256),
        ("record-type", 256),
        ("external-id", 256),
        ("account-id", 256),
        ("the number of phones", 10),
    ];
    assert_eq!(r.len(), refused.len() + 3, "{r:#?}");
    for ((field, cap), got) in refused.iter().zip(&r) {
        assert!(
            got.starts_with("err:invalid:")
                && got.contains(&format!("{field} is over the limit of {cap}"))
                && got.ends_with(" after 0"),
            "{field}: {got}"
        );
    }
    assert_eq!(&r[refused.len()..], ["ok:1", "ok:1", "ok:1"]);
    assert_eq!(
        env.host.storage().contacts_count("acme").unwrap(),
        3,
        "only the entries within the caps"
    );
    let log = env.log_lines("acme").await;
    assert!(
        log.iter().any(
            |l| l.contains("contacts: entry 'label/0': a phone label is over the limit of 256")
        ),
        "{log:#?}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ivr_decision_of_many_empty_variables_is_refused_by_its_encoded_size() {
    let env = TestEnv::start(TOML, "http://unused.invalid").await;
    // 100,000 variables without a byte of text: 800,000 bytes of JSON for the PBX.
    let decision = ivr(&env, "probe", json!({"ops": [], "empty_vars": 100_000})).await;
    assert_eq!(
        decision["source"],
        "fallback",
        "{}",
        &decision.to_string()[..200]
    );
    let reason = decision["reason"].as_str().unwrap();
    assert!(
        reason.ends_with("over the limit of 65536"),
        "refused by return_bytes: {reason}"
    );
    assert!(
        decision.to_string().len() < 1000,
        "the PBX got the fallback only"
    );
    // A decision within the limit still reaches the PBX.
    let decision = ivr(&env, "probe", json!({"ops": [], "empty_vars": 100})).await;
    assert_eq!(decision["source"], "plugin", "{decision}");
    assert_eq!(decision["variables"].as_array().unwrap().len(), 100);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_plugin_cannot_overwrite_or_delete_the_first_plugins_contact() {
    let env = TestEnv::start(TOML, "http://unused.invalid").await;
    let entry = |name: &str| {
        json!({"op": "contacts-upsert", "entries": [{"external_id": "Contact/1", "name": name,
               "phones": [{"number": "03-1234-5678"}]}]})
    };
    let stored_name = || {
        env.host
            .storage()
            .contacts_get("acme", "Contact/1")
            .unwrap()
            .map(|c| (c.name, c.plugin))
    };
    assert_eq!(
        run_ops(&env, "probe", json!([entry("Original")])).await,
        ["ok:1"]
    );

    let r = run_ops(
        &env,
        "probe2",
        json!([
            entry("Hijacked"),
            {"op": "contacts-delete", "id": "Contact/1"},
            {"op": "contacts-get", "id": "Contact/1"},
        ]),
    )
    .await;
    assert!(r[0].starts_with("err:denied:"), "{r:?}");
    assert!(r[0].contains("written by another plugin"), "{r:?}");
    assert!(r[1].starts_with("err:denied:"), "{r:?}");
    assert!(
        r[2].contains("\"name\":\"Original\""),
        "it may still read it: {r:?}"
    );
    assert_eq!(stored_name(), Some(("Original".into(), "probe".into())));

    // The operator's explicit grant: allowed; the entry stays the first plugin's.
    assert_eq!(
        run_ops(&env, "merger", json!([entry("Merged")])).await,
        ["ok:1"]
    );
    assert_eq!(stored_name(), Some(("Merged".into(), "probe".into())));
    // Its owner goes on updating it.
    assert_eq!(
        run_ops(&env, "probe", json!([entry("Updated")])).await,
        ["ok:1"]
    );
    assert_eq!(stored_name(), Some(("Updated".into(), "probe".into())));
    let log = env.log_lines("acme").await;
    assert!(
        log.iter().any(|l| l.starts_with(
            "warn probe2: denied: contacts: entry 'Contact/1' was written by another plugin"
        )),
        "{log:#?}"
    );
    env.stop().await;
}

#[test]
fn old_log_lines_and_dead_letters_are_pruned_from_the_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = pbx_host::config::parse_str(
        std::path::Path::new("plugins.toml"),
        "[host]\nlog_retention_days = 7\nlog_rows_per_tenant = 50\ndead_letter_retention_days = 30\n",
    )
    .unwrap();
    let storage: std::sync::Arc<dyn Storage> =
        std::sync::Arc::new(SqliteStorage::open(&dir.path().join("host.sqlite3")).unwrap());
    let journal = Journal::new(storage.clone());
    journal.set_retention(Retention::from_host(&config.host));
    let day: i64 = 86_400_000;
    let now = pbx_host::clock::now_ms();
    let line = |tenant: &str, at: i64| LogEntry {
        id: 0,
        tenant: tenant.into(),
        plugin: "probe".into(),
        invocation: "inv".into(),
        at,
        level: "warn".into(),
        message: "denied: secrets: ...".into(),
    };
    // acme: 40 lines of 10 days ago and 80 of today; globex: 30 of today.
    let mut lines: Vec<LogEntry> = (0..40).map(|i| line("acme", now - 10 * day + i)).collect();
    lines.extend((0..80).map(|i| line("acme", now + i)));
    lines.extend((0..30).map(|i| line("globex", now + i)));
    journal.log(lines);
    // A dead letter (it dies now) and a pending delivery.
    let ids = storage
        .enqueue(
            &["c1", "c2"].map(|call| NewDelivery {
                tenant: "acme".into(),
                plugin: "probe".into(),
                call_id: call.into(),
                event_id: format!("{call}-ended"),
                payload: "{}".into(),
            }),
            now,
        )
        .unwrap();
    storage.dead_letter(ids[0], "gave up").unwrap();

    // Today: the old lines and acme's surplus go, the dead letter stays.
    let pruned = journal.prune(now + 1000).unwrap();
    assert_eq!((pruned.log_rows, pruned.dead_letters), (40 + 30, 0));
    assert_eq!(storage.log_read("acme", 1000).unwrap().len(), 50);
    assert_eq!(storage.log_read("globex", 1000).unwrap().len(), 30);
    let dead = |s: &dyn Storage| {
        s.deliveries("acme", Some(pbx_host::store::DeliveryStatus::Dead), 10)
            .unwrap()
            .len()
    };
    assert_eq!(dead(&*storage), 1);
    // 31 days later: every line and the dead letter are gone; the pending delivery is not.
    let pruned = journal.prune(now + 31 * day).unwrap();
    assert_eq!((pruned.log_rows, pruned.dead_letters), (50 + 30, 1));
    assert_eq!(dead(&*storage), 0);
    assert_eq!(storage.pending_count().unwrap(), 1);
}
