//! Proving a snapshot good: one pass over its bytes checks length, SHA-256 and the RDB's
//! CRC-64 trailer, parses every record and computes the `DEBUG DIGEST` a server of the
//! source's version answers after loading it; each is compared with the manifest. With a
//! server binary, the file is also loaded into a throwaway server on a loopback port and
//! that server's own `DEBUG DIGEST` and key count are compared.
//!
//! Owns what "verified" means for `verify` and `fetch`. It must never stop at the first
//! difference when others can still be found (a user fixing a backup wants every one), never
//! change the file it checks, and never leave a server process or temporary directory
//! behind. Problems are findings, not errors: an `Err` means verification could not run.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::digest::{digest_rdb, DigestOptions};
use crate::rdb::{Options, RdbReader};
use crate::restore::{Conn, TargetUrl};
use crate::storage::hash::HashingReader;
use crate::storage::{Manifest, ObjectHasher};

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}: cannot read: {1}")]
    Read(String, #[source] io::Error),
    #[error("{binary}: {what}")]
    Server { binary: String, what: String },
}

/// What a verification found. `problems` empty: the snapshot is good.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The snapshot id, or the file name for a file without storage.
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
    pub crc64: String,
    /// The digest computed from the file (absent when it could not be parsed).
    pub digest: Option<String>,
    /// The server version the digest is for.
    pub target: Option<String>,
    /// Keys in the file (kept or dropped on load).
    pub keys: Option<u64>,
    /// What a real server answered, with `--server`.
    pub server: Option<ServerAnswer>,
    pub problems: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerAnswer {
    pub binary: String,
    pub version: String,
    pub digest: String,
    pub keys: u64,
}

/// The server a manifest's digest was computed for ("redis-7.0.15").
fn manifest_target(m: &Manifest) -> Option<crate::server_version::ServerVersion> {
    let fam = serde_json::to_value(m.source.server).ok()?;
    format!("{}-{}", fam.as_str()?, m.source.version)
        .parse()
        .ok()
}

