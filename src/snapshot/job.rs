//! One snapshot on the writer thread: RDB into the storage sink, commit, manifest, retention.
//!
//! Owns the order of a snapshot's steps and what its manifest says. The RDB is written for
//! the master's own server version (magic, RDB version, encodings) with the aux fields that
//! server writes, including `repl-id`/`repl-offset`/`repl-stream-db`, so the file is what
//! the master would have saved at that offset; the digest and the counts come from the
//! same walk. It must never write a manifest that was not checked against the stored
//! bytes (storage refuses it), and never let a failed step leave a visible snapshot:
//! dropping the sink or the stored RDB removes them.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tracing::{error, info, warn};

use super::{Inner, Job, JobState};
use crate::digest::Rules;
use crate::keyspace::{export_snapshot, RdbIoError};
use crate::rdb::writer::{Target, WriteOptions};
use crate::replication::{is_version_aux, Capture};
use crate::server_version::ServerVersion;
use crate::storage::{Durations, Manifest, RdbInfo, SnapshotId, SourceInfo, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("the master's server version is unknown (no full-sync payload seen)")]
    NoVersion,
    #[error("{0}")]
    Target(String),
    #[error("writing the RDB: {0}")]
    Write(#[from] RdbIoError),
    /// The storage sink refused a write (an upload failed while the RDB streamed into it).
    #[error("writing the RDB into storage: {0}")]
    Sink(RdbIoError),
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("the sink stored {stored} bytes, the writer produced {written}")]
    Length { stored: u64, written: u64 },
}

/// Run one job to its end, reporting success or failure; never panics on bad data.
pub(super) fn run(inner: &Inner, job: Job) {
    let id = job.id.clone();
    let reason = job.reason;
    let started = Instant::now();
    match store(inner, job) {
        Ok(manifest) => {
            let d = &manifest.durations;
            info!(
                id = %id,
                %reason,
                offset = manifest.source.offset,
                pause_us = (d.pause_seconds * 1e6) as u64,
                bytes = manifest.rdb.bytes,
                keys = manifest.keys_total,
                write_seconds = d.write_seconds,
                upload_seconds = d.upload_seconds,
                digest = %manifest.digest,
                "snapshot stored"
            );
            inner.events.stored(&manifest, started.elapsed());
            inner.heartbeat.beat();
            if let Some(policy) = &inner.options.retention {
                match super::retain::apply(inner.storage.as_ref(), policy, false) {
                    Ok(mut outcome) => {
                        inner.events.retention(&outcome);
                        super::retain::prune_archive(inner.storage.as_ref(), &mut outcome, false);
                    }
                    Err(e) => warn!(error = %e, "retention failed; nothing more deleted"),
                }
            }
            inner.finish(&id, JobState::Stored, Some(manifest.rdb.bytes));
        }
        Err(e) => {
            let error = e.to_string();
            warn!(id = %id, %reason, error = %error, "snapshot failed");
            inner.events.failed(&id, &error);
            if matches!(
                e,
                JobError::Storage(_) | JobError::Length { .. } | JobError::Sink(_)
            ) {
                inner.events.upload_failed(&id, &error);
            }
            inner.finish(&id, JobState::Failed { error }, None);
        }
    }
}

/// The job for `id` panicked (caught on the writer thread): counted and logged as a
/// failed snapshot, so its status is final and the next request is not refused as busy.
pub(super) fn panicked(
    inner: &Inner,
    id: &SnapshotId,
    reason: super::Reason,
    panic: &(dyn std::any::Any + Send),
) {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into());
    let error = format!("the snapshot writer panicked: {what}");
    error!(id = %id, %reason, error = %error, "snapshot failed");
    inner.events.failed(id, &error);
    inner.finish(id, JobState::Failed { error }, None);
}

/// Test hook (debug builds only): `REPLISNAP_TEST_WRITER_PANIC=1` makes the first
/// snapshot's writer panic once, after the RDB is written and before it is committed.
#[cfg(debug_assertions)]
fn test_panic_once() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static DONE: AtomicBool = AtomicBool::new(false);
    if std::env::var_os("REPLISNAP_TEST_WRITER_PANIC").is_some_and(|v| v == "1")
        && !DONE.swap(true, Ordering::Relaxed)
    {
        panic!("REPLISNAP_TEST_WRITER_PANIC");
    }
}

fn store(inner: &Inner, job: Job) -> Result<Manifest, JobError> {
    let Job {
        id,
        at,
        capture,
        sink,
        ..
    } = job;
    let version = capture.master_version.ok_or(JobError::NoVersion)?;
    let target = Target::for_server(version).map_err(JobError::Target)?;
    let rules = Rules::for_target(version).map_err(JobError::Target)?;
    let aux = aux_fields(&capture, version, at);
    let Capture {
        snapshot,
        replid,
        offset,
        functions,
        pause,
        history,
        ..
    } = capture;
    let opts = WriteOptions {
        compress: inner.options.compress,
    };
    let t = Instant::now();
    let sink_failed = AtomicBool::new(false);
    // The digest is what a server loading the file at the capture time answers: keys whose
    // TTL has passed by then are left out, as that server drops them.
    let exported = export_snapshot(
        snapshot,
        &functions,
        Beating {
            out: sink,
            heartbeat: &inner.heartbeat,
            failed: &sink_failed,
        },
        target,
        &aux,
        opts,
        rules,
        at.timestamp_millis(),
    )
    .map_err(|e| match sink_failed.load(Ordering::Relaxed) {
        true => JobError::Sink(e),
        false => JobError::Write(e),
    })?;
    let write_seconds = t.elapsed();
    inner.heartbeat.beat();
    #[cfg(debug_assertions)]
    test_panic_once();
    let t = Instant::now();
    let stored = exported.out.out.commit()?;
    let upload_seconds = t.elapsed();
    inner.heartbeat.beat();
    let object = stored.object().clone();
    if object.bytes != exported.bytes {
        return Err(JobError::Length {
            stored: object.bytes,
            written: exported.bytes,
        });
    }
    let manifest = Manifest {
        id,
        created_at: at,
        source: SourceInfo {
            address: inner.options.address.clone(),
            server: version.family.into(),
            version: version_text(&aux, version),
            replid: if replid == "?" { String::new() } else { replid },
            offset: u64::try_from(offset).unwrap_or(0),
            history,
        },
        rdb: RdbInfo::new(
            if target.valkey_magic {
                "VALKEY"
            } else {
                "REDIS"
            },
            target.rdb_version,
            &object,
        ),
        digest: exported.digest,
        databases: exported.databases,
        keys_total: exported.keys_total,
        durations: Durations {
            pause_seconds: secs(pause),
            write_seconds: secs(write_seconds),
            upload_seconds: secs(upload_seconds),
        },
        replisnap_version: Manifest::this_version().into(),
    };
    stored.put_manifest(&manifest)?;
    Ok(manifest)
}

