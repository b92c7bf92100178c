//! What every suite shares: options, tool discovery (with install commands), the run directory
//! and report, process guards that stop whole process groups, CPU pinning, and /proc readings
//! (RSS, CPU time, the pid listening on a port, the machine).

use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

/// Command-line options shared by the suites.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// Fewer repetitions and shorter runs.
    pub quick: bool,
    /// Repetitions (meaning depends on the suite).
    pub repeat: Option<usize>,
    /// Never pin to CPUs.
    pub no_pin: bool,
    /// The supervisor suite's poll period in ms.
    pub poll_ms: Option<u64>,
    /// Keep the default scheduling priority.
    pub no_nice: bool,
    /// A prebuilt orchestrator binary to measure (no build).
    pub bin: Option<PathBuf>,
    /// A second orchestrator binary, measured as an extra row (gateway).
    pub also_bin: Option<PathBuf>,
    /// Hub: the two-node cluster comparison instead of the usual matrix.
    pub cluster: bool,
    /// Hub: ticks published per second in the latency rows (default 100).
    pub rate: Option<u32>,
}

/// Where the benchmark finds its tools.
#[derive(Debug, Clone)]
pub struct Tools {
    /// `target/bench-tools`.
    pub dir: PathBuf,
    /// `wrk` on PATH.
    pub wrk: Option<PathBuf>,
    /// `nginx` on PATH (or /usr/sbin).
    pub nginx: Option<PathBuf>,
    /// `haproxy` on PATH (or /usr/sbin).
    pub haproxy: Option<PathBuf>,
    /// `taskset` on PATH.
    pub taskset: Option<PathBuf>,
    /// The venv's python (with supervisor, fastapi, uvicorn, httpx, websockets).
    pub venv_python: Option<PathBuf>,
    /// `supervisord` from the venv.
    pub supervisord: Option<PathBuf>,
    /// `pm2` from the npm prefix.
    pub pm2: Option<PathBuf>,
    /// `node` on PATH.
    pub node: Option<PathBuf>,
    /// The npm prefix's `node_modules`, when the `ws` package is installed there.
    pub node_ws: Option<PathBuf>,
    /// `python3` on PATH (for the small python service when there is no venv).
    pub python3: Option<PathBuf>,
    /// `redis-server` on PATH (the hub suite's `--cluster` comparison).
    pub redis_server: Option<PathBuf>,
}

/// PyPI packages of the Python peers.
pub const PIP_PACKAGES: &[&str] = &["supervisor", "fastapi", "uvicorn[standard]", "httpx", "websockets"];

/// npm packages of the Node peers: PM2 (supervisor suite) and `ws` (the hub suite's broadcaster).
pub const NPM_PACKAGES: &[&str] = &["pm2", "ws"];

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn existing(p: PathBuf) -> Option<PathBuf> {
    p.is_file().then_some(p)
}

