//! Contact import (SPEC C-1..C-4, A-4): Salesforce records into the tenant's phone book, through
//! the real host and the `contact-import` component, against the stand-in over sockets.
//!
//! Schedules run deterministically with `run_schedule`; the scheduler's own first run is held
//! off by marking the schedule as just run (except in the test that shows the scheduler).

use std::time::{Duration, Instant};

use chrono::{DateTime, Timelike, Utc};
use pbx_e2e::{TestEnv, standin};
use pbx_host::store::ContactRow;
use serde_json::{Value, json};
use sf_standin::{Fault, FaultKind, Org, OrgSpec};

const PLUGIN: &str = "contact-import";

fn toml(tenants: &[(&str, &str, &str)]) -> String {
    let mut t = String::from(
        r#"
[host]
allow_private_networks = ["127.0.0.0/8"]

[plugins.contact-import]
component = "@PLUGINS@/contact_import.wasm"
schedules = { sync = 86400 }
[plugins.contact-import.grants]
http = ["{config.login_url}", "{config.instance_url}"]
secrets = ["salesforce.password", "salesforce.security_token", "salesforce.client_secret", "salesforce.refresh_token", "salesforce.private_key"]
state = true
contacts = "read-write"
[plugins.contact-import.limits]
wall_ms = 120000
cpu_ms = 20000
memory_mib = 64
http_requests = 200
"#,
    );
    for (tenant, extra_config, tenant_extra) in tenants {
        t.push_str(&format!(
            r#"
[tenants.{tenant}]
default_country = "JP"
[tenants.{tenant}.plugins.contact-import]
config = {{ login_url = "@STANDIN@", auth = "password", username = "admin@{tenant}.example", client_id = "{client}"{extra_config} }}
{tenant_extra}
"#,
            client = client_id(tenant),
        ));
    }
    t
}

fn client_id(tenant: &str) -> String {
    format!("{}_CONNECTED_APP", tenant.to_ascii_uppercase())
}

fn org_spec(tenant: &str) -> OrgSpec {
    OrgSpec {
        username: format!("admin@{tenant}.example"),
        password: "pw-secret-1".into(),
        security_token: "TOKENSECRET".into(),
        client_id: client_id(tenant),
        client_secret: "client-secret-1".into(),
        ..OrgSpec::default()
    }
}

async fn set_credentials(env: &TestEnv, tenant: &str, password: &str, token: &str) {
    env.set_secret(tenant, PLUGIN, "salesforce.password", password)
        .await;
    env.set_secret(tenant, PLUGIN, "salesforce.security_token", token)
        .await;
    env.set_secret(
        tenant,
        PLUGIN,
        "salesforce.client_secret",
        "client-secret-1",
    )
    .await;
}

/// A host for `tenants`, credentials set, the scheduler's own first run held off.
async fn start(sf_url: &str, tenants: &[(&str, &str, &str)]) -> TestEnv {
    let env = TestEnv::start(&toml(tenants), sf_url).await;
    for (tenant, _, _) in tenants {
        env.host
            .storage()
            .schedule_mark_run(tenant, PLUGIN, "sync", Utc::now().timestamp_millis())
            .expect("mark run");
        set_credentials(&env, tenant, "pw-secret-1", "TOKENSECRET").await;
    }
    env
}

async fn sync(env: &TestEnv, tenant: &str) -> pbx_host::runtime::InvocationReport {
    env.host
        .run_schedule(tenant, PLUGIN, "sync")
        .await
        .expect("schedule exists")
}

async fn sync_ok(env: &TestEnv, tenant: &str) {
    let report = sync(env, tenant).await;
    assert!(
        report.outcome.is_ok(),
        "sync failed: {:?}\nlog: {:#?}",
        report.outcome,
        env.log_lines(tenant).await
    );
}

fn row(env: &TestEnv, tenant: &str, external_id: &str) -> Option<ContactRow> {
    env.host
        .storage()
        .contacts_get(tenant, external_id)
        .expect("storage")
}