/// The storage sink, beating the writer's heartbeat on every write: a write that never
/// returns (a wedged upload) stops the beats. A write the sink refuses sets `failed`: the
/// snapshot then failed in storage (an upload error), not in the RDB writer.
struct Beating<'a, W> {
    out: W,
    heartbeat: &'a crate::heartbeat::Heartbeat,
    failed: &'a AtomicBool,
}

impl<W: Write> Write for Beating<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self
            .out
            .write(buf)
            .inspect_err(|_| self.failed.store(true, Ordering::Relaxed))?;
        self.heartbeat.beat();
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out
            .flush()
            .inspect_err(|_| self.failed.store(true, Ordering::Relaxed))?;
        self.heartbeat.beat();
        Ok(())
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The aux fields the master itself writes, in its order: its version fields as it wrote
/// them, then `redis-bits`, `ctime`, the replication position, `aof-base`. Redis and
/// Valkey ignore `used-mem` on load; we do not know the master's, so it is left out rather
/// than invented.
pub(super) fn aux_fields(
    c: &Capture,
    version: ServerVersion,
    at: DateTime<Utc>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut aux: Vec<(Vec<u8>, Vec<u8>)> = c
        .master_aux
        .iter()
        .filter(|(k, _)| is_version_aux(k))
        .cloned()
        .collect();
    if aux.is_empty() {
        let v = format!("{}.{}.{}", version.major, version.minor, version.patch);
        aux.push((b"redis-ver".to_vec(), v.into_bytes()));
    }
    let mut push = |k: &str, v: String| aux.push((k.as_bytes().to_vec(), v.into_bytes()));
    push("redis-bits", "64".into());
    push("ctime", at.timestamp().to_string());
    push("repl-stream-db", c.stream_db.to_string());
    if c.replid != "?" && !c.replid.is_empty() {
        push("repl-id", c.replid.clone());
        push("repl-offset", c.offset.to_string());
    }
    push("aof-base", "0".into());
    aux
}

/// The version the manifest records: the one the master wrote (`valkey-ver` first).
pub(super) fn version_text(aux: &[(Vec<u8>, Vec<u8>)], v: ServerVersion) -> String {
    let find = |name: &[u8]| {
        aux.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    find(b"valkey-ver")
        .or_else(|| find(b"redis-ver"))
        .unwrap_or_else(|| format!("{}.{}.{}", v.major, v.minor, v.patch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::Keyspace;
    use crate::server_version::Family;

    fn capture(aux: Vec<(Vec<u8>, Vec<u8>)>, replid: &str) -> Capture {
        let mut ks = Keyspace::new();
        Capture {
            snapshot: ks.snapshot().expect("no walk running"),
            replid: replid.into(),
            offset: 1234,
            functions: Vec::new(),
            stream_db: 2,
            master_version: None,
            master_aux: aux,
            pause: Duration::ZERO,
            history: None,
        }
    }

    fn names(aux: &[(Vec<u8>, Vec<u8>)]) -> Vec<String> {
        aux.iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    String::from_utf8_lossy(k),
                    String::from_utf8_lossy(v)
                )
            })
            .collect()
    }

    #[test]
    fn aux_fields_follow_the_master() {
        let at = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        let v = ServerVersion::new(Family::Valkey, 9, 1, 2);
        let master = vec![
            (b"valkey-ver".to_vec(), b"9.1.2".to_vec()),
            (b"aof-preamble".to_vec(), b"0".to_vec()),
        ];
        let c = capture(master, &"a".repeat(40));
        let aux = aux_fields(&c, v, at);
        assert_eq!(
            names(&aux),
            [
                "valkey-ver=9.1.2",
                "redis-bits=64",
                "ctime=1800000000",
                "repl-stream-db=2",
                &format!("repl-id={}", "a".repeat(40)),
                "repl-offset=1234",
                "aof-base=0",
            ]
        );
        assert_eq!(version_text(&aux, v), "9.1.2");
        // No version field from the master (SYNC fallback): ours, and no replication id.
        let v = ServerVersion::new(Family::Redis, 7, 0, 15);
        let aux = aux_fields(&capture(Vec::new(), "?"), v, at);
        assert_eq!(names(&aux)[0], "redis-ver=7.0.15");
        assert!(!names(&aux).iter().any(|n| n.starts_with("repl-id")));
        assert_eq!(version_text(&aux, v), "7.0.15");
    }
}
