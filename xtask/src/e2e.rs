//! `cargo xtask e2e`: the dashboard's end-to-end test in Debian's headless Chromium.
//!
//! Builds the orchestrator, makes sure `tests/e2e/node_modules` matches its lock file (`npm ci`,
//! which never downloads a browser: the test drives the system's `/usr/bin/chromium` through
//! playwright-core), then runs `tests/e2e/dashboard.mjs`. Screenshots and the orchestrator's log
//! land in `target/e2e/`. Not part of `cargo test --workspace`, because a developer machine may
//! not have chromium; `.ci/run` installs it and runs this task after the test suite.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The folder of the node test and its lock file.
const E2E_DIR: &str = "tests/e2e";
/// Where Debian's `chromium` package puts the browser.
const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

/// Runs the task (in the workspace root).
pub fn run(args: &[String]) -> anyhow::Result<()> {
    if let Some(extra) = args.first() {
        bail!("`cargo xtask e2e` takes no arguments (got `{extra}`); set CHROMIUM=/path to use another browser");
    }
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| DEFAULT_CHROMIUM.to_owned());
    if !Path::new(&chromium).exists() {
        bail!("{chromium} not found: install Debian's browser with `apt-get update && apt-get install -y chromium`");
    }
    let node = Command::new("node").arg("--version").output();
    match node {
        Ok(out) if out.status.success() => {
            println!("e2e: node {}", String::from_utf8_lossy(&out.stdout).trim());
        }
        _ => bail!("node not found: playwright-core needs Node.js 20 or newer"),
    }
    npm_ci_if_stale(Path::new(E2E_DIR))?;

    crate::cargo(&["build", "-p", "orchestrator"])?;
    let target = target_dir();
    let binary = target.join("debug").join("orchestrator");
    let out = target.join("e2e");
    let status = Command::new("node")
        .arg("dashboard.mjs")
        .current_dir(E2E_DIR)
        .env("ORCHESTRATOR_BIN", &binary)
        .env("E2E_OUT", &out)
        .env("CHROMIUM", &chromium)
        .status()
        .context("running node tests/e2e/dashboard.mjs")?;
    if !status.success() {
        bail!("the dashboard end-to-end test failed ({status}); see {}", out.display());
    }
    println!("e2e: passed; screenshots in {}", out.display());
    Ok(())
}

/// `CARGO_TARGET_DIR`, or `target/` in the workspace root (the current directory).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| {
        std::env::current_dir().map(|d| d.join("target")).unwrap_or_else(|_| PathBuf::from("target"))
    })
}

/// Runs `npm ci` when `node_modules` is missing or older than `package-lock.json`.
fn npm_ci_if_stale(dir: &Path) -> anyhow::Result<()> {
    let lock = dir.join("package-lock.json");
    let installed = dir.join("node_modules").join(".package-lock.json");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = match (modified(&lock), modified(&installed)) {
        (Some(lock), Some(installed)) => installed >= lock && dir.join("node_modules/playwright-core").exists(),
        _ => false,
    };
    if fresh {
        return Ok(());
    }
    println!("e2e: npm ci in {}", dir.display());
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        // playwright-core has no install script, but never let anything fetch a browser.
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .status()
        .context("running npm ci (is npm installed?)")?;
    if !status.success() {
        bail!("npm ci in {} failed ({status})", dir.display());
    }
    Ok(())
}
