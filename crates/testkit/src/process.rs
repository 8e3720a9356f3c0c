//! [`Process`]: a program a test starts (the `syncsets` binary, mostly), read up to its
//! first line of output and killed when dropped — the one way tests launch processes.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

/// A running process, killed (SIGKILL) when dropped.
pub struct Process {
    child: Child,
    /// The first line it printed (servers print where they listen).
    pub first_line: String,
}

impl Process {
    /// Starts `program` with `args`, its log (`SYNCSETS_LOG`) at `warn` on the test's
    /// stderr, and waits for its first line of output.
    pub fn start<I, S>(program: impl AsRef<OsStr>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Self::launch(program, args, None)
    }

    /// `program serve` (the syncsets binary) on a free loopback port over TLS, without
    /// controllers, with its data (and admin kubeconfig) under `data_dir` and `extra`
    /// arguments.
    pub fn serve(program: impl AsRef<OsStr>, data_dir: &Path, extra: &[&str]) -> Self {
        Self::start(program, Self::serve_args(data_dir, false, extra))
    }

    /// [`Process::serve`], with a debug log written to `log`.
    pub fn serve_logging_to(
        program: impl AsRef<OsStr>,
        data_dir: &Path,
        extra: &[&str],
        log: &Path,
    ) -> Self {
        Self::logging_to(program, Self::serve_args(data_dir, false, extra), log)
    }

    /// The arguments of `serve` on a free loopback port, with or without its controllers,
    /// its data under `data_dir`, then `extra`.
    pub fn serve_args(data_dir: &Path, controllers: bool, extra: &[&str]) -> Vec<OsString> {
        let mut args: Vec<OsString> = [
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--controllers",
            if controllers { "true" } else { "false" },
            "--data-dir",
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        args.push(data_dir.into());
        args.extend(extra.iter().map(OsString::from));
        args
    }

    /// [`Process::serve`] over plain HTTP.
    pub fn serve_plain(program: impl AsRef<OsStr>, data_dir: &Path, extra: &[&str]) -> Self {
        let mut args = vec!["--insecure-http"];
        args.extend_from_slice(extra);
        Self::serve(program, data_dir, &args)
    }

    /// [`Process::start`], with a debug log written to `log`.
    pub fn logging_to<I, S>(program: impl AsRef<OsStr>, args: I, log: &Path) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Self::launch(program, args, Some(log))
    }

    fn launch<I, S>(program: impl AsRef<OsStr>, args: I, log: Option<&Path>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let program = program.as_ref();
        let mut command = Command::new(program);
        command.args(args).stdout(Stdio::piped());
        match log {
            Some(path) => command
                .env("SYNCSETS_LOG", "debug")
                .stderr(std::fs::File::create(path).expect("creating the log")),
            None => command.env("SYNCSETS_LOG", "warn").stderr(Stdio::inherit()),
        };
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.to_string_lossy()));
        let stdout = child.stdout.as_mut().expect("stdout is piped");
        // One byte at a time: nothing after the first line is taken from the pipe, so
        // `lines()` reads on from there.
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while std::io::Read::read(stdout, &mut byte).unwrap_or(0) == 1 {
            line.push(byte[0]);
            if byte[0] == b'\n' {
                break;
            }
        }
        Self {
            child,
            first_line: String::from_utf8_lossy(&line).into_owned(),
        }
    }

    /// The first `http://` or `https://` address of the first line.
    pub fn url(&self) -> String {
        self.first_line
            .split_whitespace()
            .find(|w| w.starts_with("https://") || w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {:?}", self.first_line))
            .to_string()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The rest of its output, line by line.
    pub fn lines(&mut self) -> std::io::Lines<BufReader<ChildStdout>> {
        BufReader::new(self.child.stdout.take().expect("output read once")).lines()
    }

    /// Sends it SIGTERM.
    pub fn terminate(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "kill -TERM {}", self.child.id());
    }

    /// Waits up to `within` for it to exit; its exit status (`None`: still running).
    pub fn wait_for_exit(
        &mut self,
        within: std::time::Duration,
    ) -> Option<std::process::ExitStatus> {
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the process") {
                return Some(status);
            }
            if started.elapsed() >= within {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Kills it (SIGKILL) and waits for it.
    pub fn kill(mut self) {
        self.child.kill().expect("killing the process");
        self.child.wait().expect("waiting for the process");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The protocols (`HTTP/1.1`, `HTTP/2.0`) that the request lines of a hub's JSON log
/// (`--log-format json`, debug) name, each once, in order.
pub fn logged_protocols(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).expect("reading the log");
    let protocols: std::collections::BTreeSet<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "syncsets_api::request")
        .map(|v| {
            v["fields"]["protocol"]
                .as_str()
                .unwrap_or("none")
                .to_string()
        })
        .collect();
    protocols.into_iter().collect()
}
