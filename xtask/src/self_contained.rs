//! The repository stands on its own: no tracked file may reach outside it. A person who
//! clones the project has only the repository, so a path to a folder beside it (the
//! developers' `shared` folder, a sibling checkout) or a test that searches the directories above the workspace would pass
//! on a developer's machine and fail for everyone else.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What a tracked file may not contain, with the reason given when it does.
const FORBIDDEN: &[(&str, &str)] = &[
    // Spelt in two halves so that `git grep` for the pattern finds no file of the repository.
    (
        concat!("..", "/shared"),
        "a path to a folder beside the repository",
    ),
    ("/work/", "an absolute path on a developer's machine"),
    (
        ".ancestors()",
        "a search of the directories above a crate (it can find files outside the repository)",
    ),
];

/// Files that may name the patterns: this guard itself, and data that is not ours.
fn exempt(path: &Path) -> bool {
    path.ends_with("xtask/src/self_contained.rs")
        || path.starts_with("tests/fixtures")
        || path.extension().is_some_and(|e| e == "lock" || e == "wasm")
}

/// The files the repository tracks (relative to `root`): `git ls-files`, or every file below
/// `root` except `target/` and `.git/` where git is not there (an exported tarball).
fn tracked_files(root: &Path) -> Vec<PathBuf> {
    if let Ok(out) = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["ls-files", "-z"])
        .output()
        && out.status.success()
    {
        return out
            .stdout
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| PathBuf::from(String::from_utf8_lossy(s).into_owned()))
            .collect();
    }
    let mut files = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(root.join(&rel)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if rel.as_os_str().is_empty() && (name == "target" || name == ".git") {
                continue;
            }
            let path = rel.join(&name);
            match entry.file_type() {
                Ok(t) if t.is_dir() => dirs.push(path),
                Ok(t) if t.is_file() => files.push(path),
                _ => {}
            }
        }
    }
    files
}

/// The relative link targets of a Markdown line (`[text](target)`), without their `#anchor`.
fn markdown_links(line: &str) -> Vec<&str> {
    let mut links = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        let Some(end) = after.find(')') else { break };
        let target = after[..end].split('#').next().unwrap_or_default().trim();
        if !target.is_empty() && !target.contains("://") && !target.starts_with("mailto:") {
            links.push(target);
        }
        rest = &after[end..];
    }
    links
}

/// Every place where a tracked file reaches outside the repository, as `path:line: reason`:
/// a forbidden pattern, or a Markdown link that does not resolve to a file of the repository.
pub fn outside_references(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let root_abs = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    for rel in tracked_files(root) {
        if exempt(&rel) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(root.join(&rel)) else {
            continue; // binary or unreadable: not a path anybody follows
        };
        let is_markdown = rel.extension().is_some_and(|e| e == "md");
        let dir = root
            .join(&rel)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        for (no, line) in text.lines().enumerate() {
            if is_markdown {
                for target in markdown_links(line) {
                    let resolved = dir.join(target).canonicalize();
                    if !resolved.as_ref().is_ok_and(|p| p.starts_with(&root_abs)) {
                        found.push(format!(
                            "{}:{}: a link to `{target}`, which is not a file of the repository",
                            rel.display(),
                            no + 1
                        ));
                    }
                }
            }
            for (pattern, reason) in FORBIDDEN {
                if line.contains(pattern) {
                    found.push(format!(
                        "{}:{}: {reason} (`{pattern}`)",
                        rel.display(),
                        no + 1
                    ));
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_tracked_file_reaches_outside_the_repository() {
        let root = crate::workspace_root();
        let found = outside_references(&root);
        assert!(
            found.is_empty(),
            "the repository must stand on its own:\n{}",
            found.join("\n")
        );
    }

    #[test]
    fn the_guard_sees_a_path_beside_the_repository() {
        let dir = tempfile_dir();
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(
            dir.join("src/lib.rs"),
            format!("fn f() {{ let _ = \"{}/shared/SPEC.md\"; }}\n", ".."),
        )
        .unwrap();
        std::fs::write(
            dir.join("src/walk.rs"),
            "fn g(p: &std::path::Path) { for _ in p.ancestors() {} }\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("README.md"),
            "See [the lib](src/lib.rs), [gone](docs/gone.md) and [web](https://example.com/x).\n",
        )
        .unwrap();
        let mut found = outside_references(&dir);
        std::fs::remove_dir_all(&dir).ok();
        found.sort();
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found[0].starts_with("README.md:1: a link to `docs/gone.md`"),
            "{found:?}"
        );
        assert!(found[1].starts_with("src/lib.rs:1:"), "{found:?}");
        assert!(found[2].starts_with("src/walk.rs:1:"), "{found:?}");
    }

    /// A fresh directory outside any git checkout, so the guard's fallback walk is what runs.
    fn tempfile_dir() -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!(
            "xtask-self-contained-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
