//! One writer per prefix: the lease object `<prefix>lock`, after Litestream's S3 leaser.
//!
//! Owns taking, renewing and releasing it with conditional writes only: taken with
//! `If-None-Match: *` (or, when the holder's lease has expired, `If-Match: <its etag>`),
//! renewed every third of its lifetime with `If-Match: <our etag>`, released by a DELETE
//! with `If-Match: <our etag>`. The body says who holds it (host, pid, an instance
//! number) and until when, so a refused writer names the holder. A renewal refused with
//! 412 means another process took the lease: from then on this one writes and deletes
//! nothing until it takes the lease again.
//!
//! It must never overwrite a lease it does not hold unless that lease's own expiry time
//! has passed, and never count a lease as held past the time it would expire for others
//! (the local deadline is measured from before the request that set it). Expiry compares
//! the holder's wall clock with ours: clocks are assumed within a few seconds of each
//! other (NTP), far below the default 60 s lifetime.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::client::{describe, s3_error, status};
use super::read::get_small_tagged;
use super::{Inner, Result, StorageError};

/// Most bytes of a lease body read.
const LEASE_LIMIT: u64 = 4096;
/// A lease this close to its local deadline is renewed before a write relies on it.
const MARGIN: Duration = Duration::from_secs(5);

#[derive(Debug, Serialize, Deserialize)]
struct Body {
    holder: String,
    until: DateTime<Utc>,
}

#[derive(Default)]
struct State {
    held: Option<Held>,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

struct Held {
    etag: String,
    /// When the lease expires for others, measured from before the request that set it.
    deadline: Instant,
    /// Why it is no longer ours, once a renewal found another holder.
    lost: Option<String>,
}

pub(super) struct Lease {
    key: String,
    ttl: Duration,
    holder: String,
    state: Arc<Mutex<State>>,
}

impl Lease {
    pub(super) fn new(key: String, ttl: Duration) -> Lease {
        Lease {
            key,
            ttl,
            holder: crate::storage::holder_name(),
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hold the lease with at least a few seconds left, taking it if needed; an error
    /// names the other holder.
    pub(super) fn acquire(&self, inner: &Arc<Inner>) -> Result<()> {
        let mut st = self.lock();
        if let Some(h) = &st.held {
            if h.lost.is_none() && h.deadline > Instant::now() + MARGIN {
                return Ok(());
            }
        }
        let previous = st.held.take().filter(|h| h.lost.is_none());
        let held = match previous {
            // Ours but close to expiry (renewals failing): renew now.
            Some(h) => self.put(inner, Some(&h.etag))?,
            None => self.take(inner)?,
        };
        st.held = Some(held);
        if st.renewer.as_ref().is_none_or(|r| r.is_finished()) {
            st.renewer = Some(self.spawn_renewer(inner));
        }
        Ok(())
    }

    /// Take a lease we do not hold: create it, or replace an expired one.
    fn take(&self, inner: &Inner) -> Result<Held> {
        for _ in 0..3 {
            match self.put(inner, None) {
                Err(StorageError::Exists { .. }) => {}
                other => return other,
            }
            let Some((data, etag)) = get_small_tagged(inner, &self.key, LEASE_LIMIT)? else {
                continue; // released meanwhile: try to create it again
            };
            let body: Option<Body> = serde_json::from_slice(&data).ok();
            let expired = body.as_ref().is_none_or(|b| b.until <= Utc::now());
            if !expired {
                let b = body.expect("checked above");
                return Err(StorageError::Held {
                    location: inner.s.location(),
                    holder: b.holder,
                    until: b.until.to_rfc3339(),
                });
            }
            let Some(etag) = etag else {
                return Err(StorageError::Broken {
                    path: inner.s.url(&self.key),
                    reason: "the store returned no ETag for the lease".into(),
                });
            };
            match self.put(inner, Some(&etag)) {
                // Another writer replaced the expired lease first: look again.
                Err(StorageError::Exists { .. }) => {}
                other => return other,
            }
        }
        Err(StorageError::Broken {
            path: inner.s.url(&self.key),
            reason: "the lease keeps changing hands; giving up".into(),
        })
    }

    /// Write our lease body: `If-None-Match: *` when `etag` is None, else `If-Match`.
    /// A refused precondition is [`StorageError::Exists`].
    fn put(&self, inner: &Inner, etag: Option<&str>) -> Result<Held> {
        let started = Instant::now();
        let body = Body {
            holder: self.holder.clone(),
            until: Utc::now() + self.ttl,
        };
        let json = serde_json::to_vec(&body).map_err(|e| StorageError::Broken {
            path: inner.s.url(&self.key),
            reason: e.to_string(),
        })?;
        let mut req = inner
            .client
            .put_object()
            .bucket(&inner.s.bucket)
            .key(&self.key)
            .content_type("application/json")
            .body(ByteStream::from(json));
        req = match etag {
            Some(e) => req.if_match(e),
            None => req.if_none_match("*"),
        };
        let err = s3_error(&inner.s, "write lease", &self.key);
        let url = inner.s.url(&self.key);
        let out = inner.rt.run(async move { req.send().await });
        match out {
            Ok(o) => Ok(Held {
                etag: o.e_tag.ok_or_else(|| StorageError::Broken {
                    path: url,
                    reason: "the store returned no ETag for the lease".into(),
                })?,
                deadline: started + self.ttl,
                lost: None,
            }),
            // 409: a concurrent conditional write to the same key (AWS).
            Err(e) if matches!(status(&e), Some(412) | Some(409)) => {
                Err(StorageError::Exists { key: url })
            }
            Err(e) => Err(err(e)),
        }
    }

    /// Renew every third of the lifetime while held; stop once lost.
    fn spawn_renewer(&self, inner: &Arc<Inner>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(inner);
        let period = self.ttl / 3;
        inner.rt.handle().spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(inner) = weak.upgrade() else { return };
                if !inner.lease.renew_async(&inner).await {
                    return;
                }
            }
        })
    }

