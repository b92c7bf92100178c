//! `cargo xtask bench` off Linux: the benchmarks read /proc, use epoll and stop whole process
//! groups, so elsewhere the task only says where it runs.

/// Entry point of `cargo xtask bench …`: fails, naming the platform it needs.
pub fn run(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("cargo xtask bench is Linux only (it reads /proc, uses epoll and process groups)")
}
