//! The reconcile journal (`Config::journal`): one line per reconcile start and end,
//! `<event> <replica> <pid> <cluster> <unix nanoseconds>`, appended by every replica to one
//! file, so that tests can prove no two replicas ever reconciled a cluster at once.

use std::io::Write as _;
use std::path::Path;
use std::time::SystemTime;

/// A reconcile starts or ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A reconcile of the cluster begins.
    Start,
    /// It has ended (whatever its outcome).
    End,
}

impl Event {
    fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::End => "end",
        }
    }
}

/// One line of the journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Start or end.
    pub event: Event,
    /// The replica's number (`--replica`).
    pub replica: i64,
    /// The process that wrote it.
    pub pid: u32,
    /// The cluster (`namespace/name`).
    pub cluster: String,
    /// When, in nanoseconds since the Unix epoch.
    pub at: u128,
}

/// Appends a line, dated now. One write of a short line with O_APPEND: lines of several
/// processes never interleave.
pub(crate) fn note(journal: Option<&Path>, event: Event, replica: i64, cluster: &str) {
    note_at(journal, event, replica, cluster, SystemTime::now());
}

/// Appends a line dated `at`: a reconcile stopped because the replica's standing lapsed
/// ends when it lapsed, for it never took a step after that.
pub(crate) fn note_at(
    journal: Option<&Path>,
    event: Event,
    replica: i64,
    cluster: &str,
    at: SystemTime,
) {
    let Some(path) = journal else { return };
    let nanos = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let line = format!(
        "{} {replica} {} {cluster} {nanos}\n",
        event.as_str(),
        std::process::id()
    );
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %syncsets_store::Chain(&e), "cannot write the reconcile journal");
    }
}

/// Reads a journal's text.
pub fn parse(text: &str) -> Result<Vec<Entry>, String> {
    text.lines()
        .map(|line| {
            let bad = || format!("bad journal line {line:?}");
            let f: Vec<&str> = line.split_whitespace().collect();
            let [event, replica, pid, cluster, at] = f[..] else {
                return Err(bad());
            };
            Ok(Entry {
                event: match event {
                    "start" => Event::Start,
                    "end" => Event::End,
                    _ => return Err(bad()),
                },
                replica: replica.parse().map_err(|_| bad())?,
                pid: pid.parse().map_err(|_| bad())?,
                cluster: cluster.to_string(),
                at: at.parse().map_err(|_| bad())?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_noted_parses_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        note(Some(&path), Event::Start, 2, "fleet/a");
        note(Some(&path), Event::End, 2, "fleet/a");
        let entries = parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let events: Vec<_> = entries.iter().map(|e| (e.event, e.replica)).collect();
        assert_eq!(events, [(Event::Start, 2), (Event::End, 2)]);
        assert!(
            entries
                .iter()
                .all(|e| e.pid == std::process::id() && e.cluster == "fleet/a")
        );
        assert!(entries[0].at <= entries[1].at);
        assert!(parse("start 1 2 fleet/a").is_err(), "a field missing");
        assert!(parse("begin 1 2 fleet/a 3").is_err(), "an unknown event");
    }
}
