//! The S3 backend: `<prefix><id>/dump.rdb`, then `<prefix><id>/manifest.json` (SPEC §3).
//!
//! Owns the layout in a bucket and what reading it means: `list` is one paginated
//! ListObjectsV2 plus a GET per manifest; a snapshot exists only once its manifest does,
//! and only with its `dump.rdb` at the recorded size. Writing is in [`upload`] (streamed
//! multipart, checked after Complete, never overwriting), the single-writer lease in
//! [`lease`], the client and its retry policy in [`client`].
//!
//! It must never touch a key it did not create: only `<id>/dump.rdb` and
//! `<id>/manifest.json` under the prefix, their multipart uploads, and `<prefix>lock`.
//! Anything else under the prefix (another tool's files, the stream archive) is left
//! alone. Deleting and cleaning up need the lease, so a second daemon never removes what
//! the first is writing; within one process, ids being written are skipped by cleanup.

mod client;
mod lease;
mod objects;
mod read;
mod retries;
mod upload;

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::sync::{Arc, Mutex};

use aws_sdk_s3::config::Credentials;
use aws_sdk_s3::Client;
use chrono::{DateTime, Utc};

pub use client::{
    Checksum, Settings, DEFAULT_CONCURRENCY, DEFAULT_LEASE_SECONDS, DEFAULT_MAX_ATTEMPTS,
    DEFAULT_PART_SIZE, DEFAULT_READ_TIMEOUT,
};

use self::client::{s3_error, Runtime};
use self::lease::Lease;
use super::local::{MANIFEST_NAME, RDB_NAME};
use super::{
    CleanupReport, ListProblem, Listing, Manifest, RdbSink, Result, SnapshotId, Storage,
    StorageError, MANIFEST_LIMIT,
};

/// The lease object's name under the prefix.
pub const LEASE_NAME: &str = "lock";

/// A bucket and prefix holding snapshots.
pub struct S3Storage {
    inner: Arc<Inner>,
}

/// What the storage, its sinks and its lease renewal share.
pub(crate) struct Inner {
    s: Settings,
    client: Client,
    rt: Runtime,
    /// Ids this process is writing: cleanup leaves them alone, `create_rdb` skips them.
    writing: Mutex<HashSet<SnapshotId>>,
    lease: Lease,
    /// Retried attempts by operation, counted by the client's interceptor.
    retries: Arc<retries::RetryCounts>,
}

/// What the listing of a prefix holds for one id.
#[derive(Debug, Default)]
struct Entry {
    rdb_size: Option<u64>,
    manifest_size: Option<u64>,
    /// Keys under `<prefix><id>/` that replisnap does not write.
    foreign: Vec<String>,
}

impl S3Storage {
    /// Build the client for `[storage]` (kind s3). No request is made: a bucket that does
    /// not exist or refuses us fails the first operation, with the service's reason.
    /// `credentials` replaces the default chain (tests, embedding).
    pub fn open(cfg: &crate::config::Storage, credentials: Option<Credentials>) -> Result<Self> {
        Self::with_settings(Settings::from_config(cfg)?, credentials)
    }

    pub fn with_settings(s: Settings, credentials: Option<Credentials>) -> Result<Self> {
        let rt = Runtime::new()?;
        let retries = Arc::new(retries::RetryCounts::default());
        let client = client::build(&rt, &s, credentials, retries.clone())?;
        let lease = Lease::new(format!("{}{LEASE_NAME}", s.prefix), s.lease);
        Ok(S3Storage {
            inner: Arc::new(Inner {
                s,
                client,
                rt,
                writing: Mutex::new(HashSet::new()),
                lease,
                retries,
            }),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.s
    }

    /// The client, for tests and tools that look at the bucket directly; drive its
    /// futures with [`block_on`](Self::block_on).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Run a future on this storage's runtime (where its client's connections live).
    pub fn block_on<F>(&self, fut: F) -> F::Output
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.inner.rt.run(fut)
    }

    /// Key of a snapshot's RDB.
    pub fn rdb_key(&self, id: &SnapshotId) -> String {
        self.inner.key(id, RDB_NAME)
    }

    /// Key of a snapshot's manifest.
    pub fn manifest_key(&self, id: &SnapshotId) -> String {
        self.inner.key(id, MANIFEST_NAME)
    }

    /// Give the lease up now (it is also released when the storage is dropped).
    pub fn release(&self) {
        self.inner.lease.release(&self.inner);
    }
}

impl Drop for S3Storage {
    fn drop(&mut self) {
        self.inner.lease.release(&self.inner);
    }
}

impl Inner {
    fn key(&self, id: &SnapshotId, name: &str) -> String {
        format!("{}{}/{name}", self.s.prefix, id)
    }

