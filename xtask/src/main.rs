//! `cargo xtask`: developer tasks (the alias is in `.cargo/config.toml`). `cargo xtask` alone
//! lists them. Each larger task lives in its own module (`e2e.rs`, `bench.rs`, …); this file only
//! dispatches. If `cargo xtask ci` passes locally, CI is green: it runs `.ci/run` itself.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};

#[cfg(target_os = "linux")]
mod bench;
#[cfg(not(target_os = "linux"))]
#[path = "bench_elsewhere.rs"]
mod bench;
mod e2e;
mod fuzz;

/// Every task with a one-line description, in the order `cargo xtask` lists them.
const TASKS: &[(&str, &str)] = &[
    (
        "ci",
        "exactly what CI runs (.ci/run): fmt --check, clippy -D warnings, cargo test --workspace, e2e, \
         then the Windows build's clippy and its suite under Wine",
    ),
    ("dev", "run the orchestrator with debug logs against data/dev (further arguments are passed on)"),
    ("e2e", "the dashboard's end-to-end test in headless Chromium; screenshots in target/e2e"),
    (
        "bench",
        "performance beside the peers: bench [supervisor|hub|gateway|all|setup|check] (docs/BENCHMARKS.md; Linux only)",
    ),
    ("fuzz", "property-test the input parsers for a bounded time: fuzz [SECONDS] [config|names|paths|protocol]"),
    ("dist", "build the release binary into target/dist"),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `cargo` (the one that runs us) with these arguments; fails when it fails.
pub(crate) fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status =
        Command::new(&cargo).args(args).status().with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The workspace root (the parent of this crate).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

fn run(args: &[String]) -> anyhow::Result<()> {
    std::env::set_current_dir(root()).context("entering the workspace root")?;
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        None | Some("help" | "--help" | "-h") => {
            list();
            Ok(())
        }
        Some("ci") => ci(rest),
        Some("dev") => dev(rest),
        Some("e2e") => e2e::run(rest),
        Some("bench") => bench::run(rest),
        Some("fuzz") => fuzz::run(rest),
        Some("dist") => dist(rest),
        Some(other) => {
            list();
            bail!("unknown task `{other}`")
        }
    }
}

fn list() {
    println!("cargo xtask <task>\n\ntasks:");
    for (name, what) in TASKS {
        println!("  {name:<8} {what}");
    }
}

/// `ci`: runs `.ci/run`, so the two can never drift apart.
fn ci(args: &[String]) -> anyhow::Result<()> {
    if let Some(extra) = args.first() {
        bail!("`cargo xtask ci` takes no arguments (got `{extra}`)");
    }
    let status = Command::new("bash").arg(".ci/run").status().context("running .ci/run")?;
    if !status.success() {
        bail!(".ci/run failed ({status})");
    }
    Ok(())
}

/// `dev`: the orchestrator on the built-in platform (or ./orchestrator.toml) with debug logs and
/// its state in `data/dev`.
fn dev(args: &[String]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let log = std::env::var("RUST_LOG").unwrap_or_else(|_| "debug,actix_server=info,actix_http=info,awc=info".into());
    let status = Command::new(cargo)
        .args(["run", "-p", "orchestrator", "--", "--data-dir", "data/dev"])
        .args(args)
        .env("RUST_LOG", log)
        .status()
        .context("running the orchestrator")?;
    if !status.success() {
        bail!("the orchestrator exited with {status}");
    }
    Ok(())
}

/// `dist`: the release binary, copied to `target/dist/orchestrator`.
fn dist(args: &[String]) -> anyhow::Result<()> {
    if let Some(extra) = args.first() {
        bail!("`cargo xtask dist` takes no arguments (got `{extra}`)");
    }
    cargo(&["build", "--release", "-p", "orchestrator"])?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target"));
    let dist = target.join("dist");
    std::fs::create_dir_all(&dist).with_context(|| format!("creating {}", dist.display()))?;
    let from = target.join("release").join("orchestrator");
    let to = dist.join("orchestrator");
    std::fs::copy(&from, &to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    println!("{}", to.display());
    Ok(())
}
