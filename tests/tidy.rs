//! Tidy checks that run as ordinary tests: every Rust source file opens with a `//!` line
//! saying what it owns, no test is marked as ignored, and the layout the design fixes is in place.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().and_then(Path::parent).unwrap().to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if p.is_dir() {
            if !matches!(name, "target" | "node_modules" | ".git" | "data") {
                rust_files(&p, out);
            }
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_source_file_starts_with_a_module_doc() {
    let mut files = Vec::new();
    for dir in ["crates", "bins", "xtask", "tests"] {
        rust_files(&root().join(dir), &mut files);
    }
    assert!(files.len() > 20, "found only {} files", files.len());
    let missing: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            !first.starts_with("//!")
        })
        .map(|f| f.strip_prefix(root()).unwrap_or(f).display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a leading //! line: {missing:#?}");
}

#[test]
fn no_test_is_ignored() {
    let mut files = Vec::new();
    for dir in ["crates", "bins", "xtask", "tests"] {
        rust_files(&root().join(dir), &mut files);
    }
    let needle = ["#[", "ignore"].concat();
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| std::fs::read_to_string(f).unwrap_or_default().contains(&needle))
        .map(|f| f.display().to_string())
        .collect();
    assert!(offenders.is_empty(), "ignored tests prove nothing: {offenders:#?}");
}

#[test]
fn the_designed_layout_is_in_place() {
    for path in [
        "crates/gateway-core",
        "crates/registry",
        "crates/supervisor",
        "crates/hub",
        "crates/settings",
        "crates/gateway-http",
        "crates/simulator",
        "bins/orchestrator",
        "xtask",
        "tests",
        "data/.gitkeep",
        "docs/ARCHITECTURE.md",
        "rust-toolchain.toml",
        ".cargo/config.toml",
        ".ci/run",
        "README.md",
    ] {
        assert!(root().join(path).exists(), "{path} is missing");
    }
    // Directory name = package name.
    for dir in std::fs::read_dir(root().join("crates")).unwrap().flatten() {
        let manifest = std::fs::read_to_string(dir.path().join("Cargo.toml")).unwrap();
        let name = dir.file_name().to_string_lossy().into_owned();
        assert!(manifest.contains(&format!("name = \"{name}\"")), "crates/{name} names another package");
    }
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(readme.contains("cargo run --release") && readme.contains("cargo test --workspace"));
    assert!(ci.contains("cargo test --workspace"), ".ci/run runs the README's test command");
}
