#![allow(dead_code)]
//! Real Redis / Valkey servers for integration tests.
//!
//! The binaries are installed by `scripts/install-test-servers.sh` into
//! `$REPLISNAP_TEST_SERVERS` (default `<repo>/.test-servers`), one directory per name with
//! `server` (the binary or a wrapper that `exec`s it), `version` and `kind`.
//!
//! ```ignore
//! mod support;
//! use support::*;
//! let Some(bin) = require("redis-7.0") else { return };
//! let srv = TestServer::start(&bin, &[]).unwrap();
//! srv.cmd_str(&["SET", "k", "v"]).unwrap();
//! ```

use std::fmt;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::resp::{Conn, Reply};

/// The servers every test that iterates over versions should cover.
pub const MATRIX: &[&str] = &[
    "redis-6.2",
    "redis-7.0",
    "redis-8.2",
    "redis-8.6",
    "valkey-8.1",
    "valkey-9.1",
];

/// Names that must be installed under CI; any other name missing is a skip.
pub const REQUIRED: &[&str] = &[
    "redis-6.2",
    "redis-7.0",
    "redis-8.2",
    "valkey-8.1",
    "valkey-9.1",
];

/// Optional extras the installer may provide (not part of [`MATRIX`]).
pub const EXTRAS: &[&str] = &[
    "redis-7.2",
    "redis-7.4",
    "valkey-8.0",
    "valkey-9.0",
    "redis-8.10",
];

/// How long [`TestServer::start`] waits for the server to answer PING (30 s: a redis-8.6
/// once took over 10 s to write its first log line in a clean-clone CI run under load).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long it may take instead while the server answers `-LOADING` (a large RDB).
pub const LOADING_TIMEOUT: Duration = Duration::from_secs(120);

/// Read/write timeout of the command connection (SAVE of a large dataset can take a while).
pub const IO_TIMEOUT: Duration = Duration::from_secs(120);

const INSTALLER: &str = "scripts/install-test-servers.sh";
const LOG_FILE: &str = "server.log";
const STDIO_FILE: &str = "stdio.log";
const DUMP_FILE: &str = "dump.rdb";

/// Where the installer puts the servers: `$REPLISNAP_TEST_SERVERS` or `<repo>/.test-servers`.
pub fn servers_dir() -> PathBuf {
    match std::env::var_os("REPLISNAP_TEST_SERVERS") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join(".test-servers"),
    }
}

/// An installed server binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerBin {
    /// Installer name, e.g. `redis-7.0`.
    pub name: String,
    /// The executable to run (binary or exec wrapper).
    pub path: PathBuf,
    /// Exact version, e.g. `7.0.15`.
    pub version: String,
    /// `redis` or `valkey`.
    pub kind: String,
}

impl ServerBin {
    /// `(major, minor)` of [`ServerBin::version`]; unparsable parts are 0.
    pub fn major_minor(&self) -> (u32, u32) {
        let mut it = self
            .version
            .split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    }

    /// Whether the server accepts `--enable-debug-command` (Redis >= 7.0, every Valkey).
    /// Where it does not (Redis 6.2), DEBUG is enabled by default.
    pub fn knows_debug_option(&self) -> bool {
        self.is_valkey() || self.major_minor() >= (7, 0)
    }

    pub fn is_valkey(&self) -> bool {
        self.kind == "valkey"
    }

    pub fn is_redis(&self) -> bool {
        self.kind == "redis"
    }
}

impl fmt::Display for ServerBin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} {})", self.name, self.kind, self.version)
    }
}

