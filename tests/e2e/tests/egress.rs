//! Egress that cannot reach the host's network (issue 11, finding 6), through the real daemon:
//! proxies in the daemon's environment are ignored, a name that does not resolve is refused,
//! special-purpose ranges stay refused when the operator opens every network, and a tenant
//! setting in a grant template cannot replace the host. The plugin is the probe component,
//! asked for an IVR decision whose ops are its HTTP requests.

#![cfg(unix)]

use std::ffi::OsString;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use pbx_e2e::{HostProcess, plugin_dir};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A loopback server that answers every connection with `200 direct` and counts them.
async fn server(answer: &'static str) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let body = answer.as_bytes();
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(body).await;
            });
        }
    });
    (port, seen)
}

fn http(url: &str) -> Value {
    json!({"op": "http", "method": "GET", "url": url, "timeout_ms": 3000})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_unresolvable_names_special_ranges_and_template_values_cannot_open_egress() {
    let (target, _) = server("direct").await;
    let (proxy, proxied) = server("proxied").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let ops = json!([
        // Granted and allowed: reached directly, not through the environment's proxy.
        http(&format!("http://127.0.0.1:{target}/")),
        // Granted by name, but the name resolves nowhere: refused, not let through.
        http("http://no-such-host.invalid/"),
        // Documentation, benchmarking and NAT64 forms of them: never allowed, though the
        // operator opened every network.
        http("http://192.0.2.10/"),
        http("http://198.18.0.10/"),
        http("http://[64:ff9b::c000:20a]/"),
        // The tenant's `sub` ("evil.example/x?") would replace the host if pasted as text.
        http("https://evil.example/x"),
    ]);
    let config = format!(
        "{{ target = \"http://127.0.0.1:{target}\", sub = \"evil.example/x?\", ops = {} }}",
        toml_inline(&ops)
    );
    std::fs::create_dir_all(dir.path().join("data")).expect("data");
    std::fs::write(
        dir.path().join("plugins.toml"),
        format!(
            r#"[host]
allow_private_networks = ["0.0.0.0/0", "::/0"]

[plugins.probe]
component = "{plugins}/probe_plugin.wasm"
events = []
[plugins.probe.grants]
http = ["{{config.target}}", "http://no-such-host.invalid", "http://192.0.2.10", "http://198.18.0.10", "http://[64:ff9b::c000:20a]", "https://{{config.sub}}.my.salesforce.com"]

[tenants.acme]
ivr_fallback = {{ speech = "Please hold", route = "queue:main" }}
[tenants.acme.plugins.probe]
config = {config}
"#,
            plugins = plugin_dir().display(),
        ),
    )
    .expect("plugins.toml");
    // The daemon's environment points every proxy variable at the counting "proxy".
    let proxy_url = format!("http://127.0.0.1:{proxy}");
    let wrapper: Vec<OsString> = vec![
        "env".into(),
        format!("HTTP_PROXY={proxy_url}").into(),
        format!("HTTPS_PROXY={proxy_url}").into(),
        format!("ALL_PROXY={proxy_url}").into(),
        format!("http_proxy={proxy_url}").into(),
        format!("https_proxy={proxy_url}").into(),
    ];
    let host = HostProcess::start_wrapped(dir.path(), &wrapper).await;
    let (status, decision) = host
        .try_post(
            "/v1/ivr",
            &json!({"tenant": "acme", "plugin": "probe", "deadline_ms": 20000,
                    "call": {"call_id": "ivr-1", "direction": "inbound", "caller": "0312345678",
                             "callee": "0501111222", "dial_started_at": 0}}),
        )
        .await
        .expect("ivr");
    assert_eq!(status, 200, "{decision}");
    assert_eq!(decision["source"], "plugin", "{decision}");
    let results: Vec<String> = decision["variables"]
        .as_array()
        .expect("variables")
        .iter()
        .map(|kv| kv[1].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(results.len(), 6, "{results:#?}");
    assert_eq!(results[0], "ok:200:direct", "{results:#?}");
    assert_eq!(
        proxied.load(Ordering::SeqCst),
        0,
        "a request went through the proxy of the environment"
    );
    assert!(
        results[1].starts_with("err:denied:") && results[1].contains("could not be resolved"),
        "{}",
        results[1]
    );
    for r in &results[2..5] {
        assert!(
            r.starts_with("err:denied:") && r.contains("never allowed"),
            "special-purpose range: {r}"
        );
    }
    assert!(results[5].starts_with("err:denied:"), "{}", results[5]);
    let log = host.log_lines("acme").await;
    assert!(
        log.iter()
            .any(|l| l.contains("sub") && l.contains("not a single host label")),
        "the tenant's log says which setting does not fit: {log:#?}"
    );
}

/// A JSON value as a TOML inline value (the ops are objects of strings and numbers).
fn toml_inline(v: &Value) -> String {
    match v {
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(toml_inline).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(o) => format!(
            "{{ {} }}",
            o.iter()
                .map(|(k, v)| format!("{k} = {}", toml_inline(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}