impl Tools {
    /// Looks everything up; nothing is installed.
    pub fn discover() -> Tools {
        let dir = super_root().join("target/bench-tools");
        let venv = dir.join("venv/bin");
        let venv_python = existing(venv.join("python")).filter(|p| {
            Command::new(p)
                .args(["-c", "import fastapi, uvicorn, httpx, websockets"])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        Tools {
            wrk: on_path("wrk"),
            nginx: on_path("nginx"),
            haproxy: on_path("haproxy"),
            taskset: on_path("taskset"),
            supervisord: existing(venv.join("supervisord")),
            pm2: existing(dir.join("node/node_modules/.bin/pm2")),
            node: on_path("node"),
            node_ws: existing(dir.join("node/node_modules/ws/package.json")).map(|_| dir.join("node/node_modules")),
            python3: on_path("python3"),
            redis_server: on_path("redis-server"),
            venv_python,
            dir,
        }
    }

    /// Prints what is there and the exact command for what is missing.
    pub fn print_check(&self) {
        let show = |name: &str, p: &Option<PathBuf>, how: &str| match p {
            Some(p) => println!("  ok       {name:<12} {}", p.display()),
            None => println!("  MISSING  {name:<12} install: {how}"),
        };
        println!("bench tools:");
        show("wrk", &self.wrk, "apt-get install -y wrk");
        show("nginx", &self.nginx, "apt-get install -y nginx");
        show("haproxy", &self.haproxy, "apt-get install -y haproxy");
        show("taskset", &self.taskset, "apt-get install -y util-linux");
        show("python3", &self.python3, "apt-get install -y python3 python3-venv");
        show(
            "venv",
            &self.venv_python,
            "cargo xtask bench setup   (python3 -m venv target/bench-tools/venv && pip install ...)",
        );
        show("supervisord", &self.supervisord, "cargo xtask bench setup");
        show("node", &self.node, "apt-get install -y nodejs npm");
        show("pm2", &self.pm2, "cargo xtask bench setup   (npm install --prefix target/bench-tools/node pm2 ws)");
        show(
            "ws (npm)",
            &self.node_ws.as_ref().map(|m| m.join("ws")),
            "cargo xtask bench setup   (npm install --prefix target/bench-tools/node pm2 ws)",
        );
        show("redis-server", &self.redis_server, "apt-get install -y redis-server   (hub --cluster only)");
    }

    /// Fails with the install commands when any of `needed` is missing.
    pub fn require(&self, needed: &[&str]) -> anyhow::Result<()> {
        let mut missing = Vec::new();
        for n in needed {
            let (present, how) = match *n {
                "wrk" => (self.wrk.is_some(), "apt-get install -y wrk"),
                "nginx" => (self.nginx.is_some(), "apt-get install -y nginx"),
                "haproxy" => (self.haproxy.is_some(), "apt-get install -y haproxy"),
                "node" => (self.node.is_some(), "apt-get install -y nodejs npm"),
                "ws" => (self.node_ws.is_some(), "cargo xtask bench setup"),
                "venv" => (self.venv_python.is_some(), "cargo xtask bench setup"),
                "supervisord" => (self.supervisord.is_some(), "cargo xtask bench setup"),
                "pm2" => (self.pm2.is_some(), "cargo xtask bench setup"),
                "python3" => (self.python3.is_some(), "apt-get install -y python3 python3-venv"),
                "redis-server" => (self.redis_server.is_some(), "apt-get install -y redis-server"),
                _ => (true, ""),
            };
            if !present {
                missing.push(format!("  {n}: {how}"));
            }
        }
        if !missing.is_empty() {
            bail!("missing tools (nothing is installed silently):\n{}", missing.join("\n"));
        }
        Ok(())
    }

    /// The python that runs the small service: the venv's if present, else python3.
    pub fn service_python(&self) -> Option<PathBuf> {
        self.venv_python.clone().or_else(|| self.python3.clone())
    }
}

/// `cargo xtask bench setup`: installs the Python and Node peers into `target/bench-tools`.
pub fn setup() -> anyhow::Result<()> {
    let tools = Tools::discover();
    fs::create_dir_all(&tools.dir).context("creating target/bench-tools")?;
    let venv = tools.dir.join("venv");
    let python = tools.python3.clone().context("python3 is missing: apt-get install -y python3 python3-venv")?;
    let steps: Vec<(PathBuf, Vec<String>)> = vec![
        (python, vec!["-m".into(), "venv".into(), venv.display().to_string()]),
        (
            venv.join("bin/pip"),
            ["install", "--quiet"]
                .iter()
                .map(|s| (*s).to_owned())
                .chain(PIP_PACKAGES.iter().map(|s| (*s).to_owned()))
                .collect(),
        ),
        (
            PathBuf::from("npm"),
            ["install".to_owned(), "--prefix".to_owned(), tools.dir.join("node").display().to_string()]
                .into_iter()
                .chain(NPM_PACKAGES.iter().map(|s| (*s).to_owned()))
                .collect(),
        ),
    ];
    for (program, args) in steps {
        println!("$ {} {}", program.display(), args.join(" "));
        let status =
            Command::new(&program).args(&args).status().with_context(|| format!("running {}", program.display()))?;
        if !status.success() {
            bail!("{} failed ({status})", program.display());
        }
    }
    let tools = Tools::discover();
    tools.print_check();
    if tools.wrk.is_none() || tools.nginx.is_none() || tools.haproxy.is_none() {
        println!("\nwrk, nginx and haproxy come from the system packages: apt-get install -y wrk nginx haproxy");
    }
    Ok(())
}

/// The workspace root (xtask's parent).
pub fn super_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// One benchmark run: its directory, tools, pinning and report.
pub struct Ctx {
    /// Options.
    pub opts: Options,
    /// Tools found.
    pub tools: Tools,
    /// `target/release/orchestrator`.
    pub orchestrator: PathBuf,
    /// This run's directory under `target/bench/`.
    pub dir: PathBuf,
    /// (CPU for the system under test, CPU for the load side), when pinning.
    pub pin: Option<(usize, usize)>,
    report: String,
}

impl Ctx {
    /// Builds the release binary, creates the run directory and writes the machine header.
    pub fn new(suite: &str, opts: Options) -> anyhow::Result<Ctx> {
        let root = super_root();
        let orchestrator = match &opts.bin {
            Some(bin) => {
                if !bin.is_file() {
                    bail!("--bin {}: no such file", bin.display());
                }
                bin.canonicalize().with_context(|| format!("resolving {}", bin.display()))?
            }
            None => {
                let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
                println!("$ cargo build --release -p orchestrator");
                let status = Command::new(&cargo)
                    .args(["build", "--release", "-p", "orchestrator"])
                    .status()
                    .context("running cargo build --release")?;
                if !status.success() {
                    bail!("cargo build --release -p orchestrator failed ({status})");
                }
                root.join("target/release/orchestrator")
            }
        };
        let dir = root.join("target/bench").join(format!("{suite}-{}", unix_secs()));
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let tools = Tools::discover();
        // Every process of the run (servers, peers, wrk, receivers) inherits this niceness, so on
        // a shared machine other people's builds disturb the measurement less, and equally for all.
        let niced = !opts.no_nice
            && Command::new("renice")
                .args(["-n", "-10", "-p", &std::process::id().to_string()])
                .output()
                .is_ok_and(|o| o.status.success());
        let cpus = cpu_count();
        let pin = (!opts.no_pin && tools.taskset.is_some() && cpus >= 2).then_some((0, 1));
        let mut ctx = Ctx { opts, tools, orchestrator, dir, pin, report: String::new() };
        let m = Machine::read();
        ctx.line(&format!("# cargo xtask bench {suite}\n"));
        ctx.line(&format!(
            "- date: {}\n- orchestrator: {} ({})\n- machine: {} CPUs, {}, {} MiB RAM, kernel {}\n- load average at start: {}\n- pinning: {}\n- priority: {}\n- run directory: {}\n",
            m.date,
            ctx.orchestrator.display(),
            git_describe(),
            m.cpus,
            m.cpu_model,
            m.mem_mib,
            m.kernel,
            m.load,
            match pin {
                Some((sut, load)) => format!("system under test on CPU {sut}, load generator and upstreams on CPU {load} (taskset)"),
                None => "none".into(),
            },
            if niced { "nice -10 for every process of the run (the machine is shared)" } else { "default" },
            ctx.dir.display()
        ));
        Ok(ctx)
    }

    /// Appends to the report and prints it.
    pub fn line(&mut self, text: &str) {
        println!("{text}");
        self.report.push_str(text);
        self.report.push('\n');
    }

    /// Prints progress without adding it to the report.
    pub fn note(&self, text: &str) {
        println!("  .. {text}");
    }

    /// A fresh subdirectory of the run directory.
    pub fn subdir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let d = self.dir.join(name);
        if d.exists() {
            fs::remove_dir_all(&d).with_context(|| format!("clearing {}", d.display()))?;
        }
        fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        Ok(d)
    }

    /// The CPU of the system under test, when pinning.
    pub fn sut_cpu(&self) -> Option<usize> {
        self.pin.map(|p| p.0)
    }

    /// The CPU of the load side, when pinning.
    pub fn load_cpu(&self) -> Option<usize> {
        self.pin.map(|p| p.1)
    }

    /// A command for `program`, pinned to `cpu` with taskset when pinning is on.
    pub fn command(&self, cpu: Option<usize>, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match (cpu, &self.tools.taskset) {
            (Some(cpu), Some(taskset)) if self.pin.is_some() => {
                let mut c = Command::new(taskset);
                c.arg("-c").arg(cpu.to_string()).arg(program);
                c
            }
            _ => Command::new(program),
        }
    }

    /// Writes the report file.
    pub fn finish(&mut self) -> anyhow::Result<()> {
        let m = Machine::read();
        self.line(&format!("\n- load average at end: {}", m.load));
        let path = self.dir.join("report.md");
        fs::write(&path, &self.report).with_context(|| format!("writing {}", path.display()))?;
        println!("\nreport: {}", path.display());
        Ok(())
    }
}

/// Facts about the machine for the report.
pub struct Machine {
    /// UTC date and time.
    pub date: String,
    /// Logical CPUs.
    pub cpus: usize,
    /// `model name` of /proc/cpuinfo.
    pub cpu_model: String,
    /// Total memory.
    pub mem_mib: u64,
    /// Kernel release.
    pub kernel: String,
    /// /proc/loadavg's first three fields.
    pub load: String,
}

impl Machine {
    /// Reads /proc.
    pub fn read() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let mem_mib = fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix("MemTotal:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .unwrap_or(0)
            / 1024;
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned();
        let load = fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        let date = Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        Machine { date, cpus: cpu_count(), cpu_model, mem_mib, kernel, load }
    }
}

/// Logical CPUs of the machine (not of our affinity mask).
pub fn cpu_count() -> usize {
    fs::read_to_string("/proc/cpuinfo")
        .map(|s| s.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(1)
        .max(1)
}

/// Seconds since the epoch.
pub fn unix_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Microseconds since the epoch (the clock shared by publisher and receivers).
pub fn unix_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)).unwrap_or(0)
}