    fn not_found(&self, id: &SnapshotId) -> StorageError {
        StorageError::NotFound {
            id: id.to_string(),
            location: self.s.location(),
        }
    }

    /// Every key under `<prefix>` (or `<prefix><sub>`) that names a snapshot id, grouped by
    /// id. Keys that are not `<id>/...` (the lease, other tools' files) are not returned.
    fn entries(&self, sub: &str) -> Result<BTreeMap<SnapshotId, Entry>> {
        let client = self.client.clone();
        let bucket = self.s.bucket.clone();
        let prefix = format!("{}{sub}", self.s.prefix);
        let err = s3_error(&self.s, "list", &prefix);
        let objects = self.rt.run(async move {
            let mut pages = client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .into_paginator()
                .send();
            let mut out = Vec::new();
            while let Some(page) = pages.next().await {
                for o in page?.contents.unwrap_or_default() {
                    if let Some(k) = o.key {
                        out.push((k, o.size.unwrap_or(0).max(0) as u64));
                    }
                }
            }
            Ok(out)
        });
        let objects = objects.map_err(err)?;
        let mut map: BTreeMap<SnapshotId, Entry> = BTreeMap::new();
        for (key, size) in objects {
            let Some((id, name)) = self.parse_key(&key) else {
                continue;
            };
            let e = map.entry(id).or_default();
            match name {
                RDB_NAME => e.rdb_size = Some(size),
                MANIFEST_NAME => e.manifest_size = Some(size),
                _ => e.foreign.push(key),
            }
        }
        Ok(map)
    }

    /// `<prefix><id>/<name>` → (id, name).
    fn parse_key<'k>(&self, key: &'k str) -> Option<(SnapshotId, &'k str)> {
        let rest = key.strip_prefix(self.s.prefix.as_str())?;
        let (id, name) = rest.split_once('/')?;
        let id = SnapshotId::parse(id).ok()?;
        (id.as_str() == rest.split_once('/')?.0).then_some((id, name))
    }

    /// The manifest of `id`, checked against its id and its RDB's size (asked for).
    /// Ok(None) when there is no manifest.
    fn load(&self, id: &SnapshotId) -> Result<Option<Manifest>> {
        let key = self.key(id, MANIFEST_NAME);
        let Some(data) = read::get_small(self, &key, MANIFEST_LIMIT)? else {
            return Ok(None);
        };
        let size = read::head_size(self, &self.key(id, RDB_NAME))?;
        self.check(id, &data, size).map(Some)
    }

    /// A manifest's bytes as a manifest of `id` whose RDB has `rdb_size` bytes (None:
    /// missing).
    fn check(&self, id: &SnapshotId, data: &[u8], rdb_size: Option<u64>) -> Result<Manifest> {
        let url = self.s.url(&self.key(id, MANIFEST_NAME));
        let m = Manifest::from_json(data, &url)?;
        if &m.id != id {
            return Err(StorageError::Manifest {
                path: url,
                reason: format!("id {} is not its key's {id}", m.id),
            });
        }
        let rdb_key = self.key(id, RDB_NAME);
        let broken = |reason: String| StorageError::Broken {
            path: self.s.url(&rdb_key),
            reason,
        };
        match rdb_size {
            Some(n) if n == m.rdb.bytes => Ok(m),
            Some(n) => Err(broken(format!(
                "{n} bytes where the manifest says {}",
                m.rdb.bytes
            ))),
            None => Err(broken("missing, though the manifest names it".into())),
        }
    }

