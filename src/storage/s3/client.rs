//! The S3 client and the runtime it runs on, built from `[storage]`; S3 errors as
//! [`StorageError`]s.
//!
//! Owns every SDK setting replisnap relies on: the default credential chain (environment,
//! profile, web identity, ECS, EC2 instance metadata with IMDSv2), region, endpoint and
//! path-style addressing, bounded retries with exponential backoff and jitter, timeouts,
//! stalled-stream protection, the 2025 default-checksum behaviour and its opt-out, and the
//! TLS stack (rustls with ring, as the rest of replisnap). The storage trait is blocking:
//! [`Runtime::run`] drives a future to completion on a private multi-thread tokio runtime
//! from any thread, inside another runtime's task included. It must never print a secret:
//! credentials only ever reach the SDK.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{Credentials, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{ServerSideEncryption, StorageClass};
use aws_smithy_http_client::{tls, Builder as HttpBuilder};

use crate::config::{self, StorageKind};
use crate::storage::{Result, StorageError};

/// Part size when `[storage] part_size` is not set.
pub const DEFAULT_PART_SIZE: u64 = 16 << 20;
/// Parts in flight when `[storage] upload_concurrency` is not set.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Attempts per request when `[storage] max_attempts` is not set.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Lease lifetime when `[storage] lease_seconds` is not set.
pub const DEFAULT_LEASE_SECONDS: u64 = 60;

/// The whole-object checksum stored with `dump.rdb` (`[storage] checksum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    Crc64Nvme,
    Crc32C,
    Off,
}

/// Everything the backend needs from `[storage]`, defaults applied.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bucket: String,
    pub prefix: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub force_path_style: bool,
    pub sse: Option<ServerSideEncryption>,
    pub kms_key_id: Option<String>,
    pub storage_class: Option<StorageClass>,
    pub part_size: usize,
    pub concurrency: usize,
    pub checksum: Checksum,
    pub request_checksums_when_required: bool,
    pub response_checksums_when_required: bool,
    pub max_attempts: u32,
    pub lease: Duration,
    /// Longest wait from sending a request to the first byte of its answer (a part's
    /// upload included); then the attempt is abandoned and retried.
    pub read_timeout: Duration,
}

/// [`Settings::read_timeout`] by default: a 16 MiB part at 1.2 Mbit/s.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(120);

impl Settings {
    /// From a validated `[storage]` of kind s3.
    pub fn from_config(cfg: &config::Storage) -> Result<Settings> {
        let bad = |key: &str, reason: &str| StorageError::Broken {
            path: format!("storage.{key}"),
            reason: reason.into(),
        };
        if cfg.kind != StorageKind::S3 {
            return Err(bad("kind", "not \"s3\""));
        }
        let bucket = cfg
            .bucket
            .clone()
            .ok_or_else(|| bad("bucket", "required when kind = \"s3\""))?;
        let checksum = match cfg.checksum.as_deref() {
            None | Some("crc64nvme") => Checksum::Crc64Nvme,
            Some("crc32c") => Checksum::Crc32C,
            Some("none") => Checksum::Off,
            Some(_) => return Err(bad("checksum", "unknown value")),
        };
        let part = cfg.part_size.unwrap_or(DEFAULT_PART_SIZE);
        if !(config::MIN_PART_SIZE..=config::MAX_PART_SIZE).contains(&part) {
            return Err(bad("part_size", "out of range"));
        }
        Ok(Settings {
            bucket,
            prefix: cfg.prefix.clone(),
            region: cfg.region.clone(),
            endpoint: cfg.endpoint.clone(),
            force_path_style: cfg.force_path_style,
            sse: cfg.sse.as_deref().map(ServerSideEncryption::from),
            kms_key_id: cfg.kms_key_id.clone(),
            storage_class: cfg.storage_class.as_deref().map(StorageClass::from),
            part_size: usize::try_from(part).map_err(|_| bad("part_size", "too large"))?,
            concurrency: cfg.upload_concurrency.unwrap_or(DEFAULT_CONCURRENCY).max(1),
            checksum,
            request_checksums_when_required: cfg.request_checksum_calculation.as_deref()
                == Some("when_required"),
            response_checksums_when_required: cfg.response_checksum_validation.as_deref()
                == Some("when_required"),
            max_attempts: cfg.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS).max(1),
            lease: Duration::from_secs(cfg.lease_seconds.unwrap_or(DEFAULT_LEASE_SECONDS)),
            read_timeout: cfg
                .read_timeout_seconds
                .map_or(DEFAULT_READ_TIMEOUT, Duration::from_secs),
        })
    }

    /// `s3://bucket/prefix`, for logs and errors.
    pub fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    /// `s3://bucket/key`.
    pub fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

