//! The S3 side of the soak: a second `replisnap run` replicating the same master (through
//! a plain proxy of its own that follows restarts and failovers, tests/soak/cluster.rs)
//! into a bucket of SeaweedFS (tests/storage_s3/seaweed.rs), its requests passing the
//! fault-injecting HTTP proxy (tests/storage_s3/proxy.rs). It owns what can be read of the
//! bucket from outside (multipart uploads in progress, snapshot objects without their
//! manifest, a `dump.rdb` whose size is not its manifest's) and the quiet-point check of
//! the S3 daemon's newest snapshot (fetched with `replisnap fetch`, judged by
//! tests/soak/oracle.rs). Its faults are in tests/soak/s3_faults.rs.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use replisnap::storage::s3::S3Storage;

use crate::cluster::master_offset;
use crate::observe::Replisnap;
use crate::s3proxy::Proxy;
use crate::seaweed::{Seaweed, ACCESS_KEY, SECRET_KEY};
use crate::support::TestServer;

/// Where the S3 daemon writes in its bucket.
pub const PREFIX: &str = "soak/";
/// Attempts per request: a fault injected this many times in a row fails the upload.
pub const MAX_ATTEMPTS: usize = 3;
/// A stalled answer is abandoned after this long (`[storage] read_timeout_seconds`).
pub const READ_TIMEOUT_SECONDS: u64 = 3;
/// The writer lease: a restart after kill -9 waits for the dead holder's to run out.
pub const LEASE_SECONDS: u64 = 10;

pub struct S3Side {
    pub rs: Replisnap,
    pub proxy: Proxy,
    pub bucket: String,
}

