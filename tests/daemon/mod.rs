//! The real `replisnap run` binary as a child process, for tests: a temp config, its log,
//! SIGTERM / SIGKILL, and what its storage holds. Include with `mod daemon;` (after
//! `mod support;`).
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use replisnap::storage::{LocalStorage, Manifest, Storage};

/// A temp directory with `replisnap.toml`, the storage directory and the daemon's log.
pub struct Setup {
    pub dir: tempfile::TempDir,
}

impl Setup {
    /// Config for the master at `addr`, snapshots on `schedule` into `<dir>/backups`,
    /// `retention` as TOML lines for `[retention]` (empty: no section).
    pub fn new(addr: &str, schedule: &str, retention: &str) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let s = Setup { dir };
        s.write_config(addr, schedule, retention);
        s
    }

    pub fn write_config(&self, addr: &str, schedule: &str, retention: &str) {
        // A free port for the HTTP listener (tests run daemons side by side).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut text = format!(
            "[source]\naddress = \"{addr}\"\n\n[replica]\nannounce_port = 6395\nstate_dir = \"{}\"\n\n\
             [snapshot]\nschedule = \"{schedule}\"\n\n[storage]\nkind = \"local\"\npath = \"{}\"\n\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\n",
            self.state_dir().display(),
            self.storage_path().display()
        );
        if !retention.is_empty() {
            text.push_str(&format!("\n[retention]\n{retention}\n"));
        }
        fs::write(self.config(), text).expect("write config");
    }

    /// Add TOML lines at the end of the config (a section of its own, e.g. `[verify]`).
    pub fn append_config(&self, text: &str) {
        let mut all = fs::read_to_string(self.config()).expect("config");
        all.push('\n');
        all.push_str(text);
        fs::write(self.config(), all).expect("write config");
    }

    /// Add a line to the `[replica]` table (`checkpoint_on_shutdown = false`).
    pub fn replica_line(&self, line: &str) {
        let text = fs::read_to_string(self.config()).expect("config");
        let text = text.replacen("[replica]\n", &format!("[replica]\n{line}\n"), 1);
        fs::write(self.config(), text).expect("write config");
    }

    /// The HTTP listener the config names.
    pub fn http_addr(&self) -> std::net::SocketAddr {
        let text = fs::read_to_string(self.config()).expect("config");
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("listen = "))
            .expect("[http] listen");
        line.trim_matches('"').parse().expect("listen address")
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("replisnap.toml")
    }

    /// `[replica] state_dir`: the shutdown checkpoint is in its `checkpoint/`.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn checkpoint_dir(&self) -> PathBuf {
        self.state_dir().join("checkpoint")
    }

    pub fn storage_path(&self) -> PathBuf {
        self.dir.path().join("backups")
    }

    pub fn storage(&self) -> LocalStorage {
        LocalStorage::new(self.storage_path())
    }

    /// Complete snapshots, newest first (none while the directory does not exist).
    pub fn snapshots(&self) -> Vec<Manifest> {
        if !self.storage_path().exists() {
            return Vec::new();
        }
        let l = self.storage().list().expect("list storage");
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        l.snapshots
    }

    /// Start `replisnap run` logging into `log_name` in the temp dir.
    pub fn start(&self, log_name: &str) -> Daemon {
        self.start_with_env(log_name, &[])
    }

    /// [`Setup::start`] with extra environment variables (`NOTIFY_SOCKET`, `RUST_LOG` …).
    pub fn start_with_env(&self, log_name: &str, env: &[(&str, &str)]) -> Daemon {
        let log = self.dir.path().join(log_name);
        let out = fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_replisnap"))
            .arg("run")
            .arg("--config")
            .arg(self.config())
            .env("RUST_LOG", "info,tokio_cron_scheduler=warn")
            // Never the test runner's own systemd (a CI service), only what a test gives.
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("start replisnap run");
        Daemon { child, log }
    }

    /// Run a verb of the binary with this config; (exit code, stdout, stderr).
    pub fn verb(&self, args: &[&str]) -> (i32, String, String) {
        self.verb_with_env(args, &[])
    }

    /// [`Setup::verb`] with extra environment variables (an S3 store's credentials …).
    pub fn verb_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_replisnap"))
            .args(args)
            .arg("--config")
            .arg(self.config())
            .envs(env.iter().copied())
            .output()
            .expect("run replisnap");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait (at most `timeout`) for the exit.
    pub fn terminate(mut self, timeout: Duration) -> (ExitStatus, String) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(ok.success());
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return (st, self.log_text());
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!("replisnap did not stop on SIGTERM:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log_text()
    }

    /// Panics with the log if the daemon exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!("replisnap exited with {st}:\n{}", self.log_text());
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `f` every 50 ms until it is true or `timeout` passes; false on timeout.
pub fn poll(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Files directly in the snapshot directories of `root` whose name starts with `prefix`.
pub fn files_named(root: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(root) else {
        return out;
    };
    for d in rd.flatten() {
        if let Ok(inner) = fs::read_dir(d.path()) {
            for f in inner.flatten() {
                if f.file_name().to_string_lossy().starts_with(prefix) {
                    out.push(f.path());
                }
            }
        }
    }
    out
}