/// A private tokio runtime that blocking callers drive S3 requests on.
#[derive(Clone)]
pub struct Runtime {
    rt: Arc<Owned>,
}

/// Shut down without waiting when the last handle goes: that may happen on one of the
/// runtime's own threads (a task holding the storage), where a blocking drop panics.
struct Owned(Option<tokio::runtime::Runtime>);

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl std::ops::Deref for Owned {
    type Target = tokio::runtime::Runtime;
    fn deref(&self) -> &Self::Target {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Runtime {
    pub fn new() -> Result<Runtime> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("s3")
            .enable_all()
            .build()
            .map_err(|source| StorageError::Io {
                op: "start the S3 runtime",
                path: "s3".into(),
                source,
            })?;
        Ok(Runtime {
            rt: Arc::new(Owned(Some(rt))),
        })
    }

    /// Run `fut` on this runtime and wait for it. Works from any thread: the future is
    /// spawned and its result sent back, so no runtime is entered by the caller.
    pub fn run<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        // The task only ends without sending if it panicked (the SDK does not).
        rx.recv().expect("S3 task ended without a result")
    }

    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.rt.handle()
    }
}

/// Build the S3 client. `credentials` replaces the default chain (tests, embedding).
pub fn build(
    rt: &Runtime,
    s: &Settings,
    credentials: Option<Credentials>,
    retries: Arc<super::retries::RetryCounts>,
) -> Result<aws_sdk_s3::Client> {
    let s = s.clone();
    rt.run(async move {
        let http = HttpBuilder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let retry = RetryConfig::standard()
            .with_max_attempts(s.max_attempts)
            .with_initial_backoff(Duration::from_millis(200))
            .with_max_backoff(Duration::from_secs(20));
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(10))
            // A stalled answer: abandoned after read_timeout and retried.
            .read_timeout(s.read_timeout)
            // A 5 GiB part on a slow link still fits; a stall is caught sooner above.
            .operation_attempt_timeout(Duration::from_secs(600).max(s.read_timeout))
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .retry_config(retry)
            .timeout_config(timeouts)
            .stalled_stream_protection(
                StalledStreamProtectionConfig::enabled()
                    .grace_period(Duration::from_secs(20))
                    .build(),
            );
        if let Some(r) = &s.region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some(c) = credentials {
            loader = loader.credentials_provider(c);
        }
        let shared = loader.load().await;
        let mut b = aws_sdk_s3::config::Builder::from(&shared)
            .interceptor(super::retries::CountRetries(retries))
            .force_path_style(s.force_path_style)
            .request_checksum_calculation(if s.request_checksums_when_required {
                RequestChecksumCalculation::WhenRequired
            } else {
                RequestChecksumCalculation::WhenSupported
            })
            .response_checksum_validation(if s.response_checksums_when_required {
                ResponseChecksumValidation::WhenRequired
            } else {
                ResponseChecksumValidation::WhenSupported
            });
        if let Some(e) = &s.endpoint {
            b = b.endpoint_url(e.clone());
        }
        if shared.region().is_none() && s.region.is_none() {
            return Err(StorageError::Broken {
                path: "storage.region".into(),
                reason: "no region configured and none found in the environment \
                         (AWS_REGION, the profile, or instance metadata)"
                    .into(),
            });
        }
        Ok(aws_sdk_s3::Client::from_conf(b.build()))
    })
}

/// What went wrong with one request, said once: the service's code and message with the
/// HTTP status, or the transport's error chain.
pub fn describe<E>(e: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let err = se.err();
            match (err.code(), err.message()) {
                (Some(c), Some(m)) => format!("{c}: {m} (HTTP {status})"),
                (Some(c), None) => format!("{c} (HTTP {status})"),
                _ => format!("HTTP {status}"),
            }
        }
        // The transport's chain, each cause once (the SDK's own context printer appends a
        // Debug dump that repeats them).
        other => {
            let mut parts: Vec<String> = vec![other.to_string()];
            let mut source = std::error::Error::source(other);
            while let Some(e) = source {
                let m = e.to_string();
                if !m.is_empty() && !parts.iter().any(|p| p.contains(&m)) {
                    parts.push(m);
                }
                source = e.source();
            }
            parts.join(": ")
        }
    }
}

/// The HTTP status of a service error, if it is one.
pub fn status<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    match e {
        SdkError::ServiceError(se) => Some(se.raw().status().as_u16()),
        _ => None,
    }
}

/// The S3 error for `op` on `key`.
pub fn s3_error<E>(
    s: &Settings,
    op: &'static str,
    key: &str,
) -> impl FnOnce(SdkError<E, HttpResponse>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let key = s.url(key);
    move |e| StorageError::S3 {
        op,
        key,
        status: status(&e),
        message: describe(&e),
    }
}