    /// Delete one key (absent is fine).
    fn delete_key(&self, key: &str) -> Result<()> {
        let client = self.client.clone();
        let bucket = self.s.bucket.clone();
        let k = key.to_string();
        let err = s3_error(&self.s, "delete", key);
        self.rt
            .run(async move { client.delete_object().bucket(bucket).key(k).send().await })
            .map(|_| ())
            .map_err(err)
    }

    /// Abort every multipart upload of ours under the prefix that this process is not
    /// running, appending what was aborted to `removed`.
    fn abort_orphan_uploads(&self, report: &mut CleanupReport) -> Result<()> {
        let client = self.client.clone();
        let bucket = self.s.bucket.clone();
        let prefix = self.s.prefix.clone();
        let err = s3_error(&self.s, "list multipart uploads", &prefix);
        let uploads = self
            .rt
            .run(async move {
                let mut out = Vec::new();
                let (mut key_marker, mut id_marker) = (None, None);
                loop {
                    let page = client
                        .list_multipart_uploads()
                        .bucket(&bucket)
                        .prefix(&prefix)
                        .set_key_marker(key_marker.take())
                        .set_upload_id_marker(id_marker.take())
                        .send()
                        .await?;
                    for u in page.uploads.unwrap_or_default() {
                        if let (Some(k), Some(id)) = (u.key, u.upload_id) {
                            out.push((k, id));
                        }
                    }
                    if page.is_truncated != Some(true) || page.next_key_marker.is_none() {
                        return Ok(out);
                    }
                    key_marker = page.next_key_marker;
                    id_marker = page.next_upload_id_marker;
                }
            })
            .map_err(err)?;
        for (key, upload_id) in uploads {
            let Some((id, name)) = self.parse_key(&key) else {
                continue;
            };
            if (name != RDB_NAME && name != MANIFEST_NAME) || self.is_writing(&id) {
                continue;
            }
            upload::abort(self, &key, &upload_id)?;
            report.removed.push(format!(
                "{} (multipart upload {upload_id})",
                self.s.url(&key)
            ));
        }
        Ok(())
    }

    fn is_writing(&self, id: &SnapshotId) -> bool {
        self.writing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(id)
    }
}

impl S3Storage {
    /// Reserve an id (`fresh`: greater than every id in the bucket or being written here,
    /// [`SnapshotId::new_after`]) and open its upload.
    fn create(&self, at: DateTime<Utc>, fresh: bool) -> Result<Box<dyn RdbSink>> {
        let inner = &self.inner;
        inner.lease.acquire(inner)?;
        // Ids already in the bucket (any key under `<id>/`) or being written here are taken;
        // the lease keeps other writers out, and `If-None-Match` guards the rest.
        let stored = inner.entries("")?;
        let id = {
            let mut writing = inner.writing.lock().unwrap_or_else(|e| e.into_inner());
            let newest = stored.keys().chain(writing.iter()).max().filter(|_| fresh);
            let id = SnapshotId::new_after(at, newest, |c| {
                stored.keys().any(|k| k.as_str() == c) || writing.iter().any(|k| k.as_str() == c)
            })?;
            writing.insert(id.clone());
            id
        };
        Ok(Box::new(upload::S3Sink::new(inner.clone(), id)))
    }
}

impl Storage for S3Storage {
    fn describe(&self) -> String {
        format!("S3 {}", self.inner.s.location())
    }

    fn create_rdb(&self, at: DateTime<Utc>) -> Result<Box<dyn RdbSink>> {
        self.create(at, true)
    }

    fn create_rdb_as_taken(&self, at: DateTime<Utc>) -> Result<Box<dyn RdbSink>> {
        self.create(at, false)
    }

