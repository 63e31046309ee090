//! Counting retried S3 attempts, by operation, for `upload_retries_total{op}`.
//!
//! Owns an SDK interceptor that reads, before each attempt, the attempt number the SDK's
//! orchestrator records (`RequestAttempts`, 1 for the first) and the operation's name
//! (`Metadata`): every attempt after the first is one retry of a failed one (5xx,
//! SlowDown, a reset, a timeout), whether or not it then succeeds. It must never change a
//! request, never fail one (an interceptor error would fail the request), and never
//! hold a lock: counters only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::retries::RequestAttempts;

/// The `op` label values: the operations an upload is made of, then the rest.
pub const OPS: [&str; 5] = [
    "put_object",
    "upload_part",
    "complete_multipart_upload",
    "create_multipart_upload",
    "other",
];

/// Retried attempts so far, by [`OPS`] index; shared by the interceptor and the storage.
#[derive(Debug, Default)]
pub struct RetryCounts([AtomicU64; OPS.len()]);

impl RetryCounts {
    /// (op label, retries so far), every op listed.
    pub fn totals(&self) -> Vec<(&'static str, u64)> {
        OPS.iter()
            .zip(&self.0)
            .map(|(op, n)| (*op, n.load(Ordering::Relaxed)))
            .collect()
    }

    fn note(&self, operation: &str) {
        let i = match operation {
            "PutObject" => 0,
            "UploadPart" => 1,
            "CompleteMultipartUpload" => 2,
            "CreateMultipartUpload" => 3,
            _ => 4,
        };
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// The interceptor installed on the client.
#[derive(Debug)]
pub struct CountRetries(pub Arc<RetryCounts>);

impl Intercept for CountRetries {
    fn name(&self) -> &'static str {
        "replisnap::CountRetries"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let attempt = cfg.load::<RequestAttempts>().map_or(1, |a| a.attempts());
        if attempt >= 2 {
            let op = cfg.load::<Metadata>().map_or("", |m| m.name());
            tracing::info!(op, attempt, "S3 request retried");
            self.0.note(op);
        }
        Ok(())
    }
}
