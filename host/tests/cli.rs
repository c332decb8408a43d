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

/// `check-config` (which opens the data directory like `serve`) on `data_dir` with an empty
/// plugins.toml: asserts it fails and returns its stderr.
fn start_error(dir: &std::path::Path, data_dir: &std::path::Path) -> String {
    let config = dir.join("plugins.toml");
    std::fs::write(&config, "").unwrap();
    let out = pbx_host()
        .args(["--config", config.to_str().unwrap(), "--data-dir"])
        .arg(data_dir)
        .arg("check-config")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "started on {}: {err}",
        data_dir.display()
    );
    assert!(!err.contains("storage: storage:"), "{err}");
    err
}

/// Root ignores directory permissions, but not /proc: nobody creates files there.
#[cfg(target_os = "linux")]
#[test]
fn a_read_only_data_directory_is_named_with_what_the_host_needs_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let err = start_error(dir.path(), std::path::Path::new("/proc"));
    assert!(
        err.contains("data directory /proc is read-only")
            && err.contains("the host needs to write host.sqlite3 there")
            && err.contains("point --data-dir at another directory"),
        "{err}"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn a_data_directory_that_cannot_be_created_is_named_with_the_cause_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let err = start_error(dir.path(), std::path::Path::new("/proc/pbx-host-test/data"));
    assert!(
        err.contains(
            "data directory /proc/pbx-host-test/data does not exist and cannot be created ("
        ) && err.contains("point --data-dir at another directory"),
        "{err}"
    );
}

#[test]
fn a_file_given_as_the_data_directory_is_named_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let err = start_error(dir.path(), &file);
    assert!(
        err.contains(&format!(
            "data directory {} is not a directory: point --data-dir at a directory",
            file.display()
        )),
        "{err}"
    );
}

#[test]
fn a_corrupt_database_is_named_with_the_cause_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let db = data.join("host.sqlite3");
    // Garbage: no SQLite header.
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&db, garbage).unwrap();
    let err = start_error(dir.path(), &data);
    assert!(
        err.contains(&format!(
            "{} is not a SQLite database (file is not a database): move it away or point --data-dir at another directory",
            db.display()
        )),
        "{err}"
    );
}

#[test]
fn a_directory_where_the_database_belongs_is_named_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let db = data.join("host.sqlite3");
    std::fs::create_dir_all(&db).unwrap();
    let err = start_error(dir.path(), &data);
    assert!(
        err.contains(&format!(
            "{} is a directory, not a SQLite database: move it away or point --data-dir at another directory",
            db.display()
        )),
        "{err}"
    );
}
