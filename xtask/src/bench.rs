//! `cargo xtask bench [supervisor|gateway|hub|all|setup]`: the performance measurements of SPEC §11,
//! each run side by side with its peers (PM2, supervisord, nginx, HAProxy, FastAPI, Node `ws`) in
//! the same run.
//!
//! Nothing is installed silently: `check_tools` names every missing tool with the exact command
//! that installs it, and `cargo xtask bench setup` installs the Python and Node peers into
//! `target/bench-tools/` (a venv and an npm prefix) when asked to. All traffic stays on
//! 127.0.0.1, every loop is bounded in time, and every process started here is stopped (its
//! whole process group) when its guard drops. Results are printed as Markdown and written to
//! `target/bench/<suite>-<time>/report.md` next to the logs of every process of the run.

mod common;
mod floor_ws;
mod gateway;
mod http;
mod hub;
mod paced;
mod stats;
mod supervisor;
mod sys;
mod ws;

use anyhow::{Context, bail};

pub use common::Ctx;

const USAGE: &str = "cargo xtask bench <suite> [options]

suites:
  supervisor   kill -9 -> healthy again: orchestrator vs supervisord vs PM2 vs the floor
  gateway      forwarding throughput/latency/CPU per request vs nginx, HAProxy, the actix-web + awc floor
               and FastAPI+httpx, saturated (wrk) and paced at 5 000 req/s; health and dashboard p99
  hub          WebSocket fan-out latency and CPU per frame, 5 000 clients held, RSS and idle CPU vs a
               FastAPI broadcaster, the Node `ws` broadcaster and the floor (a minimal epoll
               broadcaster: one send(2) per client per event)
  all          the three above, in that order
  setup        install the Python and Node peers into target/bench-tools (pip; npm: pm2, ws)
  check        list the tools the suites need and how to install the missing ones

options:
  --quick          fewer repetitions and shorter runs (a smoke test, not for the report)
  --repeat N       gateway: rounds of the whole matrix (default 3); supervisor: kills per case (default 20)
  --poll-ms N      supervisor: the outside poller's period (default 10)
  --no-pin         do not pin processes to CPUs with taskset
  --no-nice        do not raise the priority of the benchmark's processes (default: nice -10 when root)
  --bin PATH       measure this orchestrator binary instead of building target/release/orchestrator
  --also-bin PATH  gateway, hub --cluster: a second orchestrator binary as an extra row of the same run (A/B a change)
  --rate N         hub: ticks published per second in the latency rows (default 100)
  --cluster        hub: instead of the usual matrix, the 1 000-client row on a single node against a
                   two-node cluster (redis-server, a primary and an edge, 500 clients on each;
                   --repeat N interleaved rounds, default 1); needs redis-server
";

/// Entry point of `cargo xtask bench …`.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let Some(suite) = args.first().map(String::as_str) else {
        print!("{USAGE}");
        return Ok(());
    };
    if suite == "floor-ws" {
        // The hub suite's floor server (started by the suite itself, see floor_ws.rs).
        return floor_ws::run(&args[1..]);
    }
    let mut opts = common::Options::default();
    let mut it = args[1..].iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => opts.quick = true,
            "--no-pin" => opts.no_pin = true,
            "--poll-ms" => {
                let n = it.next().context("--poll-ms needs a number")?;
                opts.poll_ms = Some(n.parse().with_context(|| format!("--poll-ms {n}"))?);
            }
            "--no-nice" => opts.no_nice = true,
            "--cluster" => opts.cluster = true,
            "--rate" => {
                let n = it.next().context("--rate needs a number of ticks per second")?;
                opts.rate = Some(n.parse().with_context(|| format!("--rate {n}"))?);
            }
            "--also-bin" => opts.also_bin = Some(it.next().context("--also-bin needs a path")?.into()),
            "--bin" => opts.bin = Some(it.next().context("--bin needs a path")?.into()),
            "--repeat" => {
                let n = it.next().context("--repeat needs a number")?;
                opts.repeat = Some(n.parse().with_context(|| format!("--repeat {n}"))?);
            }
            other => bail!("unknown option `{other}`\n\n{USAGE}"),
        }
    }
    match suite {
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        "setup" => common::setup(),
        "check" => {
            let tools = common::Tools::discover();
            tools.print_check();
            Ok(())
        }
        "supervisor" | "gateway" | "all" if opts.cluster => {
            bail!("--cluster belongs to the hub suite: cargo xtask bench hub --cluster")
        }
        "supervisor" | "gateway" | "hub" | "all" => {
            let mut ctx = Ctx::new(suite, opts)?;
            let result = match suite {
                "supervisor" => supervisor::run(&mut ctx),
                "gateway" => gateway::run(&mut ctx),
                "hub" if ctx.opts.cluster => hub::run_cluster(&mut ctx),
                "hub" => hub::run(&mut ctx),
                _ => supervisor::run(&mut ctx).and_then(|()| gateway::run(&mut ctx)).and_then(|()| hub::run(&mut ctx)),
            };
            ctx.finish()?;
            result
        }
        other => bail!("unknown bench suite `{other}`\n\n{USAGE}"),
    }
}
