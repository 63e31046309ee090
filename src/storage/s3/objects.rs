//! Write-once archive objects in the bucket: PutObject with `If-None-Match: *` (a 412 is
//! [`StorageError::Exists`]: never an overwrite) and a paginated listing under the prefix.
//!
//! Owns only these two requests; key rules are `storage::objects::check_key`'s. It must
//! never write a key outside `<prefix>archive/`.

use aws_sdk_s3::primitives::ByteStream;

use super::client::{s3_error, status};
use super::{Result, S3Storage, StorageError};
use crate::storage::objects;
use crate::storage::ObjectInfo;

pub(super) use objects::check_key;

pub(super) fn put(s: &S3Storage, key: &str, data: &[u8]) -> Result<()> {
    check_key(key)?;
    let st = &s.inner.s;
    let full = format!("{}{key}", st.prefix);
    let req = s
        .inner
        .client
        .put_object()
        .bucket(&st.bucket)
        .key(&full)
        .content_type("application/octet-stream")
        .if_none_match("*")
        .set_server_side_encryption(st.sse.clone())
        .set_ssekms_key_id(st.kms_key_id.clone())
        .set_storage_class(st.storage_class.clone())
        .body(ByteStream::from(data.to_vec()));
    let url = st.url(&full);
    let err = s3_error(st, "put", &full);
    match s.inner.rt.run(async move { req.send().await }) {
        Ok(_) => Ok(()),
        Err(e) if status(&e) == Some(412) => Err(StorageError::Exists { key: url }),
        Err(e) => Err(err(e)),
    }
}

pub(super) fn list(s: &S3Storage, prefix: &str) -> Result<Vec<ObjectInfo>> {
    check_key(prefix)?;
    let st = &s.inner.s;
    let client = s.inner.client.clone();
    let bucket = st.bucket.clone();
    let full = format!("{}{prefix}", st.prefix);
    let err = s3_error(st, "list", &full);
    let strip = st.prefix.clone();
    let objects = s.inner.rt.run(async move {
        let mut pages = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(full)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            for o in page?.contents.unwrap_or_default() {
                if let Some(k) = o.key {
                    if let Some(rel) = k.strip_prefix(strip.as_str()) {
                        out.push(ObjectInfo {
                            key: rel.to_string(),
                            size: o.size.unwrap_or(0).max(0) as u64,
                        });
                    }
                }
            }
        }
        Ok(out)
    });
    let mut out = objects.map_err(err)?;
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}
