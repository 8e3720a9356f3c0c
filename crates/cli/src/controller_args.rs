//! Controller settings, shared by `serve` (controllers in-process) and `controller`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use syncsets_controller::{Config, MembershipSettings};

/// Controller settings.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerArgs {
    /// This replica's ordinal, shown in ClusterSync status as controlledByReplica [default:
    /// the number ending the host name (a StatefulSet pod's ordinal), else 0]
    #[arg(long, env = "SYNCSETS_REPLICA")]
    pub replica: Option<i64>,

    /// Reconciles running at once
    #[arg(long, env = "SYNCSETS_WORKERS", default_value_t = 64)]
    pub workers: usize,

    /// How often every set is reapplied to every cluster (drift correction), plus up to
    /// 10% jitter: e.g. 2h, 30m, 90s
    #[arg(long, env = "SYNCSETS_REAPPLY_INTERVAL", default_value = "2h", value_parser = parse_duration)]
    pub reapply_interval: Duration,

    /// Requests per second to one cluster, on average
    #[arg(long, env = "SYNCSETS_CLUSTER_QPS", default_value_t = 100.0)]
    pub cluster_qps: f64,

    /// Requests to one cluster beyond the average rate, at once
    #[arg(long, env = "SYNCSETS_CLUSTER_BURST", default_value_t = 200)]
    pub cluster_burst: u32,

    /// A request to a cluster gives up after this
    #[arg(long, env = "SYNCSETS_CLUSTER_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub cluster_request_timeout: Duration,

    /// A whole reconcile of one cluster gives up after this (and is retried)
    #[arg(long, env = "SYNCSETS_RECONCILE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub reconcile_timeout: Duration,

    /// Objects applied that are still progressing (a Deployment rolling out, a Job
    /// running…) are looked at again this often until healthy or failed
    #[arg(long, env = "SYNCSETS_HEALTH_RECHECK_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub health_recheck_interval: Duration,

    /// A replica silent for this long is considered gone, and its share of the work moves
    /// to the others (heartbeats are sent five times as often; a replica that has not
    /// stored one for two thirds of it stops working first)
    #[arg(long, env = "SYNCSETS_REPLICA_TTL", default_value = "10s", value_parser = parse_duration)]
    pub replica_ttl: Duration,

    /// Append a line to this file when a reconcile starts and ends (debugging aid)
    #[arg(long, env = "SYNCSETS_RECONCILE_JOURNAL")]
    pub reconcile_journal: Option<PathBuf>,
}

/// How a long-running process stops on SIGTERM (or SIGINT).
#[derive(Debug, Clone, clap::Args)]
pub struct ShutdownArgs {
    /// On SIGTERM, how long requests and reconciles in flight may take to finish before
    /// the process exits anyway (for `serve`, counted after --shutdown-delay-duration:
    /// the pod's terminationGracePeriodSeconds must exceed the two together)
    #[arg(long, env = "SYNCSETS_SHUTDOWN_GRACE_PERIOD", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_grace_period: Duration,
}

impl ControllerArgs {
    /// The controller configuration.
    pub fn config(&self) -> Config {
        let mut config = Config {
            replica: self.replica.unwrap_or_else(ordinal_from_hostname),
            workers: self.workers,
            reapply_interval: self.reapply_interval,
            reconcile_timeout: self.reconcile_timeout,
            health_recheck: self.health_recheck_interval,
            journal: self.reconcile_journal.clone(),
            ..Config::default()
        };
        config.clients.qps = self.cluster_qps;
        config.clients.burst = self.cluster_burst;
        config.clients.request_timeout = self.cluster_request_timeout;
        config.membership = MembershipSettings::with_ttl(self.replica_ttl);
        config
    }
}

/// The number ending the host name (`syncsets-controller-2` → 2), else 0.
fn ordinal_from_hostname() -> i64 {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .unwrap_or_default();
    host.trim()
        .rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Parses a Go duration: `90s`, `30m`, `2h`, `1h30m`, `500ms`.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    match syncsets_api::parse_go_duration(text.trim()) {
        Some(d) => Ok(d),
        None => bail!("invalid duration {text:?}: expected e.g. 500ms, 90s, 30m, 2h or 1h30m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_like_durations() {
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("2 hours").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("").is_err());
    }
}