/// The installed server called `name`, if its directory is complete.
pub fn find(name: &str) -> Option<ServerBin> {
    let dir = servers_dir().join(name);
    let path = dir.join("server");
    if !is_executable(&path) {
        return None;
    }
    let version = fs::read_to_string(dir.join("version"))
        .ok()?
        .trim()
        .to_string();
    if version.is_empty() {
        return None;
    }
    let kind = match fs::read_to_string(dir.join("kind")) {
        Ok(k) if !k.trim().is_empty() => k.trim().to_string(),
        _ if name.starts_with("valkey") => "valkey".to_string(),
        _ => "redis".to_string(),
    };
    Some(ServerBin {
        name: name.to_string(),
        path,
        version,
        kind,
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn env_flag(name: &str) -> bool {
    match std::env::var(name) {
        Ok(v) => !matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "" | "0" | "false" | "no"
        ),
        Err(_) => false,
    }
}

/// The test's way to get a server.
///
/// Returns `Some` if `name` is installed. If it is missing: under CI (`CI` set) this panics,
/// failing the test, for the [`REQUIRED`] names (for every name if `REPLISNAP_REQUIRE_ALL` is
/// set); otherwise it prints a skip notice and returns `None`.
pub fn require(name: &str) -> Option<ServerBin> {
    if let Some(bin) = find(name) {
        return Some(bin);
    }
    let dir = servers_dir().join(name);
    let must = env_flag("REPLISNAP_REQUIRE_ALL") || (env_flag("CI") && REQUIRED.contains(&name));
    if must {
        panic!(
            "test server {name} is not installed (expected {}/server); run {INSTALLER}",
            dir.display()
        );
    }
    eprintln!(
        "SKIP: test server {name} is not installed in {}; run {INSTALLER} to test against it",
        dir.display()
    );
    record_skip(name);
    None
}

/// Where this `cargo test` run's skips are counted: one file per run (named by cargo's pid,
/// the parent of every test binary), read by `tests/zz_skipped.rs`, which cargo runs after
/// the other test binaries.
pub fn skips_file() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "replisnap-skips-{}",
        std::os::unix::process::parent_id()
    ))
}

/// Record one skip: the test binary, the test and the missing server.
fn record_skip(name: &str) {
    use std::io::Write;
    let exe = std::env::current_exe().ok();
    let binary = exe
        .as_deref()
        .and_then(|p| p.file_stem())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let binary = binary.rsplit_once('-').map_or(binary.as_str(), |(b, _)| b);
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(skips_file())
    {
        // libtest names each test's thread after the test.
        let test = std::thread::current()
            .name()
            .unwrap_or("main")
            .replace(' ', "_");
        let _ = writeln!(f, "{binary} {test} {name}");
    }
}

/// Every [`MATRIX`] server that is installed (missing ones are handled as by [`require`]).
pub fn require_matrix() -> Vec<ServerBin> {
    MATRIX.iter().filter_map(|n| require(n)).collect()
}

/// Poll `f` every 20 ms until it returns true or `timeout` passes; returns the last result.
/// Poll `f` until it holds; fail the test naming `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, f: impl FnMut() -> bool) {
    assert!(
        wait_until(timeout, f),
        "timed out after {timeout:?} waiting for {what}"
    );
}

pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// TestServer
// ---------------------------------------------------------------------------------------------

/// A server process on a free 127.0.0.1 port in its own temp dir; killed on drop.
pub struct TestServer {
    bin: ServerBin,
    child: Child,
    port: u16,
    dir: TempDir,
    conn: Mutex<Option<Conn>>,
}

impl fmt::Debug for TestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestServer")
            .field("bin", &self.bin.name)
            .field("pid", &self.child.id())
            .field("port", &self.port)
            .field("dir", &self.dir.path())
            .finish()
    }
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