/// One object of the bucket under [`PREFIX`]: key, size, age in seconds.
struct Object {
    key: String,
    size: i64,
    age: u64,
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl S3Side {
    /// A bucket of its own, the fault proxy in front of `sw`, and the daemon's config
    /// (not started): the master behind `link`, snapshots on `schedule`, `keep_last`.
    pub fn new(sw: &Seaweed, link: &str, schedule: &str, keep_last: u32) -> S3Side {
        let bucket = sw.new_bucket("bucket");
        let proxy = Proxy::start(sw.endpoint.trim_start_matches("http://"));
        // Five MiB parts, two in flight: the soak's dataset is a few parts.
        let storage = format!(
            "kind = \"s3\"\nbucket = \"{bucket}\"\nprefix = \"{PREFIX}\"\n\
             region = \"us-east-1\"\nendpoint = \"{}\"\nforce_path_style = true\n\
             part_size = 5242880\nupload_concurrency = 2\nmax_attempts = {MAX_ATTEMPTS}\n\
             read_timeout_seconds = {READ_TIMEOUT_SECONDS}\nlease_seconds = {LEASE_SECONDS}\n\
             lease_wait_seconds = 60\n",
            proxy.endpoint
        );
        let reader = sw.storage_in(&bucket, PREFIX, |_| {});
        let env = vec![
            ("AWS_ACCESS_KEY_ID".to_string(), ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY".into(), SECRET_KEY.into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            ("AWS_CONFIG_FILE".into(), "/nonexistent".into()),
            ("AWS_SHARED_CREDENTIALS_FILE".into(), "/nonexistent".into()),
        ];
        let rs = Replisnap::new_s3(link, schedule, keep_last, &storage, reader, env);
        S3Side { rs, proxy, bucket }
    }

    fn reader(&self) -> &S3Storage {
        self.rs.s3.as_ref().expect("an S3 replisnap")
    }

    fn objects(&self) -> Result<Vec<Object>, String> {
        let s = self.reader();
        let (c, bucket) = (s.client().clone(), self.bucket.clone());
        let out = s
            .block_on(async move {
                c.list_objects_v2()
                    .bucket(bucket)
                    .prefix(PREFIX)
                    .send()
                    .await
            })
            .map_err(|e| format!("list objects: {e:?}"))?;
        let now = now_secs();
        Ok(out
            .contents
            .unwrap_or_default()
            .into_iter()
            .filter_map(|o| {
                let age = o
                    .last_modified
                    .map_or(0, |t| (now - t.secs()).max(0) as u64);
                Some(Object {
                    key: o.key?,
                    size: o.size.unwrap_or(-1),
                    age,
                })
            })
            .collect())
    }

    /// Multipart uploads in progress under [`PREFIX`]: (key, age in seconds).
    pub fn pending(&self) -> Result<Vec<(String, u64)>, String> {
        let s = self.reader();
        let (c, bucket) = (s.client().clone(), self.bucket.clone());
        let out = s
            .block_on(async move {
                c.list_multipart_uploads()
                    .bucket(bucket)
                    .prefix(PREFIX)
                    .send()
                    .await
            })
            .map_err(|e| format!("list multipart uploads: {e:?}"))?;
        let now = now_secs();
        Ok(out
            .uploads
            .unwrap_or_default()
            .into_iter()
            .filter_map(|u| {
                let age = u.initiated.map_or(0, |t| (now - t.secs()).max(0) as u64);
                Some((u.key?, age))
            })
            .collect())
    }

    /// What a reader must never see, or only while a write is in flight (younger than
    /// `age`): a multipart upload, a snapshot's `dump.rdb` without its manifest; and never
    /// at all: a manifest without its `dump.rdb`, or a `dump.rdb` of another size than
    /// its manifest says.
    pub fn leftovers(&self, age: Duration) -> Vec<String> {
        let mut out = Vec::new();
        let age = age.as_secs();
        match self.pending() {
            Err(e) => out.push(e),
            Ok(p) => out.extend(
                p.into_iter()
                    .filter(|(_, a)| *a >= age)
                    .map(|(k, a)| format!("s3 multipart upload {k} ({a} s old)")),
            ),
        }
        let objects = match self.objects() {
            Ok(o) => o,
            Err(e) => {
                out.push(e);
                return out;
            }
        };
        // id → (dump.rdb (size, age), manifest present)
        let mut dirs: BTreeMap<String, (Option<(i64, u64)>, bool)> = BTreeMap::new();
        for o in &objects {
            let rest = o.key.strip_prefix(PREFIX).unwrap_or(&o.key);
            let Some((id, name)) = rest.split_once('/') else {
                continue; // the lease
            };
            if id == "archive" {
                continue;
            }
            let e = dirs.entry(id.to_string()).or_default();
            match name {
                "dump.rdb" => e.0 = Some((o.size, o.age)),
                "manifest.json" => e.1 = true,
                _ => out.push(format!("s3 unexpected object {}", o.key)),
            }
        }
        let listed = self.rs.listing().map(|(l, _)| l).unwrap_or_default();
        for (id, (rdb, manifest)) in dirs {
            match (rdb, manifest) {
                (Some((_, a)), false) if a >= age => out.push(format!(
                    "s3 {PREFIX}{id}/dump.rdb ({a} s old) without manifest"
                )),
                (None, true) => out.push(format!("s3 {PREFIX}{id}/manifest.json without dump.rdb")),
                (Some((size, _)), true) => {
                    if let Some(m) = listed.iter().find(|m| m.id.as_str() == id) {
                        if m.rdb.bytes as i64 != size {
                            out.push(format!(
                                "s3 {PREFIX}{id}/dump.rdb is {size} B, its manifest says {}",
                                m.rdb.bytes
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// At a quiet point (the load paused): lag 0, a snapshot on demand, listed newest, at
    /// or after the master's offset, and fetched back from the bucket, agreeing with the
    /// master as the local one must (tests/soak/oracle.rs). The snapshot's id.
    pub fn quiet_check(
        &self,
        m: &TestServer,
        strict_held: bool,
        round: &mut Option<String>,
    ) -> Result<(String, crate::oracle::Agreement), String> {
        let caught_up =
            crate::support::wait_until(Duration::from_secs(60), || self.rs.lag(m) == Some(0));
        if !caught_up {
            return Err(format!(
                "s3: lag not 0 within 60 s (lag {:?}):\n{}",
                self.rs.lag(m),
                self.rs.log_tail(30)
            ));
        }
        let offset = master_offset(m);
        let id = self
            .rs
            .snapshot_now()
            .map_err(|e| format!("s3: snapshot on demand: {e}"))?;
        let (list, problems) = self.rs.listing()?;
        if !problems.is_empty() {
            return Err(format!("s3: listing problems: {problems:?}"));
        }
        let man = list
            .iter()
            .find(|x| x.id.as_str() == id)
            .ok_or_else(|| format!("s3: snapshot {id} stored but not listed"))?;
        if let Some(newest) = list.first().filter(|n| n.id < man.id) {
            return Err(format!(
                "s3: the newest listed {} is older than {id}",
                newest.id
            ));
        }
        if man.source.offset < offset as u64 {
            return Err(format!(
                "s3: snapshot {id} at offset {} before the quiet point's {offset}",
                man.source.offset
            ));
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let rdb = dir.path().join("dump.rdb");
        let v = self
            .rs
            .fetch(&[&id], &rdb)
            .map_err(|e| format!("s3: fetch {id}: {e}"))?;
        if v["digest"] != man.digest.as_str() {
            return Err(format!(
                "s3: fetch {id} says digest {}, its manifest {}",
                v["digest"], man.digest
            ));
        }
        crate::oracle::check_snapshot(m, &rdb, &man.digest, strict_held, round)
            .map(|a| (id.clone(), a))
            .map_err(|why| format!("s3: snapshot {id} at offset {offset}: {why}"))
    }
}

/// Incompressible data on the master (`bytes` in values of 512 KiB, random letters and
/// digits): the snapshots span several 5 MiB parts, so the S3 faults land in multipart
/// uploads.
pub fn seed_blob(m: &TestServer, bytes: usize, seed: u64) {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut x = seed | 1;
    let per = 512 * 1024;
    for i in 0..bytes.div_ceil(per) {
        let v: String = (0..per)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                CHARS[(x % CHARS.len() as u64) as usize] as char
            })
            .collect();
        m.must(&["SET", &format!("soak:blob:{i}"), &v]);
    }
}
