//! Reading from the bucket: small objects whole (manifests, the lease), sizes by HEAD, and
//! an RDB as a blocking [`Read`] fed by a task on the S3 runtime.
//!
//! Owns the bounds: a small object is read only up to its limit (a hostile or corrupt one
//! cannot make us allocate more), and a streamed body holds at most a few chunks in
//! memory. It must never treat a missing object as an error where absence is an answer.

use std::io::{self, Read};

use aws_sdk_s3::types::ChecksumMode;

use super::client::{s3_error, status};
use super::{Inner, Result, StorageError};

/// The body of `key` if it exists and is at most `limit` bytes; Ok(None) if it does not
/// exist.
pub(super) fn get_small(inner: &Inner, key: &str, limit: u64) -> Result<Option<Vec<u8>>> {
    Ok(get_small_tagged(inner, key, limit)?.map(|(data, _)| data))
}

/// As [`get_small`], with the object's ETag.
pub(super) fn get_small_tagged(
    inner: &Inner,
    key: &str,
    limit: u64,
) -> Result<Option<(Vec<u8>, Option<String>)>> {
    inner.rt.run(fetch_small(inner, key, limit))
}

/// [`get_small`] of many keys, up to [`PARALLEL_GETS`] at a time; results in key order.
pub(super) fn get_many(inner: &Inner, keys: &[String], limit: u64) -> Vec<Result<Option<Vec<u8>>>> {
    let futures: Vec<_> = keys.iter().map(|k| fetch_small(inner, k, limit)).collect();
    let handle = inner.rt.handle().clone();
    inner.rt.run(async move {
        let mut out = Vec::with_capacity(futures.len());
        let mut futures = futures.into_iter();
        loop {
            let batch: Vec<_> = futures
                .by_ref()
                .take(PARALLEL_GETS)
                .map(|f| handle.spawn(f))
                .collect();
            if batch.is_empty() {
                return out;
            }
            for h in batch {
                out.push(match h.await {
                    Ok(r) => r.map(|o| o.map(|(data, _)| data)),
                    Err(e) => Err(StorageError::Broken {
                        path: "s3 get task".into(),
                        reason: e.to_string(),
                    }),
                });
            }
        }
    })
}

/// Manifests fetched at once by `list`.
const PARALLEL_GETS: usize = 16;

/// The request behind the getters above; owns everything it needs, so it can be spawned.
fn fetch_small(
    inner: &Inner,
    key: &str,
    limit: u64,
) -> impl std::future::Future<Output = Result<Option<(Vec<u8>, Option<String>)>>> + Send + 'static {
    let client = inner.client.clone();
    let bucket = inner.s.bucket.clone();
    let k = key.to_string();
    let url = inner.s.url(key);
    let err = s3_error(&inner.s, "get", key);
    let too_large = StorageError::ManifestTooLarge {
        path: url.clone(),
        limit,
    };
    async move {
        let o = match client.get_object().bucket(bucket).key(k).send().await {
            Ok(o) => o,
            Err(e) if status(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(err(e)),
        };
        if o.content_length.is_some_and(|n| n < 0 || n as u64 > limit) {
            return Err(too_large);
        }
        let etag = o.e_tag;
        let mut body = o.body;
        let mut data = Vec::new();
        while let Some(chunk) = body.try_next().await.map_err(|e| StorageError::Io {
            op: "read",
            path: url.clone(),
            source: io::Error::other(e),
        })? {
            if data.len() as u64 + chunk.len() as u64 > limit {
                return Err(too_large);
            }
            data.extend_from_slice(&chunk);
        }
        Ok(Some((data, etag)))
    }
}

/// The size of `key`, or None if it does not exist.
pub(super) fn head_size(inner: &Inner, key: &str) -> Result<Option<u64>> {
    let client = inner.client.clone();
    let bucket = inner.s.bucket.clone();
    let k = key.to_string();
    let err = s3_error(&inner.s, "head", key);
    inner.rt.run(async move {
        match client.head_object().bucket(bucket).key(k).send().await {
            Ok(h) => Ok(Some(h.content_length.unwrap_or(0).max(0) as u64)),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(err(e)),
        }
    })
}

/// Chunks in flight between the download task and the reader.
const CHUNKS: usize = 8;

/// A streamed object body, read from a blocking thread.
pub(super) struct BodyReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<bytes::Bytes>>,
    cur: bytes::Bytes,
}

/// Start reading `key`: the request is made now (so a missing object is an error here),
/// the body is pulled as the reader asks for it. The SDK checks the stored whole-object
/// checksum when the store returns one.
pub(super) fn open(inner: &Inner, key: &str) -> Result<BodyReader> {
    let client = inner.client.clone();
    let bucket = inner.s.bucket.clone();
    let k = key.to_string();
    let err = s3_error(&inner.s, "get", key);
    let o = inner
        .rt
        .run(async move {
            client
                .get_object()
                .bucket(bucket)
                .key(k)
                .checksum_mode(ChecksumMode::Enabled)
                .send()
                .await
        })
        .map_err(err)?;
    let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS);
    let url = inner.s.url(key);
    let mut body = o.body;
    inner.rt.handle().spawn(async move {
        loop {
            let next = match body.try_next().await {
                Ok(Some(chunk)) => Ok(chunk),
                Ok(None) => return,
                Err(e) => Err(io::Error::other(format!("{url}: read: {e}"))),
            };
            let failed = next.is_err();
            // The reader went away: stop downloading.
            if tx.send(next).await.is_err() || failed {
                return;
            }
        }
    });
    Ok(BodyReader {
        rx,
        cur: bytes::Bytes::new(),
    })
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.cur = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}