#[path = "../../../tests/support/ports.rs"]
mod ports;

/// A port not handed out before in this run, free now (see `tests/support/ports.rs`).
pub fn free_port() -> anyhow::Result<u16> {
    ports::unique_port().context("finding a free port")
}

/// `127.0.0.1:port`.
pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A child process (and its process group) that is stopped when dropped.
pub struct Proc {
    name: String,
    child: Option<Child>,
}

impl Proc {
    /// Spawns `cmd` in its own process group with stdout/stderr to `log`.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> anyhow::Result<Proc> {
        use std::os::unix::process::CommandExt;
        let out = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {name} ({cmd:?})"))?;
        Ok(Proc { name: name.to_owned(), child: Some(child) })
    }

    /// Its pid (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// SIGTERM to the group, up to 5 s, then SIGKILL to the group; reaps the child.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let group = format!("-{}", child.id());
        let _ = Command::new("kill").args(["-s", "TERM", "--", &group]).stderr(Stdio::null()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    println!("  .. {} did not stop after SIGTERM; SIGKILL", self.name);
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
        // Whatever is left of the group (grandchildren) goes too.
        let _ = Command::new("kill").args(["-s", "KILL", "--", &group]).stderr(Stdio::null()).status();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends SIGKILL to one pid.
pub fn kill9(pid: u32) -> anyhow::Result<()> {
    super::sys::kill9(pid).with_context(|| format!("kill -9 {pid}"))
}

/// VmRSS of a process in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU time of every thread of a process, in nanoseconds (from schedstat).
pub fn cpu_ns(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    for entry in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        if let Ok(s) = fs::read_to_string(entry.path().join("schedstat")) {
            total += s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    Some(total)
}

/// User plus system CPU time of a process from `/proc/PID/stat` (`utime` + `stime`, clock ticks
/// of `sysconf(_SC_CLK_TCK)`, so 10 ms steps at the usual 100 Hz), in nanoseconds.
pub fn stat_cpu_ns(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name: state (3), ppid (4), … utime (14), stime (15).
    let rest = stat.rsplit_once(')')?.1;
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    let hz = super::sys::clock_ticks_per_sec().max(1);
    Some((utime + stime).saturating_mul(1_000_000_000) / hz)
}

/// CPU time of every process in process group `pgid`, in nanoseconds (nginx's workers,
/// uvicorn's children: everything a server under test runs).
pub fn group_cpu_ns(pgid: u32) -> u64 {
    let Ok(dir) = fs::read_dir("/proc") else { return 0 };
    let mut total = 0;
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // Fields after the command name: state, ppid, pgrp, …
        let pgrp = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(2)?.parse::<u32>().ok());
        if pgrp == Some(pgid) {
            total += cpu_ns(pid).unwrap_or(0);
        }
    }
    total
}