    /// One renewal from the runtime; false once there is nothing more to renew.
    async fn renew_async(&self, inner: &Inner) -> bool {
        let Some(etag) = self
            .lock()
            .held
            .as_ref()
            .filter(|h| h.lost.is_none())
            .map(|h| h.etag.clone())
        else {
            return false;
        };
        let started = Instant::now();
        let body = Body {
            holder: self.holder.clone(),
            until: Utc::now() + self.ttl,
        };
        let Ok(json) = serde_json::to_vec(&body) else {
            return false;
        };
        let out = inner
            .client
            .put_object()
            .bucket(&inner.s.bucket)
            .key(&self.key)
            .content_type("application/json")
            .if_match(&etag)
            .body(ByteStream::from(json))
            .send()
            .await;
        let mut st = self.lock();
        let Some(h) = st.held.as_mut().filter(|h| h.etag == etag) else {
            return true; // released or re-taken meanwhile
        };
        match out {
            Ok(o) if o.e_tag.is_some() => {
                h.etag = o.e_tag.unwrap_or_default();
                h.deadline = started + self.ttl;
            }
            Ok(_) => h.lost = Some("the store returned no ETag for the renewed lease".into()),
            Err(e) if matches!(status(&e), Some(412) | Some(409)) => {
                tracing::error!(lease = %inner.s.url(&self.key), "lease lost: another writer took it; this process writes nothing until it takes the lease again");
                h.lost = Some("another writer took the lease".into());
                return false;
            }
            Err(e) => {
                tracing::warn!(lease = %inner.s.url(&self.key), error = %describe(&e), "lease renewal failed; retrying");
            }
        }
        true
    }

    /// Release the lease if held (DELETE with `If-Match`), best effort.
    pub(super) fn release(&self, inner: &Inner) {
        let (held, renewer) = {
            let mut st = self.lock();
            (st.held.take(), st.renewer.take())
        };
        if let Some(r) = renewer {
            r.abort();
        }
        let Some(h) = held.filter(|h| h.lost.is_none()) else {
            return;
        };
        let req = inner
            .client
            .delete_object()
            .bucket(&inner.s.bucket)
            .key(&self.key)
            .if_match(h.etag);
        if let Err(e) = inner.rt.run(async move { req.send().await }) {
            tracing::warn!(lease = %inner.s.url(&self.key), error = %describe(&e), "lease not released; it expires by itself");
        }
    }
}
