//! Writing a snapshot to S3: `dump.rdb` streamed as a multipart upload while the RDB is
//! produced, then checked, then `manifest.json`.
//!
//! Owns the upload's memory bound and its integrity. The sink fills one part buffer of
//! `part_size` bytes; a full buffer is handed to a task that uploads it, and at most
//! `upload_concurrency` such tasks run at once (the writer waits for the oldest), so one
//! upload holds about `part_size × (upload_concurrency + 1)` bytes, whatever the RDB's
//! size. Each part carries its own checksum (CRC64NVME or CRC32C); Complete carries the
//! whole object's (type FULL_OBJECT) and `If-None-Match: *`; then HeadObject must show the
//! size written and that checksum. An RDB smaller than one part is a single PutObject
//! with the same checks. The manifest is a PutObject with `If-None-Match: *`, last.
//!
//! It must never leave a visible object that is not whole or not ours to keep: a sink
//! dropped before commit aborts its multipart upload; an RDB that fails its check after
//! Complete is deleted; a stored RDB dropped without its manifest is deleted. What a crash
//! leaves (an incomplete upload, an RDB without manifest) is removed by `cleanup`.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::Instant;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart,
};
use crc_fast::{CrcAlgorithm, Digest};

use super::client::{s3_error, status, Checksum};
use super::{Inner, Writing};
use crate::storage::local::{MANIFEST_NAME, RDB_NAME};
use crate::storage::{
    Manifest, ObjectHasher, RdbSink, Result, SnapshotId, StorageError, StoredObject, StoredRdb,
};

/// The running whole-object checksum, and the per-part one, in S3's base64 form.
#[derive(Clone)]
struct Crc {
    kind: Checksum,
    digest: Option<Digest>,
}

impl Crc {
    fn new(kind: Checksum) -> Crc {
        let digest = match kind {
            Checksum::Crc64Nvme => Some(Digest::new(CrcAlgorithm::Crc64Nvme)),
            Checksum::Crc32C => Some(Digest::new(CrcAlgorithm::Crc32Iscsi)),
            Checksum::Off => None,
        };
        Crc { kind, digest }
    }

    fn of(kind: Checksum, data: &[u8]) -> Option<String> {
        let mut c = Crc::new(kind);
        c.update(data);
        c.base64()
    }

    fn update(&mut self, data: &[u8]) {
        if let Some(d) = &mut self.digest {
            d.update(data);
        }
    }

    /// Big-endian bytes, base64: how S3 spells `x-amz-checksum-*`.
    fn base64(&self) -> Option<String> {
        let v = self.digest.as_ref()?.finalize();
        Some(match self.kind {
            Checksum::Crc32C => aws_smithy_types::base64::encode((v as u32).to_be_bytes()),
            _ => aws_smithy_types::base64::encode(v.to_be_bytes()),
        })
    }

    fn algorithm(&self) -> Option<ChecksumAlgorithm> {
        match self.kind {
            Checksum::Crc64Nvme => Some(ChecksumAlgorithm::Crc64Nvme),
            Checksum::Crc32C => Some(ChecksumAlgorithm::Crc32C),
            Checksum::Off => None,
        }
    }
}

/// A multipart upload in progress.
struct Upload {
    upload_id: String,
    parts: i32,
    inflight: VecDeque<tokio::task::JoinHandle<Result<CompletedPart>>>,
    done: Vec<CompletedPart>,
}

pub(super) struct S3Sink {
    inner: Arc<Inner>,
    id: SnapshotId,
    key: String,
    writing: Option<Writing>,
    buf: Vec<u8>,
    hasher: ObjectHasher,
    crc: Crc,
    upload: Option<Upload>,
    /// The first failure; every later write and the commit report it.
    failed: Option<String>,
    started: Instant,
    committed: bool,
}

impl S3Sink {
    pub(super) fn new(inner: Arc<Inner>, id: SnapshotId) -> S3Sink {
        let key = inner.key(&id, RDB_NAME);
        let crc = Crc::new(inner.s.checksum);
        S3Sink {
            writing: Some(Writing {
                inner: inner.clone(),
                id: id.clone(),
            }),
            buf: Vec::new(),
            hasher: ObjectHasher::new(),
            crc,
            upload: None,
            failed: None,
            started: Instant::now(),
            committed: false,
            key,
            id,
            inner,
        }
    }

    fn fail(&mut self, e: StorageError) -> io::Error {
        let msg = e.to_string();
        self.failed.get_or_insert(msg.clone());
        io::Error::other(msg)
    }

