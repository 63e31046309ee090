//! A replisnap under soak: its config (snapshots on a short schedule; the local one with
//! the stream archive on, into local storage on a tmpfs; the S3 one into a bucket, built
//! by tests/soak/s3.rs), its process (start, SIGKILL, SIGTERM, with its environment: a
//! faked clock, S3 credentials), and what can be read from outside: `/metrics` (counters
//! carried over restarts), RSS from /proc, the lag against the master, the storage listing
//! and leftovers. It never injects a fault.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use replisnap::storage::s3::S3Storage;
use replisnap::storage::{LocalStorage, Manifest, Storage};

use crate::cluster::{master_offset, Tmpfs};
use crate::daemon::{poll, Daemon, Setup};
use crate::http_support::req;
use crate::support::TestServer;

/// The counters the report and the consistency checks read (summed over their labels).
pub const COUNTERS: &[&str] = &[
    "replisnap_link_errors_total",
    "replisnap_full_resyncs_total",
    "replisnap_partial_resyncs_total",
    "replisnap_snapshots_total{result=\"ok\"}",
    "replisnap_snapshots_total{result=\"error\"}",
    "replisnap_uploads_total{result=\"ok\"}",
    "replisnap_uploads_total{result=\"error\"}",
    "replisnap_upload_retries_total",
];

pub struct Replisnap {
    pub setup: Setup,
    /// The local storage's filesystem (None: S3 storage, read through `s3`).
    pub fs: Option<Tmpfs>,
    pub s3: Option<S3Storage>,
    /// Environment of the daemon and its verbs (libfaketime, S3 credentials).
    pub env: Vec<(String, String)>,
    pub daemon: Option<Daemon>,
    http: SocketAddr,
    /// Counter values of the processes killed so far (a new process starts from 0).
    base: HashMap<&'static str, f64>,
    pub started: Instant,
    pub starts: u32,
    /// The last [`Replisnap::time_to_lag`]'s samples: seconds since it began, and the lag
    /// (None: link down or no scrape), for the report of a slow recovery.
    trace: std::sync::Mutex<Vec<(f64, Option<i64>)>>,
}

/// `/metrics` parsed: series (with labels) to value.
pub struct Scrape(HashMap<String, f64>);

impl Scrape {
    /// The value of `name`: a series with labels exactly, or summed over all its labels.
    pub fn get(&self, name: &str) -> f64 {
        if name.contains('{') {
            return self.0.get(name).copied().unwrap_or(0.0);
        }
        self.0
            .iter()
            .filter(|(k, _)| *k == name || k.strip_prefix(name).is_some_and(|r| r.starts_with('{')))
            .map(|(_, v)| v)
            .sum()
    }
}

impl Replisnap {
    /// Config and storage; the daemon is not started. `schedule` is a six-field cron.
    pub fn new(proxy: &str, schedule: &str, keep_last: u32, fs_mib: u64) -> Result<Self, String> {
        let setup = Setup::new(proxy, schedule, &format!("keep_last = {keep_last}"));
        let fs = Tmpfs::mount(&setup.dir.path().join("fs"), fs_mib)?;
        let storage = fs.path().join("backups");
        let text = std::fs::read_to_string(setup.config()).map_err(|e| e.to_string())?;
        let old = format!("path = \"{}\"", setup.storage_path().display());
        assert!(text.contains(&old), "the config names the storage path");
        let text = text.replace(&old, &format!("path = \"{}\"", storage.display()));
        std::fs::write(setup.config(), text).map_err(|e| e.to_string())?;
        setup.append_config("[archive]\nenabled = true\nsegment_seconds = 2\n");
        let http = setup.http_addr();
        Ok(Replisnap {
            setup,
            fs: Some(fs),
            s3: None,
            env: Vec::new(),
            daemon: None,
            http,
            base: HashMap::new(),
            started: Instant::now(),
            starts: 0,
            trace: Default::default(),
        })
    }

