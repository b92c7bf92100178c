//! `cargo xtask fuzz [SECONDS] [TARGET…]`: runs the property tests of the input parsers for a
//! bounded time, with far more cases than `cargo test` does, in release mode and with a fresh
//! random seed each round.
//!
//! cargo-fuzz needs a nightly toolchain (libFuzzer and sanitizer flags) and this workspace pins
//! stable, so the fuzzing is property-based (proptest): the same generators and oracles that
//! `cargo test` runs 256 times (64 for whole configurations) run here until the time is used up.
//! A failure prints proptest's minimal failing input and fails the task.
//!
//! Targets: `config` (registry: parsing never panics, round trip through `to_toml`, environment
//! overrides), `names` (gateway-core: symbols, timeframes, topics, patterns), `paths`
//! (gateway-core: `check_path`), `protocol` (hub: `parse_client_message`). The time (default
//! 60 s) is split evenly between the chosen targets; building does not count.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// (name, package, test filters) — every target is the package's `tests/properties.rs`.
const TARGETS: &[(&str, &str, &[&str])] = &[
    ("config", "gateway-http", &[]),
    ("names", "gateway-core", &["symbol", "timeframe", "topic", "pattern"]),
    ("paths", "gateway-core", &["path"]),
    ("protocol", "hub", &[]),
];

/// Cases of a target's first round; later rounds are sized to fill the remaining time.
const FIRST_ROUND_CASES: u64 = 500;
/// Upper bound of one round's cases, so a round never runs far past the budget.
const MAX_ROUND_CASES: u64 = 2_000_000;
/// A round is not started with less time than this left.
const MIN_ROUND: Duration = Duration::from_millis(1500);

fn usage() -> String {
    let names: Vec<&str> = TARGETS.iter().map(|t| t.0).collect();
    format!("usage: cargo xtask fuzz [SECONDS] [TARGET…]   (targets: {}; default: all, 60 s)", names.join(", "))
}

/// The task.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let mut seconds = 60u64;
    let mut chosen = Vec::new();
    for arg in args {
        if let Ok(n) = arg.parse::<u64>() {
            seconds = n.max(1);
        } else if let Some(t) = TARGETS.iter().find(|t| t.0 == arg) {
            chosen.push(*t);
        } else {
            bail!("unknown fuzz target `{arg}`\n{}", usage());
        }
    }
    if chosen.is_empty() {
        chosen = TARGETS.to_vec();
    }
    let mut packages: Vec<&str> = chosen.iter().map(|t| t.1).collect();
    packages.dedup();
    let mut build = vec!["test", "--release", "--no-run", "--test", "properties"];
    for p in &packages {
        build.extend(["-p", p]);
    }
    println!("building the property tests (release)…");
    crate::cargo(&build)?;

    let per_target = Duration::from_secs(seconds) / u32::try_from(chosen.len()).unwrap_or(1);
    let mut report = Vec::new();
    for (name, package, filters) in chosen {
        let (rounds, cases) = fuzz_target(name, package, filters, per_target)?;
        report.push(format!("  {name:<9} {cases:>10} cases per property in {rounds} rounds ({package})"));
    }
    println!("fuzz: no failure in {seconds} s\n{}", report.join("\n"));
    Ok(())
}

/// Runs one target in rounds until its time is used; returns (rounds, cases per property).
fn fuzz_target(name: &str, package: &str, filters: &[&str], budget: Duration) -> anyhow::Result<(u32, u64)> {
    let started = Instant::now();
    let mut cases = FIRST_ROUND_CASES;
    let (mut rounds, mut total) = (0u32, 0u64);
    loop {
        let left = budget.saturating_sub(started.elapsed());
        if rounds > 0 && left < MIN_ROUND {
            break;
        }
        let round = Instant::now();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(&cargo)
            .args(["test", "--release", "-q", "-p", package, "--test", "properties", "--"])
            .args(filters)
            .env("PROPTEST_CASES", cases.to_string())
            .output()
            .with_context(|| format!("running the {name} properties"))?;
        if !out.status.success() {
            println!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            bail!("fuzz target `{name}` found a failing input after {total} cases (see the minimal input above)");
        }
        rounds += 1;
        total += cases;
        let took = round.elapsed().max(Duration::from_millis(1));
        let left = budget.saturating_sub(started.elapsed());
        println!("  {name}: round {rounds}, {cases} cases per property in {took:.1?}");
        // Size the next round to about the time that is left (cargo's own start-up included).
        let scale = left.as_secs_f64() / took.as_secs_f64();
        cases = ((cases as f64 * scale * 0.6) as u64).clamp(FIRST_ROUND_CASES, MAX_ROUND_CASES);
    }
    Ok((rounds, total))
}