    /// Start the multipart upload (at the first full part).
    fn create_upload(&self) -> Result<String> {
        let s = &self.inner.s;
        let mut req = self
            .inner
            .client
            .create_multipart_upload()
            .bucket(&s.bucket)
            .key(&self.key)
            .content_type("application/octet-stream")
            .set_server_side_encryption(s.sse.clone())
            .set_ssekms_key_id(s.kms_key_id.clone())
            .set_storage_class(s.storage_class.clone());
        if let Some(a) = self.crc.algorithm() {
            req = req
                .checksum_algorithm(a)
                .checksum_type(ChecksumType::FullObject);
        }
        let err = s3_error(s, "create multipart upload", &self.key);
        let out = self
            .inner
            .rt
            .run(async move { req.send().await })
            .map_err(err)?;
        out.upload_id.ok_or_else(|| StorageError::Broken {
            path: s.url(&self.key),
            reason: "the store returned no upload id".into(),
        })
    }

    /// Hand the buffer to an upload task, waiting first if `upload_concurrency` run.
    fn send_part(&mut self) -> Result<()> {
        if self.upload.is_none() {
            let upload_id = self.create_upload()?;
            self.upload = Some(Upload {
                upload_id,
                parts: 0,
                inflight: VecDeque::new(),
                done: Vec::new(),
            });
        }
        let part_size = self.inner.s.part_size;
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(part_size));
        let up = self.upload.as_mut().expect("created above");
        while up.inflight.len() >= self.inner.s.concurrency {
            let h = up.inflight.pop_front().expect("not empty");
            up.done.push(join(&self.inner, h)?);
        }
        up.parts += 1;
        let number = up.parts;
        let checksum = Crc::of(self.inner.s.checksum, &data);
        let algorithm = self.crc.algorithm();
        let kind = self.inner.s.checksum;
        let len = data.len() as i64;
        let req = self
            .inner
            .client
            .upload_part()
            .bucket(&self.inner.s.bucket)
            .key(&self.key)
            .upload_id(&up.upload_id)
            .part_number(number)
            .content_length(len)
            .set_checksum_algorithm(algorithm)
            .set_checksum_crc64_nvme(checksum.clone().filter(|_| kind == Checksum::Crc64Nvme))
            .set_checksum_crc32_c(checksum.clone().filter(|_| kind == Checksum::Crc32C))
            .body(ByteStream::from(data));
        let err = s3_error(&self.inner.s, "upload part", &self.key);
        up.inflight
            .push_back(self.inner.rt.handle().spawn(async move {
                let out = req.send().await.map_err(err)?;
                let mut part = CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag);
                match kind {
                    Checksum::Crc64Nvme => part = part.set_checksum_crc64_nvme(checksum),
                    Checksum::Crc32C => part = part.set_checksum_crc32_c(checksum),
                    Checksum::Off => {}
                }
                Ok(part.build())
            }));
        Ok(())
    }

    /// Complete the multipart upload: every part in, the whole-object checksum, and never
    /// over an existing object.
    fn complete(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.send_part()?;
        }
        let up = self.upload.as_mut().expect("complete needs an upload");
        while let Some(h) = up.inflight.pop_front() {
            up.done.push(join(&self.inner, h)?);
        }
        up.done.sort_by_key(|p| p.part_number);
        let mut req = self
            .inner
            .client
            .complete_multipart_upload()
            .bucket(&self.inner.s.bucket)
            .key(&self.key)
            .upload_id(&up.upload_id)
            .if_none_match("*")
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(up.done.clone()))
                    .build(),
            );
        if let Some(sum) = self.crc.base64() {
            req = req.checksum_type(ChecksumType::FullObject);
            req = match self.inner.s.checksum {
                Checksum::Crc32C => req.checksum_crc32_c(sum),
                _ => req.checksum_crc64_nvme(sum),
            };
        }
        let url = self.inner.s.url(&self.key);
        let err = s3_error(&self.inner.s, "complete multipart upload", &self.key);
        match self.inner.rt.run(async move { req.send().await }) {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(412) => Err(StorageError::Exists { key: url }),
            Err(e) => Err(err(e)),
        }
    }

    /// An RDB smaller than one part: one PutObject.
    fn put_single(&mut self) -> Result<()> {
        let s = &self.inner.s;
        let data = std::mem::take(&mut self.buf);
        let sum = self.crc.base64();
        let kind = s.checksum;
        let req = self
            .inner
            .client
            .put_object()
            .bucket(&s.bucket)
            .key(&self.key)
            .content_type("application/octet-stream")
            .if_none_match("*")
            .set_server_side_encryption(s.sse.clone())
            .set_ssekms_key_id(s.kms_key_id.clone())
            .set_storage_class(s.storage_class.clone())
            .set_checksum_algorithm(self.crc.algorithm())
            .set_checksum_crc64_nvme(sum.clone().filter(|_| kind == Checksum::Crc64Nvme))
            .set_checksum_crc32_c(sum.filter(|_| kind == Checksum::Crc32C))
            .body(ByteStream::from(data));
        let url = s.url(&self.key);
        let err = s3_error(s, "put", &self.key);
        match self.inner.rt.run(async move { req.send().await }) {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(412) => Err(StorageError::Exists { key: url }),
            Err(e) => Err(err(e)),
        }
    }

    /// HeadObject after the upload: the size we wrote and our whole-object checksum.
    fn check_stored(&self, bytes: u64) -> Result<()> {
        let s = &self.inner.s;
        let req = self
            .inner
            .client
            .head_object()
            .bucket(&s.bucket)
            .key(&self.key)
            .checksum_mode(ChecksumMode::Enabled);
        let err = s3_error(s, "head", &self.key);
        let h = self
            .inner
            .rt
            .run(async move { req.send().await })
            .map_err(err)?;
        let broken = |reason: String| StorageError::Broken {
            path: s.url(&self.key),
            reason,
        };
        let size = h.content_length.unwrap_or(-1);
        if size != bytes as i64 {
            return Err(broken(format!(
                "stored as {size} bytes where {bytes} were written"
            )));
        }
        let Some(ours) = self.crc.base64() else {
            return Ok(());
        };
        let (name, theirs) = match s.checksum {
            Checksum::Crc32C => ("CRC32C", h.checksum_crc32_c),
            _ => ("CRC64NVME", h.checksum_crc64_nvme),
        };
        // A composite checksum ("…-N") would not be comparable: we asked for FULL_OBJECT.
        match theirs {
            Some(t) if t == ours => Ok(()),
            Some(t) => Err(broken(format!(
                "the store's {name} is {t} where the bytes written give {ours}"
            ))),
            None => Err(broken(format!(
                "the store returned no {name} checksum to confirm the upload \
                 (set [storage] checksum = \"none\" for stores without checksums)"
            ))),
        }
    }
}