    /// Config for the master behind `proxy` storing into S3 (`storage`: the `[storage]`
    /// table's lines), read back through `reader`; `env` for the daemon and its verbs.
    pub fn new_s3(
        proxy: &str,
        schedule: &str,
        keep_last: u32,
        storage: &str,
        reader: S3Storage,
        env: Vec<(String, String)>,
    ) -> Self {
        let setup = Setup::new(proxy, schedule, &format!("keep_last = {keep_last}"));
        let text = std::fs::read_to_string(setup.config()).expect("config");
        let old = format!(
            "[storage]\nkind = \"local\"\npath = \"{}\"\n",
            setup.storage_path().display()
        );
        assert!(text.contains(&old), "the config's [storage] table");
        let text = text.replace(&old, &format!("[storage]\n{storage}\n"));
        std::fs::write(setup.config(), text).expect("write config");
        let http = setup.http_addr();
        Replisnap {
            setup,
            fs: None,
            s3: Some(reader),
            env,
            daemon: None,
            http,
            base: HashMap::new(),
            started: Instant::now(),
            starts: 0,
            trace: Default::default(),
        }
    }

    pub fn storage_path(&self) -> PathBuf {
        self.fs
            .as_ref()
            .expect("local storage")
            .path()
            .join("backups")
    }

    /// A verb of the binary with this config and environment: (exit code, stdout, stderr).
    pub fn verb(&self, args: &[&str]) -> (i32, String, String) {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.setup.verb_with_env(args, &env)
    }

    /// Start `replisnap run` and wait (≤ 120 s) for `/readyz` 200.
    pub fn start(&mut self) -> Result<(), String> {
        self.starts += 1;
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut d = self
            .setup
            .start_with_env(&format!("replisnap-{}.log", self.starts), &env);
        self.started = Instant::now();
        let http = self.http;
        let ready = poll(Duration::from_secs(120), || {
            d.assert_running();
            std::net::TcpStream::connect(http).is_ok() && req(http, "GET", "/readyz").status == 200
        });
        let log = d.log_text();
        self.daemon = Some(d);
        if ready {
            Ok(())
        } else {
            Err(format!(
                "replisnap not ready within 120 s:\n{}",
                tail(&log, 30)
            ))
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Daemon::pid)
    }

    /// SIGKILL; the counters it had are kept as the base of the next process's.
    pub fn kill9(&mut self) {
        if let Ok(s) = self.scrape() {
            for name in COUNTERS {
                *self.base.entry(name).or_default() += s.get(name);
            }
        }
        if let Some(d) = self.daemon.take() {
            d.kill9();
        }
    }

    /// SIGTERM and wait (≤ 120 s): the exit status and the log.
    pub fn terminate(&mut self) -> Option<(std::process::ExitStatus, String)> {
        self.daemon
            .take()
            .map(|d| d.terminate(Duration::from_secs(120)))
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.daemon
            .as_ref()
            .map(|d| tail(&d.log_text(), lines))
            .unwrap_or_default()
    }

    pub fn scrape(&self) -> Result<Scrape, String> {
        let r = req(self.http, "GET", "/metrics");
        if r.status != 200 {
            return Err(format!("GET /metrics answered {}", r.status));
        }
        let mut m = HashMap::new();
        for line in r.body.lines().filter(|l| !l.starts_with('#')) {
            if let Some((k, v)) = line.rsplit_once(' ') {
                if let Ok(v) = v.parse() {
                    m.insert(k.to_string(), v);
                }
            }
        }
        Ok(Scrape(m))
    }

    /// A counter over the whole run (killed processes included).
    pub fn total(&self, name: &'static str) -> f64 {
        let now = self.scrape().map(|s| s.get(name)).unwrap_or(0.0);
        self.base.get(name).copied().unwrap_or(0.0) + now
    }

    /// The master's offset minus ours, when our link is up (else None).
    pub fn lag(&self, master: &TestServer) -> Option<i64> {
        let m = master_offset(master);
        let s = self.scrape().ok()?;
        if s.get("replisnap_master_link_up") < 1.0 {
            return None;
        }
        let ours = s.get("replisnap_replication_offset_bytes") as i64;
        (m >= ours && m >= 0).then_some(m - ours)
    }