fn read_lossy(p: &Path) -> String {
    fs::read(p)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

impl TestServer {
    /// Start `bin` on a free port in a fresh temp dir with `--port P --bind 127.0.0.1 --dir TMP
    /// --dbfilename dump.rdb --logfile TMP/server.log --save '' --appendonly no` (plus
    /// `--enable-debug-command yes` where the server knows it), then `extra` as further argv
    /// (later arguments override earlier ones). Waits until PING answers.
    pub fn start(bin: &ServerBin, extra: &[&str]) -> io::Result<TestServer> {
        Self::start_in(bin, new_tempdir(bin)?, extra)
    }

    /// Like [`TestServer::start`], but the server loads `rdb` (copied to `TMP/dump.rdb`) at
    /// startup. Fails, with the log tail, if the server refuses the file.
    pub fn start_with_rdb(bin: &ServerBin, rdb: &Path, extra: &[&str]) -> io::Result<TestServer> {
        let dir = new_tempdir(bin)?;
        fs::copy(rdb, dir.path().join(DUMP_FILE)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("copy {} into the server dir: {e}", rdb.display()),
            )
        })?;
        Self::start_in(bin, dir, extra)
    }

    fn start_in(bin: &ServerBin, dir: TempDir, extra: &[&str]) -> io::Result<TestServer> {
        const ATTEMPTS: usize = 8;
        let d = dir.path().to_path_buf();
        let d_str = d.to_str().expect("temp dir path is UTF-8").to_string();
        let log = d.join(LOG_FILE);
        let log_str = log.to_str().expect("temp dir path is UTF-8").to_string();
        for _ in 0..ATTEMPTS {
            let port = free_port()?;
            let port_s = port.to_string();
            let mut args: Vec<&str> = vec![
                "--port",
                &port_s,
                "--bind",
                "127.0.0.1",
                "--dir",
                &d_str,
                "--dbfilename",
                DUMP_FILE,
                "--logfile",
                &log_str,
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ];
            if bin.knows_debug_option() {
                args.extend(["--enable-debug-command", "yes"]);
            }
            args.extend_from_slice(extra);
            // Each attempt gets a fresh log, so the checks below only see this attempt.
            let _ = fs::remove_file(&log);
            let stdio = fs::File::create(d.join(STDIO_FILE))?;
            let mut child = Command::new(&bin.path)
                .args(&args)
                .current_dir(&d)
                .stdin(Stdio::null())
                .stdout(stdio.try_clone()?)
                .stderr(stdio)
                .spawn()
                .map_err(|e| {
                    io::Error::new(e.kind(), format!("spawn {}: {e}", bin.path.display()))
                })?;
            match wait_ready(&mut child, port) {
                Ok(conn) => {
                    return Ok(TestServer {
                        bin: bin.clone(),
                        child,
                        port,
                        dir,
                        conn: Mutex::new(Some(conn)),
                    })
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let text = format!("{}{}", read_lossy(&d.join(STDIO_FILE)), read_lossy(&log));
                    if text.contains("Address already in use") {
                        continue; // lost the race for the port: try another one
                    }
                    return Err(io::Error::new(
                        e.kind(),
                        format!(
                            "{bin} did not come up: {e}\nargs: {args:?}\n--- log tail ---\n{}",
                            tail(&text, 30)
                        ),
                    ));
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{bin}: port taken in each of {ATTEMPTS} attempts"),
        ))
    }

    pub fn bin(&self) -> &ServerBin {
        &self.bin
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server's working directory (`--dir`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A new, separate connection (e.g. for blocking commands or replication handshakes).
    pub fn connect(&self) -> io::Result<Conn> {
        Conn::connect(self.port, Duration::from_secs(5))
    }

    /// Run one command on the shared connection (reconnecting after an I/O error).
    pub fn cmd(&self, args: &[&[u8]]) -> io::Result<Reply> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(self.connect()?);
        }
        let res = guard.as_mut().unwrap().cmd(args);
        if res.is_err() {
            *guard = None;
        }
        res
    }

    pub fn cmd_str(&self, args: &[&str]) -> io::Result<Reply> {
        let v: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.cmd(&v)
    }

    /// Like [`TestServer::cmd_str`] but panics on I/O errors and error replies.
    pub fn must(&self, args: &[&str]) -> Reply {
        match self.cmd_str(args) {
            Ok(Reply::Error(e)) => panic!("{}: {args:?} -> error {e}", self.bin.name),
            Ok(r) => r,
            Err(e) => panic!(
                "{}: {args:?} -> {e}\n{}",
                self.bin.name,
                tail(&self.log(), 20)
            ),
        }
    }

    /// `DEBUG DIGEST` as 40 hex digits (all zeros for an empty dataset).
    pub fn digest(&self) -> String {
        let r = self.must(&["DEBUG", "DIGEST"]);
        r.as_string()
            .unwrap_or_else(|| panic!("{}: DEBUG DIGEST answered {r:?}", self.bin.name))
    }

    /// Sum of `keys=` over every database in `INFO keyspace`.
    pub fn dbsize_all(&self) -> u64 {
        self.info("keyspace")
            .lines()
            .filter(|l| l.starts_with("db"))
            .filter_map(|l| l.split_once(':').and_then(|(_, v)| info_kv(v, "keys")))
            .filter_map(|k| k.parse::<u64>().ok())
            .sum()
    }

    /// `INFO section` text.
    pub fn info(&self, section: &str) -> String {
        let r = self.must(&["INFO", section]);
        r.as_string()
            .unwrap_or_else(|| panic!("{}: INFO answered {r:?}", self.bin.name))
    }

    /// One `field:value` of `INFO section`.
    pub fn info_field(&self, section: &str, field: &str) -> Option<String> {
        info_field(&self.info(section), field).map(str::to_string)
    }

    /// `CONFIG GET name` value.
    pub fn config_get(&self, name: &str) -> Option<String> {
        let r = self.cmd_str(&["CONFIG", "GET", name]).ok()?;
        r.as_array()?.get(1)?.as_string()
    }

    /// Path of the RDB file the server writes and loads (`--dir`/`--dbfilename`).
    pub fn rdb_path(&self) -> PathBuf {
        let name = self
            .config_get("dbfilename")
            .unwrap_or_else(|| DUMP_FILE.to_string());
        self.dir().join(name)
    }

    /// `SAVE`; returns the path of the dump file.
    pub fn save(&self) -> PathBuf {
        let r = self.must(&["SAVE"]);
        assert!(r.is_ok(), "{}: SAVE answered {r:?}", self.bin.name);
        self.rdb_path()
    }

    /// The server's log file (`--logfile`).
    pub fn log(&self) -> String {
        read_lossy(&self.dir().join(LOG_FILE))
    }

    /// Log file plus anything the process wrote to stdout/stderr (e.g. config errors).
    pub fn log_and_stdio(&self) -> String {
        let mut s = read_lossy(&self.dir().join(STDIO_FILE));
        s.push_str(&self.log());
        s
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kill the process now (SIGKILL) and wait for it; the temp dir stays until drop.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Wait until the server on `port` answers PING (not -LOADING) and is `child`, not another
/// process that won the race for the port. Returns the connection. Gives up after
/// [`START_TIMEOUT`], or [`LOADING_TIMEOUT`] once the server has said it is loading.
fn wait_ready(child: &mut Child, port: u16) -> io::Result<Conn> {
    let started = Instant::now();
    let mut deadline = started + START_TIMEOUT;
    let mut last;
    loop {
        if let Some(st) = child.try_wait()? {
            return Err(io::Error::other(format!("server exited ({st})")));
        }
        match Conn::connect(port, Duration::from_millis(200)).and_then(|mut c| {
            let r = c.cmd(&[b"PING".as_slice()])?;
            Ok((r, c))
        }) {
            Ok((Reply::Status(pong), mut c)) if pong == "PONG" => {
                let info = c
                    .cmd(&[b"INFO".as_slice(), b"server"])?
                    .as_string()
                    .unwrap_or_default();
                let pid = info_field(&info, "process_id").and_then(|p| p.parse::<u32>().ok());
                if pid == Some(child.id()) {
                    return Ok(c);
                }
                last = format!("port {port} is answered by pid {pid:?}, not ours");
            }
            Ok((Reply::Error(e), _)) if e.starts_with("LOADING") => {
                // Alive and loading its RDB: give a large dataset more time.
                deadline = deadline.max(started + LOADING_TIMEOUT);
                last = format!("PING answered -{e}");
            }
            Ok((r, _)) => last = format!("PING answered {r:?}"),
            Err(e) => last = format!("PING: {e}"),
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no PONG within {:?} ({last})", deadline - started),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn new_tempdir(bin: &ServerBin) -> io::Result<TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("replisnap-{}-", bin.name))
        .tempdir()
}

/// `field:value` from INFO text.
pub fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == field).then_some(v.trim())
    })
}

/// `key=value` from a comma-separated INFO value such as `keys=1,expires=0,avg_ttl=0`.
pub fn info_kv<'a>(value: &'a str, key: &str) -> Option<&'a str> {
    value.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then_some(v.trim())
    })
}
