//! The `pbx-host` binary as an operator uses it.

use std::process::Command;

fn pbx_host() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pbx-host"))
}

#[test]
fn help_lists_the_commands() {
    let out = pbx_host().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["serve", "check-config", "verify", "replay"] {
        assert!(text.contains(cmd), "--help lists {cmd}: {text}");
    }
}

#[test]
fn check_config_reports_a_broken_file_with_line_and_field_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plugins.toml");
    std::fs::write(&path, "[plugins.crm]\ncomponent = \"crm.wasm\"\n[plugins.crm.grants]\nhttp = [\"ftp://files.example.com\"]\n").unwrap();
    let out = pbx_host()
        .args([
            "--config",
            path.to_str().unwrap(),
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
            "check-config",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plugins.toml:4")
            && err.contains("plugins.crm.grants.http")
            && err.contains("only http and https"),
        "{err}"
    );
}

#[test]
fn check_config_fails_when_a_component_cannot_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plugins.toml");
    std::fs::write(&path, "[plugins.crm]\ncomponent = \"missing.wasm\"\n").unwrap();
    let out = pbx_host()
        .args([
            "--config",
            path.to_str().unwrap(),
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
            "check-config",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAILED  crm") && text.contains("missing.wasm"),
        "{text}"
    );
}

#[test]
fn serve_refuses_to_run_without_authentication_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plugins.toml");
    std::fs::write(&path, "").unwrap();
    let out = pbx_host()
        .env_remove("PBX_HOST_OPERATOR_TOKEN")
        .args([
            "--config",
            path.to_str().unwrap(),
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no operator token"));
}
