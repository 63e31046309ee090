//! The soak's servers: a primary, a standby replica of it (the failover target), the
//! tapped TCP proxy the local replisnap reaches the primary through and a plain one for the
//! S3 replisnap (both follow restarts and failovers); plus the small tmpfs the storage
//! lives on. It owns the moves a fault needs (restart the primary with its data, promote
//! the standby, repoint the proxy); it never judges replisnap.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::proxy::{proxy_tapped, Proxy};
use crate::support::{info_field, wait_until, ServerBin, TestServer};

/// Server arguments: immediate diskless syncs; a 1 MiB backlog (the default) so that
/// holding the link while 2 MiB are written forces a full sync.
const ARGS: &[&str] = &[
    "--repl-diskless-sync-delay",
    "0",
    "--repl-backlog-size",
    "1mb",
];

pub struct Cluster {
    pub bin: ServerBin,
    pub primary: TestServer,
    pub standby: TestServer,
    pub proxy: Proxy,
    /// The S3 replisnap's link to the primary (a plain proxy: its faults are S3's).
    pub s3_link: Proxy,
}

fn replica_args(port: u16) -> Vec<String> {
    let mut v: Vec<String> = ARGS.iter().map(|s| s.to_string()).collect();
    v.extend(["--replicaof".into(), "127.0.0.1".into(), port.to_string()]);
    v
}

fn start(bin: &ServerBin, extra: &[String], rdb: Option<&Path>) -> TestServer {
    let args: Vec<&str> = extra.iter().map(String::as_str).collect();
    let r = match rdb {
        Some(p) => TestServer::start_with_rdb(bin, p, &args),
        None => TestServer::start(bin, &args),
    };
    r.unwrap_or_else(|e| panic!("start {}: {e}", bin.name))
}

/// `master_repl_offset` of `s` (-1 when it does not answer).
pub fn master_offset(s: &TestServer) -> i64 {
    s.info_field("replication", "master_repl_offset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1)
}

impl Cluster {
    /// Primary with `keys` keys of `value_bytes` (DEBUG POPULATE), standby in sync, proxy.
    pub fn start(bin: &ServerBin, keys: u64, value_bytes: u64) -> Cluster {
        let base: Vec<String> = ARGS.iter().map(|s| s.to_string()).collect();
        let primary = start(bin, &base, None);
        primary.must(&[
            "DEBUG",
            "POPULATE",
            &keys.to_string(),
            "soak:pop",
            &value_bytes.to_string(),
        ]);
        let standby = start(bin, &replica_args(primary.port()), None);
        let proxy = proxy_tapped(primary.addr());
        let s3_link = crate::support::proxy::proxy(primary.addr());
        let c = Cluster {
            bin: bin.clone(),
            primary,
            standby,
            proxy,
            s3_link,
        };
        c.wait_standby(Duration::from_secs(60));
        c
    }

    /// Wait until the standby's link is up and it holds the primary's offset (the load
    /// paused). False on timeout.
    pub fn wait_standby(&self, timeout: Duration) -> bool {
        wait_until(timeout, || {
            let info = self.standby.info("replication");
            info_field(&info, "master_link_status") == Some("up")
                && info_field(&info, "slave_repl_offset").and_then(|v| v.parse::<i64>().ok())
                    == Some(master_offset(&self.primary))
        })
    }

    pub fn primary_addr(&self) -> String {
        self.primary.addr()
    }

    /// Restart the primary with its data: `SAVE`, SIGKILL (what the load wrote after the
    /// save is lost, as on a crash between two saves), start a new process from the file
    /// on a new port, repoint the proxy and the standby. The proxy holds new connections
    /// meanwhile and cuts the old ones.
    pub fn restart_primary(&mut self) {
        let rdb = self.primary.save();
        let keep = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::copy(&rdb, keep.path()).expect("copy the saved RDB");
        for p in [&self.proxy, &self.s3_link] {
            p.hold.store(true, Ordering::SeqCst);
        }
        self.primary.kill();
        self.proxy.cut();
        self.s3_link.cut();
        let base: Vec<String> = ARGS.iter().map(|s| s.to_string()).collect();
        let new = start(&self.bin, &base, Some(keep.path()));
        for p in [&self.proxy, &self.s3_link] {
            *p.upstream.lock().unwrap() = new.addr();
            p.hold.store(false, Ordering::SeqCst);
        }
        self.primary = new;
        let port = self.primary.port().to_string();
        self.standby.must(&["REPLICAOF", "127.0.0.1", &port]);
    }

    /// Fail over: the standby becomes the primary (`REPLICAOF NO ONE`), the proxy's new
    /// connections go to it and the old ones are cut, the old primary becomes the standby.
    /// The standby is waited for first (≤ 10 s, the load running), as a careful failover
    /// does; whatever it still missed is lost, as in a real one.
    pub fn failover(&mut self) {
        self.wait_standby(Duration::from_secs(10));
        self.standby.must(&["REPLICAOF", "NO", "ONE"]);
        for p in [&self.proxy, &self.s3_link] {
            *p.upstream.lock().unwrap() = self.standby.addr();
            p.cut();
        }
        std::mem::swap(&mut self.primary, &mut self.standby);
        let port = self.primary.port().to_string();
        self.standby.must(&["REPLICAOF", "127.0.0.1", &port]);
    }
}

/// A tmpfs of `mib` MiB mounted at `at` (root needed), unmounted when dropped.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(at: &Path, mib: u64) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(at).map_err(|e| format!("{}: {e}", at.display()))?;
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            Ok(Tmpfs(at.to_path_buf()))
        } else {
            Err(format!(
                "cannot mount a tmpfs at {} (root needed)",
                at.display()
            ))
        }
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
