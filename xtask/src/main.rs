//! `cargo xtask`: developer tasks. `cargo xtask` alone lists them.
#![allow(clippy::print_stdout)]

use std::process::{Command, ExitCode};

use anyhow::{Context, bail};

const TASKS: &[(&str, &str)] = &[
    ("ci", "what .ci/run does: fmt --check, clippy -D warnings, the whole test suite"),
    ("dev", "run the orchestrator with debug logs against data/dev"),
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

fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status =
        Command::new(&cargo).args(args).status().with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(|p| p.to_path_buf()).unwrap_or_default()
}

fn run(args: &[String]) -> anyhow::Result<()> {
    std::env::set_current_dir(root()).context("entering the workspace root")?;
    match args.first().map(String::as_str) {
        None | Some("help") | Some("--help") => {
            println!("cargo xtask <task>\n\ntasks:");
            for (name, what) in TASKS {
                println!("  {name:<8} {what}");
            }
            Ok(())
        }
        Some("ci") => {
            let status = Command::new("bash").arg(".ci/run").status().context("running .ci/run")?;
            if !status.success() {
                bail!(".ci/run failed ({status})");
            }
            Ok(())
        }
        Some("dev") => {
            let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["run", "-p", "orchestrator", "--", "--data-dir", "data/dev"])
                .args(&args[1..])
                .env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "debug,actix_server=info,awc=info,h2=info".into()),
                )
                .status()
                .context("running the orchestrator")?;
            if !status.success() {
                bail!("orchestrator exited with {status}");
            }
            Ok(())
        }
        Some("dist") => {
            cargo(&["build", "--release", "-p", "orchestrator"])?;
            std::fs::create_dir_all("target/dist").context("creating target/dist")?;
            std::fs::copy("target/release/orchestrator", "target/dist/orchestrator").context("copying the binary")?;
            println!("target/dist/orchestrator");
            Ok(())
        }
        Some(other) => bail!("unknown task `{other}`; run `cargo xtask` for the list"),
    }
}