/// Check the RDB read from `input` (`len` bytes if known) against `manifest`, if any.
/// Expiries are judged at the manifest's creation time (as its digest was), else now.
pub fn check_stream(
    name: &str,
    input: impl Read,
    len: Option<u64>,
    manifest: Option<&Manifest>,
    now_ms: i64,
    mut progress: impl FnMut(u64),
) -> Result<Report, VerifyError> {
    let mut hasher = ObjectHasher::new();
    let mut problems = Vec::new();
    let mut tee = HashingReader {
        inner: input,
        hasher: &mut hasher,
    };
    let mut opts = DigestOptions::new(manifest.map_or(now_ms, |m| m.created_at.timestamp_millis()));
    opts.target = manifest.and_then(manifest_target);
    let parsed = match RdbReader::new(&mut tee, len, Options::default()) {
        Ok(reader) => digest_rdb(reader, &opts, &mut progress).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    // Whatever the parser left (all of it, if it stopped early) still counts for the sums.
    io::copy(&mut tee, &mut io::sink()).map_err(|e| VerifyError::Read(name.into(), e))?;
    let stored = hasher.finish();
    let (digest, target, keys) = match parsed {
        Ok(r) => (
            Some(r.hex()),
            Some(r.target.to_string()),
            Some(r.keys + r.dropped),
        ),
        Err(e) => {
            problems.push(format!("does not parse: {e}"));
            (None, None, None)
        }
    };
    if !stored.crc64_confirmed() {
        problems.push(format!(
            "CRC-64 trailer {} is not the CRC-64 {} of its {} bytes",
            stored
                .trailer_crc64
                .map_or("(none)".to_string(), |t| format!("{t:016x}")),
            stored.crc64_hex(),
            stored.bytes
        ));
    }
    if let Some(m) = manifest {
        let r = &m.rdb;
        if r.bytes != stored.bytes {
            problems.push(format!("{} bytes, manifest says {}", stored.bytes, r.bytes));
        }
        if r.sha256 != stored.sha256 {
            problems.push(format!(
                "sha256 {}, manifest says {}",
                stored.sha256, r.sha256
            ));
        }
        if r.crc64 != stored.crc64_hex() {
            problems.push(format!(
                "crc64 {}, manifest says {}",
                stored.crc64_hex(),
                r.crc64
            ));
        }
        if let Some(d) = &digest {
            if *d != m.digest {
                problems.push(format!(
                    "digest {d} ({} at {}), manifest says {}",
                    target.as_deref().unwrap_or("?"),
                    m.created_at.to_rfc3339(),
                    m.digest
                ));
            }
        }
        if let Some(k) = keys {
            if k != m.keys_total {
                problems.push(format!("{k} keys, manifest says {}", m.keys_total));
            }
        }
    }
    Ok(Report {
        name: name.to_string(),
        bytes: stored.bytes,
        sha256: stored.sha256.clone(),
        crc64: stored.crc64_hex(),
        digest,
        target,
        keys,
        server: None,
        problems,
    })
}

/// A throwaway server on a loopback port, killed and its directory removed on drop.
struct Throwaway {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether the binary knows `enable-debug-command` (Redis 7.0+, every Valkey): from its
/// `--version` line ("Redis server v=6.2.14 …").
fn knows_debug_option(binary: &Path) -> Result<bool, String> {
    let out = Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run: {e}"))?;
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let major = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .and_then(|v| v.split('.').next()?.parse::<u32>().ok())
        .ok_or_else(|| format!("not a redis-server or valkey-server: --version said {line:?}"))?;
    Ok(line.starts_with("Valkey") || major >= 7)
}

fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Load `file` into `binary` (a `redis-server` or `valkey-server`) on a temporary loopback
/// port, in a temporary directory, and return its `DEBUG DIGEST` and key count.
pub fn ask_server(
    binary: &Path,
    file: &Path,
    timeout: Duration,
) -> Result<ServerAnswer, VerifyError> {
    let shown = binary.display().to_string();
    let fail = |what: String| VerifyError::Server {
        binary: shown.clone(),
        what,
    };
    let debug_option = knows_debug_option(binary).map_err(&fail)?;
    let file = std::fs::canonicalize(file).map_err(|e| fail(format!("{}: {e}", file.display())))?;
    let dir = std::env::temp_dir().join(format!(
        "replisnap-verify-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| fail(format!("{}: {e}", dir.display())))?;
    }
    let link_path = dir.join("dump.rdb");
    let setup = std::os::unix::fs::symlink(&file, &link_path)
        .map_err(|e| fail(format!("{}: {e}", link_path.display())))
        .and_then(|()| free_port().map_err(|e| fail(format!("no free port: {e}"))));
    let port = match setup {
        Ok(p) => p,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
    };
    let log = dir.join("server.log");
    let port_s = port.to_string();
    let mut command = Command::new(binary);
    command
        .args(["--port", &port_s, "--bind", "127.0.0.1", "--save", ""])
        .args(["--appendonly", "no", "--dbfilename", "dump.rdb"])
        .arg("--dir")
        .arg(&dir)
        .arg("--logfile")
        .arg(&log);
    if debug_option {
        command.args(["--enable-debug-command", "local"]);
    }
    let spawned = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(fail(format!("cannot start: {e}")));
        }
    };
    let mut srv = Throwaway { child, dir, port };
    let last_log = |srv: &Throwaway| {
        std::fs::read_to_string(srv.dir.join("server.log"))
            .unwrap_or_default()
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("(no log)")
            .to_string()
    };
    let start = Instant::now();
    let mut link = loop {
        if let Ok(Some(status)) = srv.child.try_wait() {
            return Err(fail(format!("exited ({status}): {}", last_log(&srv))));
        }
        if start.elapsed() > timeout {
            return Err(fail(format!(
                "not ready after {timeout:?}: {}",
                last_log(&srv)
            )));
        }
        let url = TargetUrl {
            tls: false,
            username: None,
            password: None,
            address: format!("127.0.0.1:{}", srv.port),
        };
        if let Ok(mut c) = Conn::connect(&url, None, Duration::from_secs(5)) {
            // Answers -LOADING until the file is in.
            if c.call(&[b"PING"]).is_ok() {
                break c;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // A big file's digest takes the server a while.
    link.set_read_timeout(timeout);
    let version = link.version().map_err(|e| fail(e.to_string()))?.to_string();
    let digest = link
        .text(&[b"DEBUG", b"DIGEST"])
        .map_err(|e| fail(e.to_string()))?;
    let keys = link.keys().map_err(|e| fail(e.to_string()))?;
    let _ = link.call(&[b"SHUTDOWN", b"NOSAVE"]);
    drop(srv);
    Ok(ServerAnswer {
        binary: shown,
        version,
        digest,
        keys,
    })
}

/// Load the file at `file` into `binary` and compare the server's `DEBUG DIGEST` and key
/// count with what this file gives for that server at the moment it loaded it (keys that
/// expired since the snapshot are dropped by the server, and by the computation alike).
pub fn check_server(
    report: &mut Report,
    binary: &Path,
    file: &Path,
    timeout: Duration,
) -> Result<(), VerifyError> {
    let loaded_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let answer = ask_server(binary, file, timeout)?;
    let name = file.display().to_string();
    let target = answer.version.parse().ok();
    let f = std::fs::File::open(file).map_err(|e| VerifyError::Read(name.clone(), e))?;
    let len = f.metadata().ok().map(|m| m.len());
    let mut opts = DigestOptions::new(loaded_at);
    opts.target = target;
    let ours = RdbReader::new(f, len, Options::default())
        .map_err(|e| e.to_string())
        .and_then(|r| digest_rdb(r, &opts, |_| {}).map_err(|e| e.to_string()));
    match ours {
        Ok(d) => {
            if d.hex() != answer.digest {
                report.problems.push(format!(
                    "{} ({}) loaded it with digest {}; the file gives {} for that server",
                    answer.binary,
                    answer.version,
                    answer.digest,
                    d.hex()
                ));
            }
            if d.keys != answer.keys {
                report.problems.push(format!(
                    "{} ({}) holds {} keys after loading it; the file gives {}",
                    answer.binary, answer.version, answer.keys, d.keys
                ));
            }
        }
        Err(e) => report.problems.push(format!(
            "{} ({}) loaded it, but its digest for that server cannot be computed: {e}",
            answer.binary, answer.version
        )),
    }
    report.server = Some(answer);
    Ok(())
}