fn count(env: &TestEnv, tenant: &str) -> u64 {
    env.host.storage().contacts_count(tenant).expect("storage")
}

fn lookup(env: &TestEnv, tenant: &str, e164: &str) -> Vec<String> {
    env.host
        .storage()
        .contacts_lookup(tenant, e164)
        .expect("storage")
        .into_iter()
        .map(|r| r.external_id)
        .collect()
}

fn phones(r: &ContactRow) -> Vec<(String, String, Option<String>)> {
    r.phones
        .iter()
        .map(|p| (p.label.clone(), p.number.clone(), p.e164.clone()))
        .collect()
}

fn ph(label: &str, number: &str, e164: &str) -> (String, String, Option<String>) {
    (label.into(), number.into(), Some(e164.into()))
}

fn modified_ms(org: &Org, sobject: &str, id: &str) -> Option<i64> {
    let rec = org.get(sobject, id).expect("record");
    let s = rec["LastModifiedDate"].as_str().expect("LastModifiedDate");
    DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z")
        .ok()
        .map(|d| d.timestamp_millis())
}

/// Requests after login that are not GETs: writes to Salesforce.
fn writes(org: &Org) -> Vec<String> {
    org.request_log()
        .into_iter()
        .filter(|r| r.method != "GET" && !r.path.contains("/services/oauth2/token"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c1_imports_any_set_of_objects() {
    let sf = standin().await;
    let acme = sf.add_org(org_spec("acme"));
    let globex = sf.add_org(org_spec("globex"));
    for org in [&acme, &globex] {
        org.insert(
            "Contact",
            json!({"LastName": "Contact One", "Phone": "03-1111-0001"}),
        );
        org.insert(
            "Account",
            json!({"Name": "Account One", "Phone": "03-1111-0002"}),
        );
        org.insert(
            "Lead",
            json!({"LastName": "Lead One", "Company": "L Co", "Phone": "03-1111-0003"}),
        );
    }
    let env = start(
        &sf.base_url(),
        &[
            ("acme", r#", objects = ["Lead", "Account"]"#, ""),
            ("globex", "", ""),
        ],
    )
    .await;
    sync_ok(&env, "acme").await;
    sync_ok(&env, "globex").await;

    assert_eq!(count(&env, "acme"), 2, "Lead and Account only");
    assert_eq!(lookup(&env, "acme", "+81311110001"), Vec::<String>::new());
    assert_eq!(lookup(&env, "acme", "+81311110002").len(), 1);
    assert_eq!(lookup(&env, "acme", "+81311110003").len(), 1);
    let queried: Vec<String> = acme
        .request_log()
        .into_iter()
        .filter(|r| r.path.contains("/query"))
        .map(|r| r.path)
        .collect();
    assert_eq!(
        queried.len(),
        2,
        "one query per configured object: {queried:?}"
    );
    assert!(
        queried.iter().all(|p| !p.contains("FROM+Contact")),
        "{queried:?}"
    );

    assert_eq!(
        count(&env, "globex"),
        3,
        "default objects: Contact, Account, Lead"
    );
    let mut types: Vec<String> = ["+81311110001", "+81311110002", "+81311110003"]
        .iter()
        .flat_map(|n| {
            env.host
                .storage()
                .contacts_lookup("globex", n)
                .expect("lookup")
        })
        .map(|r| r.record_type)
        .collect();
    types.sort();
    assert_eq!(types, vec!["Account", "Contact", "Lead"]);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c1_person_accounts() {
    let sf = standin().await;
    let acme = sf.add_org(OrgSpec {
        person_accounts: true,
        ..org_spec("acme")
    });
    let person = acme.insert(
        "Account",
        json!({"FirstName": "Hanako", "LastName": "Sato", "Phone": "03-2222-0001", "PersonMobilePhone": "090-2222-0002"}),
    );
    let business = acme.insert(
        "Account",
        json!({"Name": "Sato Shoji", "Phone": "03-2222-0003"}),
    );
    let env = start(
        &sf.base_url(),
        &[(
            "acme",
            r#", objects = ["Account"], person_accounts = true"#,
            "",
        )],
    )
    .await;
    sync_ok(&env, "acme").await;

    let p = row(&env, "acme", &format!("PersonAccount/{person}")).expect("person account");
    assert_eq!(p.record_type, "PersonAccount");
    assert_eq!(p.name, "Hanako Sato");
    assert_eq!(p.company.as_deref(), Some("Hanako Sato"));
    assert_eq!(
        phones(&p),
        vec![
            ph("Phone", "03-2222-0001", "+81322220001"),
            ph("PersonMobilePhone", "090-2222-0002", "+819022220002")
        ]
    );
    assert_eq!(p.account_id.as_deref(), Some(person.as_str()));
    assert!(row(&env, "acme", &format!("Account/{person}")).is_none());
    let b = row(&env, "acme", &format!("Account/{business}")).expect("business account");
    assert_eq!(b.record_type, "Account");
    assert_eq!(b.name, "Sato Shoji");
    assert_eq!(count(&env, "acme"), 2);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c2_mapping_per_object() {
    let sf = standin().await;
    let acme = sf.add_org(org_spec("acme"));
    let account = acme.insert(
        "Account",
        json!({"Name": "Yamada Trading", "Phone": "03-1234-0000"}),
    );
    let contact = acme.insert(
        "Contact",
        json!({"FirstName": "Taro", "LastName": "Yamada", "AccountId": account,
               "Email": "taro@yamada.example", "Phone": "03-1234-5678", "MobilePhone": "090-1111-2222",
               "HomePhone": "(03) 5555 6666", "OtherPhone": "+81 3 7777 8888"}),
    );
    let lead = acme.insert(
        "Lead",
        json!({"FirstName": "Hanako", "LastName": "Suzuki", "Company": "Suzuki Shoji",
               "Email": "hanako@suzuki.example", "Phone": "06-1234-5678", "MobilePhone": "080-3333-4444"}),
    );
    let env = start(&sf.base_url(), &[("acme", "", "")]).await;
    sync_ok(&env, "acme").await;
    assert_eq!(count(&env, "acme"), 3);

    let c = row(&env, "acme", &format!("Contact/{contact}")).expect("contact");
    assert_eq!(c.record_type, "Contact");
    assert_eq!(c.name, "Taro Yamada");
    assert_eq!(c.company.as_deref(), Some("Yamada Trading"));
    assert_eq!(c.email.as_deref(), Some("taro@yamada.example"));
    assert_eq!(
        phones(&c),
        vec![
            ph("Phone", "03-1234-5678", "+81312345678"),
            ph("MobilePhone", "090-1111-2222", "+819011112222"),
            ph("HomePhone", "(03) 5555 6666", "+81355556666"),
            ph("OtherPhone", "+81 3 7777 8888", "+81377778888"),
        ]
    );
    assert_eq!(c.account_id.as_deref(), Some(account.as_str()));
    assert_eq!(c.modified_at, modified_ms(&acme, "Contact", &contact));
    assert_eq!(c.plugin, PLUGIN);

    let l = row(&env, "acme", &format!("Lead/{lead}")).expect("lead");
    assert_eq!(l.record_type, "Lead");
    assert_eq!(l.name, "Hanako Suzuki");
    assert_eq!(l.company.as_deref(), Some("Suzuki Shoji"));
    assert_eq!(l.email.as_deref(), Some("hanako@suzuki.example"));
    assert_eq!(
        phones(&l),
        vec![
            ph("Phone", "06-1234-5678", "+81612345678"),
            ph("MobilePhone", "080-3333-4444", "+818033334444"),
        ]
    );
    assert_eq!(l.account_id, None);
    assert_eq!(l.modified_at, modified_ms(&acme, "Lead", &lead));

    let a = row(&env, "acme", &format!("Account/{account}")).expect("account");
    assert_eq!(a.record_type, "Account");
    assert_eq!(a.name, "Yamada Trading");
    assert_eq!(a.company.as_deref(), Some("Yamada Trading"));
    assert_eq!(a.email, None);
    assert_eq!(
        phones(&a),
        vec![ph("Phone", "03-1234-0000", "+81312340000")]
    );
    assert_eq!(a.account_id.as_deref(), Some(account.as_str()));
    assert_eq!(a.modified_at, modified_ms(&acme, "Account", &account));

    // The caller-name display finds the Contact by any written form of its number.
    assert_eq!(
        lookup(&env, "acme", "+81312345678"),
        vec![format!("Contact/{contact}")]
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c3_only_records_with_a_name_and_no_write_back() {
    let sf = standin().await;
    let acme = sf.add_org(org_spec("acme"));
    let named = acme.insert(
        "Contact",
        json!({"LastName": "Named", "Phone": "03-3333-0001"}),
    );
    let nameless = acme.insert("Contact", json!({"Phone": "03-3333-0002"}));
    acme.insert("Account", json!({"Phone": "03-3333-0003"}));
    let open = acme.insert(
        "Lead",
        json!({"LastName": "Open", "Company": "O", "Phone": "03-3333-0004"}),
    );
    let converted = acme.insert(
        "Lead",
        json!({"LastName": "Converted", "Company": "C", "Phone": "03-3333-0005", "IsConverted": true}),
    );
    let env = start(&sf.base_url(), &[("acme", "", "")]).await;
    sync_ok(&env, "acme").await;

    assert_eq!(
        count(&env, "acme"),
        2,
        "only the named Contact and the open Lead"
    );
    assert!(row(&env, "acme", &format!("Contact/{named}")).is_some());
    assert!(row(&env, "acme", &format!("Contact/{nameless}")).is_none());
    assert!(row(&env, "acme", &format!("Lead/{open}")).is_some());
    assert!(row(&env, "acme", &format!("Lead/{converted}")).is_none());
    let log = env.log_lines("acme").await;
    assert!(
        log.iter()
            .any(|l| l.contains("Contact: 1 imported, 1 skipped without a Name; 0 deleted")),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("Account: 0 imported, 1 skipped without a Name; 0 deleted")),
        "{log:#?}"
    );

    // A Lead converted later leaves the phone book; edits in the PBX never reach Salesforce.
    acme.update("Lead", &open, json!({"IsConverted": true}));
    env.host
        .storage()
        .contacts_upsert(
            "acme",
            &[ContactRow {
                name: "Edited in the PBX".into(),
                ..row(&env, "acme", &format!("Contact/{named}")).expect("row")
            }],
        )
        .expect("local edit");
    tokio::time::sleep(Duration::from_millis(20)).await;
    sync_ok(&env, "acme").await;
    assert!(
        row(&env, "acme", &format!("Lead/{open}")).is_none(),
        "converted Lead removed"
    );
    assert_eq!(
        acme.get("Contact", &named).expect("contact")["LastName"],
        "Named"
    );
    assert_eq!(
        writes(&acme),
        Vec::<String>::new(),
        "no POST/PATCH/PUT/DELETE to Salesforce"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c4_ten_thousand_contacts_import_completely() {
    let sf = standin().await;
    let acme = sf.add_org(org_spec("acme"));
    for i in 0..10_000u32 {
        acme.insert(
            "Contact",
            json!({"FirstName": "Taro", "LastName": format!("Yamada {i:05}"),
                   "Phone": format!("03-{:04}-{:04}", 1000 + i / 10_000, i % 10_000)}),
        );
    }
    let env = start(
        &sf.base_url(),
        &[("acme", r#", objects = ["Contact"]"#, "")],
    )
    .await;
    acme.reset_counters();
    let t0 = Instant::now();
    sync_ok(&env, "acme").await;
    let took = t0.elapsed();

    assert_eq!(count(&env, "acme"), 10_000);
    assert!(!lookup(&env, "acme", "+81310000000").is_empty());
    assert!(!lookup(&env, "acme", "+81310009999").is_empty());
    let log = acme.request_log();
    let logins = log
        .iter()
        .filter(|r| r.path.contains("/oauth2/token"))
        .count();
    let first_pages = log.iter().filter(|r| r.path.contains("/query?q=")).count();
    let more_pages = log.iter().filter(|r| r.path.contains("/query/")).count();
    assert_eq!((logins, first_pages, more_pages), (1, 1, 4), "{log:#?}");
    assert_eq!(acme.api_calls(), 6, "login + 10,000 / 2,000 query pages");
    let lines = env.log_lines("acme").await;
    assert!(
        lines.iter().any(|l| l.contains(
            "Contact: 10,000 imported, 0 skipped without a Name; 0 deleted (first import complete: 10,000 imported, 0 skipped)"
        )),
        "{lines:#?}"
    );
    eprintln!("10,000 contacts: {} API calls, {took:?}", acme.api_calls());

    // The next sync finds nothing new: one query and one getDeleted, no login (session reused).
    acme.reset_counters();
    sync_ok(&env, "acme").await;
    let paths: Vec<String> = acme.request_log().into_iter().map(|r| r.path).collect();
    assert_eq!(paths.len(), 2, "{paths:?}");
    assert!(paths[0].contains("/query?q="), "{paths:?}");
    assert!(paths[1].contains("/sobjects/Contact/deleted/"), "{paths:?}");
    assert_eq!(count(&env, "acme"), 10_000);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c4_cutoff() {
    let sf = standin().await;
    let acme = sf.add_org(org_spec("acme"));
    let old = (Utc::now() - chrono::Duration::days(40))
        .format("%Y-%m-%dT%H:%M:%S.000+0000")
        .to_string();
    let recent = (Utc::now() - chrono::Duration::days(5))
        .format("%Y-%m-%dT%H:%M:%S.000+0000")
        .to_string();
    let stale = acme.insert(
        "Contact",
        json!({"LastName": "Stale", "Phone": "03-4444-0001", "LastModifiedDate": old}),
    );
    let fresh = acme.insert(
        "Contact",
        json!({"LastName": "Fresh", "Phone": "03-4444-0002", "LastModifiedDate": recent}),
    );
    let env = start(
        &sf.base_url(),
        &[("acme", r#", objects = ["Contact"], cutoff_days = 30"#, "")],
    )
    .await;
    sync_ok(&env, "acme").await;
    assert!(row(&env, "acme", &format!("Contact/{fresh}")).is_some());
    assert!(
        row(&env, "acme", &format!("Contact/{stale}")).is_none(),
        "modified 40 days ago"
    );
    assert_eq!(count(&env, "acme"), 1);

    // Once edited, the old record is recent and the incremental sync brings it in.
    tokio::time::sleep(Duration::from_millis(20)).await;
    acme.update("Contact", &stale, json!({"Phone": "03-4444-0003"}));
    sync_ok(&env, "acme").await;
    assert_eq!(
        lookup(&env, "acme", "+81344440003"),
        vec![format!("Contact/{stale}")]
    );
    assert_eq!(count(&env, "acme"), 2);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c4_change_and_deletion_reach_the_phone_book_on_next_sync() {
    let sf = standin().await;
    let acme = sf.add_org(org_spec("acme"));
    let changed = acme.insert(
        "Contact",
        json!({"LastName": "Changed", "Phone": "03-5555-0001"}),
    );
    let deleted = acme.insert(
        "Contact",
        json!({"LastName": "Deleted", "Phone": "03-5555-0002"}),
    );
    let master = acme.insert(
        "Contact",
        json!({"LastName": "Master", "Phone": "03-5555-0003"}),
    );
    let loser = acme.insert(
        "Contact",
        json!({"LastName": "Master dup", "Phone": "03-5555-0004"}),
    );
    let lead = acme.insert(
        "Lead",
        json!({"LastName": "Lead", "Company": "L", "Phone": "03-5555-0005"}),
    );
    let env = start(
        &sf.base_url(),
        &[("acme", r#", objects = ["Contact", "Lead"]"#, "")],
    )
    .await;
    let first_sync = Utc::now();
    sync_ok(&env, "acme").await;
    assert_eq!(count(&env, "acme"), 5);

    // In Salesforce: a changed number, a deletion (in a past minute, as the replication
    // resource reports only whole past minutes), a merge (now) and a deleted Lead.
    tokio::time::sleep(Duration::from_millis(20)).await;
    acme.update("Contact", &changed, json!({"Phone": "03-5555-0009"}));
    let past = (first_sync - chrono::Duration::seconds(60))
        .with_second(0)
        .and_then(|d| d.with_nanosecond(0))
        .expect("minute");
    acme.delete_at("Contact", &deleted, past);
    acme.delete_at("Lead", &lead, past);
    acme.merge("Contact", &master, &loser);
    // The merge is reported once its minute has ended.
    let wait = 61 - u64::from(Utc::now().second());
    tokio::time::sleep(Duration::from_secs(wait)).await;

    acme.reset_counters();
    sync_ok(&env, "acme").await;
    assert_eq!(
        lookup(&env, "acme", "+81355550009"),
        vec![format!("Contact/{changed}")]
    );
    assert!(
        lookup(&env, "acme", "+81355550001").is_empty(),
        "old number gone"
    );
    assert!(row(&env, "acme", &format!("Contact/{deleted}")).is_none());
    assert!(
        row(&env, "acme", &format!("Contact/{loser}")).is_none(),
        "merged away"
    );
    assert!(row(&env, "acme", &format!("Contact/{master}")).is_some());
    assert!(row(&env, "acme", &format!("Lead/{lead}")).is_none());
    assert_eq!(count(&env, "acme"), 2);
    let log = env.log_lines("acme").await;
    assert!(
        log.iter()
            .any(|l| l.contains("Contact: 1 imported, 0 skipped without a Name; 2 deleted")),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("Lead: 0 imported, 0 skipped without a Name; 1 deleted")),
        "{log:#?}"
    );
    let paths: Vec<String> = acme.request_log().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths
            .iter()
            .filter(|p| p.contains("/deleted/?start="))
            .count(),
        2,
        "getDeleted per object: {paths:?}"
    );
    assert_eq!(
        acme.api_calls(),
        4,
        "per object one query and one getDeleted: {paths:?}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c4_sync_interval_from_tenant_config() {
    let sf = standin().await;
    let acme = sf.add_org(org_spec("acme"));
    let globex = sf.add_org(org_spec("globex"));
    acme.insert(
        "Contact",
        json!({"LastName": "First", "Phone": "03-6666-0001"}),
    );
    globex.insert(
        "Contact",
        json!({"LastName": "First", "Phone": "03-6666-0001"}),
    );
    // acme syncs every 2 s, globex keeps the plugin's default (86,400 s). The scheduler is
    // held off until the secrets are set, then both are made due.
    let env = start(
        &sf.base_url(),
        &[
            (
                "acme",
                r#", objects = ["Contact"]"#,
                "schedules = { sync = 2 }",
            ),
            ("globex", r#", objects = ["Contact"]"#, ""),
        ],
    )
    .await;
    let long_ago = Utc::now().timestamp_millis() - 2 * 86_400_000;
    for tenant in ["acme", "globex"] {
        env.host
            .storage()
            .schedule_mark_run(tenant, PLUGIN, "sync", long_ago)
            .expect("mark run");
    }

    let wait_for = |tenant: &'static str, e164: &'static str| {
        let env = &env;
        async move {
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(15) {
                if !lookup(env, tenant, e164).is_empty() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            false
        }
    };
    // The scheduler runs both by itself.
    assert!(
        wait_for("acme", "+81366660001").await,
        "{:#?}",
        env.log_lines("acme").await
    );
    assert!(
        wait_for("globex", "+81366660001").await,
        "{:#?}",
        env.log_lines("globex").await
    );
    acme.insert(
        "Contact",
        json!({"LastName": "Second", "Phone": "03-6666-0002"}),
    );
    globex.insert(
        "Contact",
        json!({"LastName": "Second", "Phone": "03-6666-0002"}),
    );
    assert!(
        wait_for("acme", "+81366660002").await,
        "acme's 2-second interval brings the new contact: {:#?}",
        env.log_lines("acme").await
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        lookup(&env, "globex", "+81366660002").is_empty(),
        "globex waits for its daily sync"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c4_resumes_after_a_failure() {
    let sf = standin().await;
    let acme = sf.add_org(org_spec("acme"));
    for i in 0..5_000u32 {
        acme.insert(
            "Contact",
            json!({"LastName": format!("Sato {i:04}"), "Phone": format!("03-7000-{i:04}")}),
        );
    }
    let env = start(
        &sf.base_url(),
        &[("acme", r#", objects = ["Contact"]"#, "")],
    )
    .await;
    // The third page (records 4,001..) fails with a 503.
    acme.inject(
        Fault::new(FaultKind::Status(503))
            .method("GET")
            .path_contains("-4000"),
    );
    let report = sync(&env, "acme").await;
    let err = report.outcome.expect_err("the third page failed");
    assert!(err.to_string().contains("503"), "{err}");
    assert_eq!(count(&env, "acme"), 4_000, "the two stored pages stay");
    let statuses: Vec<u16> = acme
        .request_log()
        .into_iter()
        .filter(|r| r.path.contains("/query"))
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![200, 200, 503]);

    acme.reset_counters();
    sync_ok(&env, "acme").await;
    assert_eq!(count(&env, "acme"), 5_000);
    let queries: Vec<String> = acme
        .request_log()
        .into_iter()
        .filter(|r| r.path.contains("/query"))
        .map(|r| r.path)
        .collect();
    assert_eq!(
        queries.len(),
        1,
        "only the last 1,000 records are read again: {queries:?}"
    );
    assert!(
        queries[0].contains("Id+%3E+%27"),
        "continues after the stored watermark: {queries:?}"
    );
    let log = env.log_lines("acme").await;
    assert!(
        log.iter()
            .any(|l| l.contains("first import complete: 5,000 imported")),
        "{log:#?}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c4_large_org_continues_on_next_run_when_the_run_budget_is_spent() {
    let sf = standin().await;
    let acme = sf.add_org(org_spec("acme"));
    for i in 0..5_000u32 {
        acme.insert(
            "Contact",
            json!({"LastName": format!("Ito {i:04}"), "Phone": format!("03-7100-{i:04}")}),
        );
    }
    let env = start(
        &sf.base_url(),
        &[(
            "acme",
            r#", objects = ["Contact"], max_pages_per_run = 2"#,
            "",
        )],
    )
    .await;
    sync_ok(&env, "acme").await;
    assert_eq!(count(&env, "acme"), 4_000, "two pages per run");
    let log = env.log_lines("acme").await;
    assert!(
        log.iter()
            .any(|l| l.contains("Contact continue in a moment")),
        "{log:#?}"
    );
    // The run asked to continue (run-again-after-ms): the scheduler runs it again within
    // seconds instead of a whole interval (24 h) later, with no call from the test.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while count(&env, "acme") < 5_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "the import did not continue by itself: {}",
            count(&env, "acme")
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(count(&env, "acme"), 5_000);
    env.stop().await;
}

async fn verify(env: &TestEnv) -> Vec<pbx_host::CheckResult> {
    env.host.verify("acme", PLUGIN).await.expect("verify")
}

fn failed(items: &[pbx_host::CheckResult]) -> Vec<(String, Option<String>, String)> {
    items
        .iter()
        .filter(|i| !i.ok)
        .map(|i| (i.name.clone(), i.field.clone(), i.message.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a4_settings_check_passes_and_names_a_denied_field_and_object() {
    let sf = standin().await;
    let acme = sf.add_org(org_spec("acme"));
    let env = start(&sf.base_url(), &[("acme", "", "")]).await;
    let items = verify(&env).await;
    assert_eq!(failed(&items), vec![], "{items:#?}");
    assert!(
        items
            .iter()
            .any(|i| i.name == "Contact.MobilePhone" && i.ok),
        "{items:#?}"
    );

    acme.deny_field("Contact", "MobilePhone");
    acme.deny_object("Lead");
    let items = verify(&env).await;
    let bad = failed(&items);
    assert_eq!(bad.len(), 2, "{bad:#?}");
    assert_eq!(bad[0].0, "Contact.MobilePhone");
    assert_eq!(bad[0].1.as_deref(), Some("Contact.MobilePhone"));
    assert!(bad[0].2.contains("field-level security"), "{bad:#?}");
    assert_eq!(bad[1].0, "Lead");
    assert_eq!(bad[1].1.as_deref(), Some("Lead"));
    assert!(bad[1].2.contains("cannot access Lead"), "{bad:#?}");
    assert_eq!(writes(&acme), Vec::<String>::new());
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a4_settings_check_wrong_password() {
    let sf = standin().await;
    sf.add_org(org_spec("acme"));
    let env = start(&sf.base_url(), &[("acme", "", "")]).await;
    set_credentials(&env, "acme", "wrong-password", "TOKENSECRET").await;
    let bad = failed(&verify(&env).await);
    assert_eq!(bad.len(), 1, "{bad:#?}");
    assert_eq!(bad[0].0, "login");
    assert_eq!(bad[0].1.as_deref(), Some("salesforce.password"), "{bad:#?}");
    assert!(
        bad[0].2.contains("password of admin@acme.example is wrong"),
        "{bad:#?}"
    );
    assert!(
        !bad[0].2.contains("wrong-password"),
        "no secret in the message"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a4_settings_check_wrong_token() {
    let sf = standin().await;
    sf.add_org(org_spec("acme"));
    let env = start(&sf.base_url(), &[("acme", "", "")]).await;
    set_credentials(&env, "acme", "pw-secret-1", "WRONGTOKEN").await;
    let bad = failed(&verify(&env).await);
    assert_eq!(bad.len(), 1, "{bad:#?}");
    assert_eq!(
        bad[0].1.as_deref(),
        Some("salesforce.security_token"),
        "{bad:#?}"
    );
    assert!(
        bad[0]
            .2
            .contains("security token is wrong (the password is right)"),
        "{bad:#?}"
    );
    assert!(!bad[0].2.contains("WRONGTOKEN") && !bad[0].2.contains("pw-secret-1"));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a4_settings_check_wrong_client_id() {
    let sf = standin().await;
    sf.add_org(OrgSpec {
        client_id: "ANOTHER_APP".into(),
        ..org_spec("acme")
    });
    let env = start(&sf.base_url(), &[("acme", "", "")]).await;
    let bad = failed(&verify(&env).await);
    assert_eq!(bad.len(), 1, "{bad:#?}");
    assert_eq!(bad[0].1.as_deref(), Some("client_id"), "{bad:#?}");
    assert!(
        bad[0].2.contains("consumer key (client_id) is not known"),
        "{bad:#?}"
    );
    let _ = Value::Null;
    env.stop().await;
}
