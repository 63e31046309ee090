//! Copying one stored snapshot out of storage, checked: shared by `fetch` of one snapshot
//! and `fetch` of a cluster's set (one file per shard).
//!
//! Owns the download and its checks: the bytes are hashed as they arrive and the file
//! appears (0600, fsynced, renamed into place) only once its length, SHA-256 and CRC-64
//! match the manifest. It must never leave a partial or unchecked file in place.

use std::io::{Read, Write};

use anyhow::{Context, Result};

use super::progress::Progress;
use crate::atomic_file::AtomicFile;
use crate::storage::ObjectHasher;

/// Copy snapshot `m` out of `storage` into `out_path`, hashed on the way; the file is put
/// in place only once its length, SHA-256 and CRC-64 match the manifest.
pub(crate) fn copy_checked(
    storage: &dyn crate::storage::Storage,
    m: &crate::storage::Manifest,
    out_path: &std::path::Path,
) -> Result<crate::storage::StoredObject> {
    let where_ = storage.describe();
    let id = m.id.to_string();
    let out_name = out_path.display().to_string();
    let mut input = storage
        .open_rdb(&m.id)
        .with_context(|| format!("{where_}: snapshot {id}"))?;
    let mut out =
        AtomicFile::create(out_path).with_context(|| format!("{out_name}: cannot create"))?;
    let mut hasher = ObjectHasher::new();
    let mut progress = Progress::bytes(m.rdb.bytes);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = input
            .read(&mut buf)
            .with_context(|| format!("{where_}: snapshot {id}: read"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .with_context(|| format!("{out_name}: write"))?;
        progress.set(hasher.bytes());
    }
    progress.finish();
    let stored = hasher.finish();
    m.check_describes(&m.id, &stored)
        .with_context(|| format!("{where_}: snapshot {id}: not written to {out_name}"))?;
    out.commit()
        .with_context(|| format!("{out_name}: cannot put in place"))?;
    Ok(stored)
}

/// Parse the fetched file whole and compare it with its manifest (CRC, digest, keys):
/// the problems found, none when it is good.
pub(crate) fn verify_file(
    m: &crate::storage::Manifest,
    out_path: &std::path::Path,
    stored: &crate::storage::StoredObject,
) -> Result<Vec<String>> {
    let out_name = out_path.display().to_string();
    let f = std::fs::File::open(out_path).with_context(|| format!("{out_name}: reopen"))?;
    let report = crate::verify::check_stream(
        m.id.as_str(),
        f,
        Some(stored.bytes),
        Some(m),
        super::now_ms(),
        |_| {},
    )?;
    Ok(if report.ok() {
        Vec::new()
    } else {
        report.problems.clone()
    })
}