    fn list(&self) -> Result<Listing> {
        let inner = &self.inner;
        let mut listing = Listing::default();
        let mut wanted = Vec::new();
        for (id, e) in inner.entries("")? {
            match e.manifest_size {
                None => {}
                Some(n) if n > MANIFEST_LIMIT => listing.problems.push(ListProblem {
                    error: StorageError::ManifestTooLarge {
                        path: inner.s.url(&self.manifest_key(&id)),
                        limit: MANIFEST_LIMIT,
                    },
                    id,
                }),
                Some(_) => wanted.push((id, e.rdb_size)),
            }
        }
        let keys: Vec<String> = wanted.iter().map(|(id, _)| self.manifest_key(id)).collect();
        let got = read::get_many(inner, &keys, MANIFEST_LIMIT);
        for ((id, rdb_size), data) in wanted.into_iter().zip(got) {
            match data.and_then(|d| d.map(|d| inner.check(&id, &d, rdb_size)).transpose()) {
                Ok(Some(m)) => listing.snapshots.push(m),
                // Deleted between the listing and the GET.
                Ok(None) => {}
                Err(error) => listing.problems.push(ListProblem { id, error }),
            }
        }
        listing.snapshots.sort_by(|a, b| b.id.cmp(&a.id));
        listing.problems.sort_by(|a, b| b.id.cmp(&a.id));
        Ok(listing)
    }

    fn get_manifest(&self, id: &SnapshotId) -> Result<Manifest> {
        self.inner.load(id)?.ok_or_else(|| self.inner.not_found(id))
    }

    fn open_rdb(&self, id: &SnapshotId) -> Result<Box<dyn Read + Send>> {
        // Only a snapshot that list would show can be read.
        self.get_manifest(id)?;
        let key = self.rdb_key(id);
        Ok(Box::new(read::open(&self.inner, &key)?))
    }

    fn delete(&self, id: &SnapshotId) -> Result<()> {
        let inner = &self.inner;
        inner.lease.acquire(inner)?;
        let entries = inner.entries(&format!("{id}/"))?;
        let Some(e) = entries.get(id) else {
            return Err(inner.not_found(id));
        };
        // The manifest first: from then on the snapshot does not exist.
        if e.manifest_size.is_some() {
            inner.delete_key(&self.manifest_key(id))?;
        }
        if e.rdb_size.is_some() {
            inner.delete_key(&self.rdb_key(id))?;
        }
        if !e.foreign.is_empty() {
            tracing::warn!(
                id = %id, keys = ?e.foreign,
                "snapshot deleted; keys replisnap did not create stay under its prefix"
            );
        }
        Ok(())
    }

    fn cleanup(&self) -> Result<CleanupReport> {
        let inner = &self.inner;
        let mut report = CleanupReport::default();
        match inner.lease.acquire(inner) {
            Ok(()) => {}
            Err(StorageError::Held { .. }) => {
                report.busy = true;
                return Ok(report);
            }
            Err(e) => return Err(e),
        }
        inner.abort_orphan_uploads(&mut report)?;
        for (id, e) in inner.entries("")? {
            if e.manifest_size.is_some() || inner.is_writing(&id) {
                continue;
            }
            if e.rdb_size.is_some() {
                let key = self.rdb_key(&id);
                inner.delete_key(&key)?;
                report.removed.push(inner.s.url(&key));
            }
            if !e.foreign.is_empty() {
                report.kept.push((
                    inner.s.url(&format!("{}{id}/", inner.s.prefix)),
                    format!(
                        "holds keys replisnap did not create: {}",
                        e.foreign.join(", ")
                    ),
                ));
            }
        }
        Ok(report)
    }

    fn put_object(&self, key: &str, data: &[u8]) -> Result<()> {
        objects::put(self, key, data)
    }

    fn get_object(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        objects::check_key(key)?;
        read::get_small(&self.inner, &format!("{}{key}", self.inner.s.prefix), limit)
    }

    fn list_objects(&self, prefix: &str) -> Result<Vec<super::ObjectInfo>> {
        objects::list(self, prefix)
    }

    fn delete_object(&self, key: &str) -> Result<()> {
        objects::check_key(key)?;
        self.inner
            .delete_key(&format!("{}{key}", self.inner.s.prefix))
    }

    fn claim(&self) -> Result<()> {
        self.inner.lease.acquire(&self.inner)
    }

    fn retries(&self) -> Vec<(&'static str, u64)> {
        self.inner.retries.totals()
    }
}

/// Marks an id as being written by this process until dropped.
pub(crate) struct Writing {
    inner: Arc<Inner>,
    id: SnapshotId,
}

impl Drop for Writing {
    fn drop(&mut self) {
        self.inner
            .writing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}