    /// Time until the lag is under `limit` bytes (polled every 50 ms), None after `timeout`.
    /// The samples are kept for [`Replisnap::lag_trace`].
    pub fn time_to_lag(
        &self,
        master: &TestServer,
        limit: i64,
        timeout: Duration,
    ) -> Option<Duration> {
        let t = Instant::now();
        let mut trace = Vec::new();
        let mut done = None;
        while t.elapsed() < timeout {
            let lag = self.lag(master);
            trace.push((t.elapsed().as_secs_f64(), lag));
            if lag.is_some_and(|l| l < limit) {
                done = Some(t.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Ok(mut k) = self.trace.lock() {
            *k = trace;
        }
        done
    }

    /// The last [`Replisnap::time_to_lag`]'s samples, about every 250 ms: "0.00s down,
    /// 0.25s 3.1MB, …".
    pub fn lag_trace(&self) -> String {
        let Ok(trace) = self.trace.lock() else {
            return String::new();
        };
        let mut out = Vec::new();
        let mut next = 0.0;
        for (i, (at, lag)) in trace.iter().enumerate() {
            if *at < next && i + 1 != trace.len() {
                continue;
            }
            next = at + 0.25;
            out.push(match lag {
                Some(l) => format!("{at:.2}s {:.2}MB", *l as f64 / 1e6),
                None => format!("{at:.2}s down"),
            });
        }
        out.join(", ")
    }

    /// Resident memory of the daemon in bytes (/proc/PID/status VmRSS).
    pub fn rss(&self) -> Option<u64> {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let kb: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb * 1024)
    }

    /// `replisnap snapshot --wait` (retried while one is already running): the id.
    pub fn snapshot_now(&self) -> Result<String, String> {
        let mut last = String::new();
        for _ in 0..20 {
            let (code, out, err) = self.verb(&["snapshot", "--wait", "--timeout", "120"]);
            if code == 0 {
                return Ok(out.trim().to_string());
            }
            last = format!("exit {code}: {}{}", out.trim(), err.trim());
            std::thread::sleep(Duration::from_millis(500));
        }
        Err(last)
    }

    /// `replisnap snapshot --wait` once: true when it was stored.
    pub fn snapshot_once(&self) -> (bool, String) {
        let (code, out, err) = self.verb(&["snapshot", "--wait", "--timeout", "120"]);
        (code == 0, format!("{}{}", out.trim(), err.trim()))
    }

    /// The stored snapshots, newest first, and the listing's problems (partial or refused
    /// snapshots a reader would see).
    pub fn listing(&self) -> Result<(Vec<Manifest>, Vec<String>), String> {
        if let Some(s3) = &self.s3 {
            let l = s3.list().map_err(|e| e.to_string())?;
            let problems = l.problems.iter().map(|p| format!("{p:?}")).collect();
            return Ok((l.snapshots, problems));
        }
        let p = self.storage_path();
        if !p.exists() {
            return Ok((Vec::new(), Vec::new()));
        }
        let l = LocalStorage::new(p).list().map_err(|e| e.to_string())?;
        let problems = l.problems.iter().map(|p| format!("{p:?}")).collect();
        Ok((l.snapshots, problems))
    }

    /// `replisnap fetch --json ARGS OUT` with this config: the JSON document, or why not.
    pub fn fetch(&self, args: &[&str], out: &std::path::Path) -> Result<serde_json::Value, String> {
        let mut all = vec!["fetch", "--json"];
        all.extend_from_slice(args);
        let out = out.display().to_string();
        all.push(&out);
        let (code, stdout, stderr) = self.verb(&all);
        if code != 0 {
            return Err(format!("exit {code}: {}", stderr.trim()));
        }
        serde_json::from_str(&stdout).map_err(|e| format!("{e}: {stdout}"))
    }

    /// Temporaries and incomplete snapshot directories older than `age` (a write in
    /// flight is younger; a small snapshot takes well under a second).
    pub fn leftovers(&self, age: Duration) -> Vec<String> {
        let root = self.storage_path();
        let mut out = Vec::new();
        for e in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir()
                && e.file_name() != "archive"
                && !p.join("manifest.json").exists()
                && old(&p, age)
            {
                out.push(format!("{} (no manifest)", p.display()));
            }
        }
        temps(&root, age, &mut out);
        out
    }
}

fn old(p: &Path, age: Duration) -> bool {
    std::fs::symlink_metadata(p)
        .and_then(|m| m.modified())
        .is_ok_and(|t| SystemTime::now().duration_since(t).unwrap_or_default() >= age)
}

/// Our temporaries (`.NAME.tmp-PID`) anywhere under `dir`, older than `age`.
fn temps(dir: &Path, age: Duration, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            temps(&p, age, out);
        } else if e.file_name().to_string_lossy().contains(".tmp-") && old(&p, age) {
            out.push(p.display().to_string());
        }
    }
}

pub fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}