/// Wait for one part's upload task.
fn join(inner: &Inner, h: tokio::task::JoinHandle<Result<CompletedPart>>) -> Result<CompletedPart> {
    inner.rt.run(h).unwrap_or_else(|e| {
        Err(StorageError::Broken {
            path: "s3 upload task".into(),
            reason: e.to_string(),
        })
    })
}

/// Abort one multipart upload (its parts are freed; absent is fine).
pub(super) fn abort(inner: &Inner, key: &str, upload_id: &str) -> Result<()> {
    let req = inner
        .client
        .abort_multipart_upload()
        .bucket(&inner.s.bucket)
        .key(key)
        .upload_id(upload_id);
    let err = s3_error(&inner.s, "abort multipart upload", key);
    match inner.rt.run(async move { req.send().await }) {
        Ok(_) => Ok(()),
        Err(e) if status(&e) == Some(404) => Ok(()),
        Err(e) => Err(err(e)),
    }
}

impl Write for S3Sink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if let Some(m) = &self.failed {
            return Err(io::Error::other(m.clone()));
        }
        let part_size = self.inner.s.part_size;
        let n = data.len().min(part_size - self.buf.len());
        if self.buf.capacity() - self.buf.len() < n {
            // Grow by doubling, but never past one part (a small RDB stays small).
            let want = (self.buf.capacity() * 2)
                .max(self.buf.len() + n)
                .max(64 << 10)
                .min(part_size);
            self.buf.reserve_exact(want - self.buf.len());
        }
        self.buf.extend_from_slice(&data[..n]);
        self.hasher.update(&data[..n]);
        self.crc.update(&data[..n]);
        if self.buf.len() == part_size {
            if let Err(e) = self.send_part() {
                return Err(self.fail(e));
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl RdbSink for S3Sink {
    fn id(&self) -> &SnapshotId {
        &self.id
    }

    fn bytes_written(&self) -> u64 {
        self.hasher.bytes()
    }

    fn commit(mut self: Box<Self>) -> Result<Box<dyn StoredRdb>> {
        if let Some(m) = &self.failed {
            return Err(StorageError::Broken {
                path: self.inner.s.url(&self.key),
                reason: m.clone(),
            });
        }
        // The lease may have been lost while the RDB was produced: Complete only as holder.
        self.inner.lease.acquire(&self.inner)?;
        let bytes = self.hasher.bytes();
        let put = if self.upload.is_some() {
            self.complete()
        } else {
            self.put_single()
        };
        match put {
            Ok(()) => {
                // Dropping self from here on must not abort: the object is complete.
                self.committed = true;
                if let Err(e) = self.check_stored(bytes) {
                    let _ = self.inner.delete_key(&self.key);
                    return Err(e);
                }
            }
            // A retried request whose first attempt did succeed (its answer was lost) is
            // refused by its own object: that one has our size and whole-object checksum.
            // Anything else there is someone else's and stays untouched.
            Err(e @ StorageError::Exists { .. }) => {
                if self.crc.base64().is_none() || self.check_stored(bytes).is_err() {
                    return Err(e);
                }
                self.committed = true;
                tracing::info!(key = %self.inner.s.url(&self.key), "RDB already stored by an earlier attempt of the same request");
            }
            Err(e) => return Err(e),
        }
        tracing::info!(
            key = %self.inner.s.url(&self.key), bytes,
            parts = self.upload.as_ref().map_or(1, |u| u.parts),
            seconds = self.started.elapsed().as_secs_f64(),
            "RDB uploaded and checked"
        );
        Ok(Box::new(S3Stored {
            inner: self.inner.clone(),
            id: self.id.clone(),
            key: self.key.clone(),
            object: std::mem::take(&mut self.hasher).finish(),
            _writing: self.writing.take(),
            manifest_sent: false,
            done: false,
        }))
    }
}

impl Drop for S3Sink {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let Some(up) = self.upload.take() else {
            return;
        };
        for h in &up.inflight {
            h.abort();
        }
        match abort(&self.inner, &self.key, &up.upload_id) {
            Ok(()) => {
                tracing::info!(key = %self.inner.s.url(&self.key), upload = %up.upload_id, "multipart upload aborted")
            }
            Err(e) => {
                tracing::warn!(error = %e, "multipart upload not aborted; cleanup will retry")
            }
        }
    }
}

/// An uploaded, checked `dump.rdb` whose manifest is not written yet.
struct S3Stored {
    inner: Arc<Inner>,
    id: SnapshotId,
    key: String,
    object: StoredObject,
    // Keeps cleanup in this process away until the manifest lands.
    _writing: Option<Writing>,
    /// A manifest PUT was sent and not refused: one may exist, and it is ours.
    manifest_sent: bool,
    done: bool,
}

impl StoredRdb for S3Stored {
    fn id(&self) -> &SnapshotId {
        &self.id
    }

    fn object(&self) -> &StoredObject {
        &self.object
    }

    fn put_manifest(mut self: Box<Self>, manifest: &Manifest) -> Result<()> {
        manifest.check_describes(&self.id, &self.object)?;
        let inner = self.inner.clone();
        let s = &inner.s;
        let key = inner.key(&self.id, MANIFEST_NAME);
        let url = s.url(&key);
        let json = manifest
            .to_json()
            .map_err(|reason| StorageError::Manifest {
                path: url.clone(),
                reason,
            })?;
        inner.lease.acquire(&inner)?;
        // Never a manifest for an RDB that is not there as stored (deleted meanwhile).
        match super::read::head_size(&inner, &self.key)? {
            Some(n) if n == self.object.bytes => {}
            _ => {
                return Err(StorageError::Broken {
                    path: s.url(&self.key),
                    reason: "changed or removed after it was stored".into(),
                })
            }
        }
        let sum = Crc::of(s.checksum, &json);
        let kind = s.checksum;
        let req = inner
            .client
            .put_object()
            .bucket(&s.bucket)
            .key(&key)
            .content_type("application/json")
            .if_none_match("*")
            .set_server_side_encryption(s.sse.clone())
            .set_ssekms_key_id(s.kms_key_id.clone())
            .set_checksum_algorithm(Crc::new(kind).algorithm())
            .set_checksum_crc64_nvme(sum.clone().filter(|_| kind == Checksum::Crc64Nvme))
            .set_checksum_crc32_c(sum.filter(|_| kind == Checksum::Crc32C))
            .body(ByteStream::from(json.clone()));
        let json_sent = json;
        let err = s3_error(s, "put", &key);
        self.manifest_sent = true;
        match inner.rt.run(async move { req.send().await }) {
            Ok(_) => {}
            Err(e) if status(&e) == Some(412) => {
                // Ours if it holds exactly what we sent (an earlier attempt of this request
                // landed and its answer was lost); otherwise someone else's, and it stays.
                let there = super::read::get_small(&inner, &key, crate::storage::MANIFEST_LIMIT)?;
                if there.as_deref() != Some(json_sent.as_slice()) {
                    self.manifest_sent = false;
                    return Err(StorageError::Exists { key: url });
                }
            }
            Err(e) => return Err(err(e)),
        }
        self.done = true;
        Ok(())
    }
}

impl Drop for S3Stored {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // No manifest was promised, so none may remain: the usual order removes both. A
        // manifest refused with 412 is not ours and stays.
        let manifest = self.inner.key(&self.id, MANIFEST_NAME);
        let keys = [manifest.as_str(), self.key.as_str()];
        for key in &keys[usize::from(!self.manifest_sent)..] {
            if let Err(e) = self.inner.delete_key(key) {
                tracing::warn!(error = %e, "not removed; cleanup will retry");
            }
        }
    }
}
