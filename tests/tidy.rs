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

/// The `[dependencies]` of a manifest (plain and per-target, not dev- or build-dependencies):
/// the names, read line by line (the manifests keep one dependency per line).
fn runtime_dependencies(manifest: &str) -> Vec<String> {
    let mut deps = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            let section = line.trim_matches(|c| c == '[' || c == ']');
            in_deps =
                section == "dependencies" || (section.starts_with("target.") && section.ends_with(".dependencies"));
            continue;
        }
        if in_deps && !line.is_empty() && !line.starts_with('#') {
            let name: String =
                line.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
            if !name.is_empty() {
                deps.push(name);
            }
        }
    }
    deps
}

/// The layers of docs/ARCHITECTURE.md as data: each package, the workspace crates it may use,
/// and the outside crates only it may name (`rusqlite` is the settings store's alone, actix-web
/// is the HTTP layer's and the simulator's, which is a program of its own, and `toml` belongs to
/// the one place that composes the configuration's sections).
#[test]
fn dependencies_point_down_and_stay_in_their_layer() {
    let layers: [(&str, &str, &[&str]); 9] = [
        ("crates/gateway-core", "gateway-core", &[]),
        ("crates/registry", "registry", &["gateway-core"]),
        ("crates/settings", "settings", &["gateway-core"]),
        ("crates/hub", "hub", &["gateway-core"]),
        ("crates/simulator", "simulator", &["gateway-core"]),
        ("crates/supervisor", "supervisor", &["gateway-core", "registry"]),
        ("crates/gateway-http", "gateway-http", &["gateway-core", "registry", "settings", "hub", "supervisor"]),
        (
            "bins/orchestrator",
            "orchestrator",
            &["gateway-core", "registry", "settings", "hub", "supervisor", "gateway-http", "simulator"],
        ),
        ("xtask", "xtask", &[]),
    ];
    let workspace: Vec<&str> = layers.iter().map(|(_, name, _)| *name).collect();
    let owned_by: [(&str, &[&str]); 6] = [
        ("rusqlite", &["settings"]),
        ("r2d2", &["settings"]),
        ("r2d2_sqlite", &["settings"]),
        ("actix-web", &["gateway-http", "simulator"]),
        ("actix-ws", &["gateway-http", "simulator"]),
        // The configuration file is composed in one place; the sections are plain serde types.
        ("toml", &["gateway-http"]),
    ];
    let mut problems = Vec::new();
    for (dir, name, allowed) in layers {
        let manifest = std::fs::read_to_string(root().join(dir).join("Cargo.toml")).unwrap();
        assert!(manifest.contains(&format!("name = \"{name}\"")), "{dir} is not the package {name}");
        let deps = runtime_dependencies(&manifest);
        assert!(!deps.is_empty(), "{dir}: no dependencies read");
        for dep in &deps {
            if workspace.contains(&dep.as_str()) && !allowed.contains(&dep.as_str()) {
                problems.push(format!("{name} depends on {dep}, which is not below it"));
            }
            if let Some((_, owners)) = owned_by.iter().find(|(d, _)| d == dep)
                && !owners.contains(&name)
            {
                problems.push(format!("{name} names {dep}, which belongs to {owners:?}"));
            }
        }
    }
    assert!(problems.is_empty(), "dependency rules broken: {problems:#?}");
}

/// `gateway-core` stays free of the OpenAPI library unless asked: its schemas are derived behind
/// the optional `openapi` feature, which only `gateway-http` (the owner of the document) turns on.
#[test]
fn the_openapi_derives_of_the_core_are_optional() {
    let core = std::fs::read_to_string(root().join("crates/gateway-core/Cargo.toml")).unwrap();
    let line = core.lines().find(|l| l.trim_start().starts_with("utoipa")).expect("gateway-core names utoipa");
    assert!(line.contains("optional = true"), "gateway-core: {line}");
    assert!(core.contains("openapi = [\"dep:utoipa\"]"), "gateway-core has the `openapi` feature");
    let crates = ["registry", "settings", "hub", "simulator", "supervisor", "gateway-http"];
    let dirs =
        crates.map(|c| format!("crates/{c}")).into_iter().chain(["bins/orchestrator".to_owned(), "xtask".to_owned()]);
    for dir in dirs {
        let manifest = std::fs::read_to_string(root().join(&dir).join("Cargo.toml")).unwrap();
        let enables = manifest.lines().any(|l| l.starts_with("gateway-core") && l.contains("\"openapi\""));
        assert_eq!(enables, dir == "crates/gateway-http", "{dir} and gateway-core's `openapi` feature");
    }
}

#[test]
fn the_dependency_reader_sees_every_kind_of_section() {
    let manifest = "[package]\nname = \"x\"\n[dependencies]\nserde.workspace = true\nactix-web = { version = \"4\" }\n\
                    [target.'cfg(windows)'.dependencies]\nwindows-sys.workspace = true\n[dev-dependencies]\nrusqlite = \"1\"\n";
    assert_eq!(runtime_dependencies(manifest), ["serde", "actix-web", "windows-sys"]);
}