/// The pid of the process that listens on 127.0.0.1:`port` (searching /proc).
pub fn listener_pid(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "0A" {
                continue;
            }
            let local_port = f[1].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) {
                inodes.push(format!("socket:[{}]", f[9]));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            if let Ok(target) = fs::read_link(fd.path())
                && inodes.iter().any(|i| target.as_os_str() == i.as_str())
            {
                return Some(pid);
            }
        }
    }
    None
}

/// Waits until `f` returns `Some`, polling every `every`, for at most `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(every);
    }
}

/// CPU utilisation per CPU between two /proc/stat readings, in percent.
pub struct CpuSampler {
    before: Vec<Vec<u64>>,
}

fn read_proc_stat() -> Vec<Vec<u64>> {
    fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| l.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect())
        .collect()
}

impl CpuSampler {
    /// Takes the first reading.
    pub fn start() -> CpuSampler {
        CpuSampler { before: read_proc_stat() }
    }

    /// Busy percent of each CPU since `start`, e.g. "CPU0 99 %, CPU1 61 %".
    pub fn finish(&self) -> String {
        Self::format(&self.finish_values())
    }

    /// Busy percent of each CPU since `start`.
    pub fn finish_values(&self) -> Vec<f64> {
        self.finish_detail().into_iter().map(|(busy, _)| busy).collect()
    }

