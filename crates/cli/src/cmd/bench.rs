//! `syncsets bench`: throughput and latency beside raw SQL baselines (filled in below).

/// Arguments of `bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {}

/// Runs the benchmarks.
pub async fn run(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet implemented")
}
