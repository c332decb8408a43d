//! Project tasks, so that a fresh machine needs nothing but Rust and cargo:
//!
//! - `cargo xtask plugins`: install the wasm32-wasip2 target if missing, build every plugin
//!   component (the real plugins and the test plugins) from source.
//! - `cargo xtask demo`: the plugins, then the demo: the host with its plugins against the
//!   local Salesforce stand-in, a day of calls played through it, a summary of what landed.
//! - `cargo xtask test`: the plugins, then every test of the workspace.
//! - `cargo xtask check-self-contained`: fails when a tracked file reaches outside the
//!   repository (a path beside it, a search of the directories above it).
//! - `cargo xtask ci`: formatting and lint checks, then `test`.
//! - `cargo xtask bench`: the plugins, then every benchmark of issue 5 (criterion benches and
//!   the `loadgen` scenarios) for the record; results in `target/bench-results/`.
//! - `cargo xtask bench-quick`: the same with fewer iterations and smaller sizes (< 5 min, CI).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

mod self_contained;

/// Every crate built as a component, with the world it targets noted in its own Cargo.toml.
pub const PLUGIN_CRATES: &[&str] = &[
    "history-logger",
    "contact-import",
    "ivr-greeting",
    "case-creation",
    "probe-plugin",
    "minimal-plugin",
    "bench-plugin",
    "future-wit-plugin",
    "plugin-template",
];

fn main() -> anyhow::Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match task.as_str() {
        "plugins" => plugins(),
        "check-self-contained" => {
            let found = self_contained::outside_references(&root);
            if !found.is_empty() {
                bail!(
                    "the repository must stand on its own:\n{}",
                    found.join("\n")
                );
            }
            Ok(())
        }
        "demo" => {
            plugins()?;
            cargo(&["run", "--release", "-p", "pbx-e2e", "--bin", "pbx-demo"])
        }
        "test" => {
            plugins()?;
            cargo(&["test", "--workspace", "--no-fail-fast"])
        }
        "bench" | "bench-quick" => {
            plugins()?;
            let quick = task == "bench-quick";
            let mut crit = vec!["bench", "-p", "pbx-bench", "--bench", "invocation"];
            if quick {
                crit.extend(["--", "--warm-up-time", "1", "--measurement-time", "2"]);
            }
            cargo(&crit)?;
            let mut run = vec![
                "run",
                "--release",
                "-p",
                "pbx-bench",
                "--bin",
                "loadgen",
                "--",
            ];
            if quick {
                run.push("--quick");
            }
            cargo(&run)
        }
        "ci" => {
            cargo(&["fmt", "--all", "--", "--check"])?;
            plugins()?;
            cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])?;
            cargo(&["test", "--workspace", "--no-fail-fast"])
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <plugins | check-self-contained | demo | test | ci | bench | bench-quick>"
            );
            bail!("unknown task '{task}'")
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("+ cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .status()
        .with_context(|| format!("cannot run {cargo}"))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Install the wasm32-wasip2 target through rustup when it is missing.
fn ensure_wasm_target() -> anyhow::Result<()> {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .context("cannot run rustc")?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
    if Path::new(&sysroot)
        .join("lib/rustlib/wasm32-wasip2")
        .is_dir()
    {
        return Ok(());
    }
    eprintln!("+ rustup target add wasm32-wasip2");
    let status = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status()
        .context("the wasm32-wasip2 target is missing and rustup is not available to install it")?;
    if !status.success() {
        bail!("rustup target add wasm32-wasip2 failed");
    }
    Ok(())
}

fn plugins() -> anyhow::Result<()> {
    ensure_wasm_target()?;
    let mut args = vec!["build", "--profile", "plugin", "--target", "wasm32-wasip2"];
    for c in PLUGIN_CRATES {
        args.push("-p");
        args.push(c);
    }
    cargo(&args)
}