    /// (busy percent, of which steal: time the hypervisor gave to someone else) of each CPU
    /// since `start`.
    pub fn finish_detail(&self) -> Vec<(f64, f64)> {
        let after = read_proc_stat();
        let mut out = Vec::new();
        for (a, b) in self.before.iter().zip(after.iter()) {
            let d: Vec<u64> = a.iter().zip(b.iter()).map(|(x, y)| y.saturating_sub(*x)).collect();
            let total: u64 = d.iter().sum();
            let idle = d.get(3).copied().unwrap_or(0) + d.get(4).copied().unwrap_or(0);
            let steal = d.get(7).copied().unwrap_or(0);
            let pct = |v: u64| if total == 0 { 0.0 } else { 100.0 * v as f64 / total as f64 };
            out.push((pct(total.saturating_sub(idle)), pct(steal)));
        }
        out
    }

    /// "CPU0 99 %, CPU1 61 %" for the values of [`CpuSampler::finish_values`].
    pub fn format(busy: &[f64]) -> String {
        let mut out = String::new();
        for (i, busy) in busy.iter().enumerate() {
            if !out.is_empty() {
                out.push_str(", ");
            }
            let _ = write!(out, "CPU{i} {busy:.0} %");
        }
        out
    }
}

/// Reads the token the orchestrator CLI prints for `token create`.
pub fn create_token(
    orchestrator: &Path,
    config: &Path,
    data_dir: &Path,
    name: &str,
    role: &str,
) -> anyhow::Result<String> {
    let out = Command::new(orchestrator)
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["token", "create", name, "--role", role])
        .env("RUST_LOG", "warn")
        .output()
        .context("running orchestrator token create")?;
    if !out.status.success() {
        bail!("token create failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Milliseconds of a duration as f64.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Pins every thread of this process (and so the threads and children it starts later) to `cpu`,
/// or to every CPU with `None`. Does nothing when pinning is off.
pub fn pin_self(ctx: &Ctx, cpu: Option<usize>) {
    let (Some(taskset), Some(_)) = (&ctx.tools.taskset, ctx.pin) else { return };
    let list = match cpu {
        Some(c) => c.to_string(),
        None => format!("0-{}", cpu_count() - 1),
    };
    let _ = Command::new(taskset).args(["-a", "-p", "-c", &list, &std::process::id().to_string()]).output();
}

/// The soft limit on open files of this process.
pub fn open_files_limit() -> Option<u64> {
    let s = fs::read_to_string("/proc/self/limits").ok()?;
    let line = s.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The commit of the workspace (and whether it has local changes), for the report.
pub fn git_describe() -> String {
    let run = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(super_root())
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let head = run(&["rev-parse", "--short", "HEAD"]);
    let dirty = !run(&["status", "--porcelain", "--untracked-files=no"]).is_empty();
    format!("workspace at {head}{}", if dirty { " with local changes" } else { "" })
}

impl Options {
    /// The hub's tick rate, per second.
    pub fn tick_rate(&self) -> u32 {
        self.rate.unwrap_or(100).max(1)
    }
}
