//! Every key users may write (SPEC §2), its type and its default. A leaf: what a value
//! means is checked in `validate.rs`, secrets are read in `mod.rs`.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub source: Source,
    #[serde(default)]
    pub replica: Replica,
    #[serde(default)]
    pub snapshot: SnapshotConfig,
    pub storage: Option<Storage>,
    pub retention: Option<Retention>,
    #[serde(default)]
    pub http: Http,
    /// Scheduled verification of the newest stored snapshot; absent: off.
    pub verify: Option<VerifyConfig>,
    /// The dead man's switch and hooks after each snapshot; absent: off.
    pub notify: Option<NotifyConfig>,
    /// The stream archive for point-in-time recovery (SPEC §6); absent: off.
    pub archive: Option<ArchiveConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// host:port of the master (or of a replica, for chained replication); empty when
    /// the master is found through `sentinels`.
    #[serde(default)]
    pub address: String,
    /// Sentinels (host:port) asked for `master_name`'s address before every connection.
    #[serde(default)]
    pub sentinels: Vec<String>,
    pub master_name: Option<String>,
    /// The sentinels' own ACL user and password (a file), when they require one.
    pub sentinel_username: Option<String>,
    pub sentinel_password_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    /// The PSYNC command's name where a provider renamed it (ElastiCache).
    pub psync_command: Option<String>,
    /// A PSYNC name per node address (host:port, as connected to), overriding
    /// `psync_command` there: ElastiCache grants one per node, and a failover moves the link.
    #[serde(default)]
    pub psync_commands: std::collections::BTreeMap<String, String>,
    /// Seconds without a byte from the master (data or PING) before the link is declared
    /// stalled; default [`DEFAULT_SOURCE_TIMEOUT`] (the servers' `repl-timeout`).
    pub timeout: Option<u64>,
    /// host:port of a replica of the same primary to take full syncs from, so the primary
    /// never forks for us: the payload is loaded from it, then the link moves to the
    /// primary with `PSYNC <replid> <offset+1>`. Reached with the source's credentials and
    /// TLS.
    pub full_sync_from: Option<String>,
    /// What to do when the primary cannot continue from a full sync taken from
    /// `full_sync_from`; default [`FullSyncFallback::Never`].
    pub full_sync_fallback: Option<FullSyncFallback>,
    /// Take a full sync on a second connection where the master offers it (Valkey 8+
    /// `dual-channel-replication-enabled`, Redis 8 `repl-rdb-channel`); default true.
    pub dual_channel: Option<bool>,
    /// MiB of the stream held in memory during such a sync before the rest goes to a file
    /// in `[replica] state_dir`; default [`DEFAULT_DUAL_CHANNEL_MEMORY_MB`].
    pub dual_channel_memory_mb: Option<u64>,
    /// `address` is a seed node of a Redis/Valkey Cluster (or ElastiCache cluster mode):
    /// every shard's primary is followed, each shard snapshotted on its own, and each tick
    /// grouped into a snapshot set (docs/cluster.md).
    #[serde(default)]
    pub cluster: bool,
    /// Seconds between re-discoveries of a cluster's shards; default
    /// [`DEFAULT_CLUSTER_REFRESH_SECONDS`]. A changed slot map restarts the shards.
    pub cluster_refresh_seconds: Option<u64>,
    /// Several processes share one cluster: this many instances, each taking the shards
    /// whose index (in slot order) modulo `cluster_instances` is its `cluster_instance`
    /// (`replisnap run --instance K` sets the latter, for systemd template units and
    /// StatefulSet ordinals).
    pub cluster_instances: Option<u32>,
    pub cluster_instance: Option<u32>,
    pub tls: Option<Tls>,
}

/// `[source] full_sync_fallback`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum FullSyncFallback {
    /// Never make the primary fork: back to `full_sync_from` for a fresh full sync.
    #[default]
    Never,
    /// An ordinary full sync from the primary (it forks).
    Primary,
}

pub const DEFAULT_SOURCE_TIMEOUT: u64 = 60;
pub const DEFAULT_DUAL_CHANNEL_MEMORY_MB: u64 = 64;
pub const DEFAULT_READY_MAX_LAG: f64 = 30.0;
pub const DEFAULT_SNAPSHOT_TIMEOUT: u64 = 900;

pub const DEFAULT_CLUSTER_REFRESH_SECONDS: u64 = 30;

impl Source {
    /// `cluster_refresh_seconds`, or its default.
    pub fn cluster_refresh_seconds(&self) -> u64 {
        self.cluster_refresh_seconds
            .unwrap_or(DEFAULT_CLUSTER_REFRESH_SECONDS)
    }

    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout.unwrap_or(DEFAULT_SOURCE_TIMEOUT))
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Replica {
    pub state_dir: PathBuf,
    pub announce_port: u16,
    /// Most bytes one command of the stream (or one reply) may take; a larger one drops
    /// the link with an error naming the cap.
    pub max_command_bytes: usize,
    /// SIGTERM writes a local checkpoint of the dataset into `state_dir`, so the next
    /// start resumes with a partial resync (see `snapshot::checkpoint`).
    pub checkpoint_on_shutdown: bool,
}

/// The smallest `[replica] max_command_bytes` accepted.
pub const MIN_COMMAND_BYTES: usize = 1 << 20;

impl Default for Replica {
    fn default() -> Self {
        Replica {
            state_dir: PathBuf::from("/var/lib/replisnap"),
            announce_port: 6379,
            max_command_bytes: crate::resp::Limits::default().max_command_bytes,
            checkpoint_on_shutdown: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotConfig {
    /// Cron with a seconds field.
    pub schedule: String,
    pub timezone: Option<String>,
    pub rdb_compression: bool,
    /// Seconds a snapshot's write may go without progress before it counts as stuck:
    /// `/readyz` fails and systemd's watchdog stops.
    pub timeout: u64,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            schedule: "0 0 * * * *".into(),
            timezone: None,
            rdb_compression: true,
            timeout: DEFAULT_SNAPSHOT_TIMEOUT,
        }
    }
}

/// `[verify]`: the daemon checks the newest stored snapshot on this schedule, as
/// `replisnap verify --config F latest` does.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// Cron with a seconds field, like `[snapshot] schedule`.
    pub schedule: String,
    /// The zone the schedule is read in; absent: `[snapshot] timezone`, else UTC.
    pub timezone: Option<String>,
}

/// `[notify]`: what the daemon tells the outside after each snapshot.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// GET after each stored snapshot (a dead man's switch such as healthchecks.io); a
    /// failed snapshot GETs `<url>/fail` when `heartbeat_fail` is set.
    pub heartbeat_url: Option<String>,
    /// Also GET `<heartbeat_url>/fail` after a failed snapshot (healthchecks.io's form).
    #[serde(default)]
    pub heartbeat_fail: bool,
    /// Run after each stored snapshot, with `REPLISNAP_*` variables (absolute path).
    pub on_success: Option<PathBuf>,
    /// Run after each failed snapshot, with `REPLISNAP_*` variables (absolute path).
    pub on_failure: Option<PathBuf>,
    /// Seconds a hook may run before it is killed (and a heartbeat may take).
    #[serde(default = "default_hook_timeout")]
    pub timeout: u64,
}

/// `[archive]`: the replication stream, as applied, stored in segments beside the snapshots.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    #[serde(default)]
    pub enabled: bool,
    /// A segment is closed after this many seconds since its first byte.
    #[serde(default = "default_segment_seconds")]
    pub segment_seconds: u64,
    /// … or once it holds this many stream bytes.
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
}

pub const DEFAULT_SEGMENT_SECONDS: u64 = 10;
pub const DEFAULT_SEGMENT_BYTES: u64 = 16 << 20;
/// The largest `segment_bytes` accepted: a segment is held whole in memory to be stored.
pub const MAX_SEGMENT_BYTES: u64 = 256 << 20;

fn default_segment_seconds() -> u64 {
    DEFAULT_SEGMENT_SECONDS
}

fn default_segment_bytes() -> u64 {
    DEFAULT_SEGMENT_BYTES
}

fn default_hook_timeout() -> u64 {
    60
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    Local,
    S3,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    pub kind: StorageKind,
    pub path: Option<PathBuf>,
    pub bucket: Option<String>,
    #[serde(default)]
    pub prefix: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    #[serde(default)]
    pub force_path_style: bool,
    pub sse: Option<String>,
    pub kms_key_id: Option<String>,
    pub storage_class: Option<String>,
    /// S3: bytes per multipart part (default 16 MiB; 5 MiB to 5 GiB). Memory held by one
    /// upload is about `part_size × (upload_concurrency + 1)`.
    pub part_size: Option<u64>,
    /// S3: parts uploaded at once (default 4; 1 to 64).
    pub upload_concurrency: Option<usize>,
    /// S3: the whole-object checksum stored with `dump.rdb` and checked after the upload:
    /// "crc64nvme" (default), "crc32c", or "none" for stores that support neither.
    pub checksum: Option<String>,
    /// S3: the SDK's `request_checksum_calculation` ("when_supported", the default, or
    /// "when_required" for S3-compatible stores that reject the checksums AWS SDKs send
    /// since 2025).
    pub request_checksum_calculation: Option<String>,
    /// S3: the SDK's `response_checksum_validation` ("when_supported" or "when_required").
    pub response_checksum_validation: Option<String>,
    /// S3: attempts per request, the first included (default 5), with exponential backoff
    /// and jitter between them.
    pub max_attempts: Option<u32>,
    /// S3: how long the writer lease (`<prefix>lock`) lasts unless renewed (default 60 s;
    /// renewed every third of it).
    pub lease_seconds: Option<u64>,
    /// S3: longest wait for the first byte of a request's answer (a part's upload
    /// included) before the attempt is abandoned and retried (default 120 s; 1 to 3600).
    pub read_timeout_seconds: Option<u64>,
    /// Seconds `run` waits for the lease (S3) or writer lock (local) when another process
    /// holds it, retrying every third of `lease_seconds` (S3) or every second (local);
    /// absent or 0: refuse at once, naming the holder.
    pub lease_wait_seconds: Option<u64>,
    /// S3: `"local"` also keeps each snapshot file in `[replica] state_dir`/staging (a
    /// failed upload is retried from it, a warm restart reads it instead of downloading);
    /// `"none"` (default) streams to the bucket only. Refused with `kind = "local"`.
    #[serde(default)]
    pub staging: Staging,
}

/// `[storage] staging`.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Staging {
    #[default]
    None,
    Local,
}

/// Most `[storage] lease_wait_seconds` accepted: a day.
pub const MAX_LEASE_WAIT_SECONDS: u64 = 86_400;

/// Bounds of `[storage] part_size`: S3's own (5 MiB minimum part, 5 GiB maximum).
pub const MIN_PART_SIZE: u64 = 5 << 20;
pub const MAX_PART_SIZE: u64 = 5 << 30;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    pub timezone: Option<String>,
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    pub listen: SocketAddr,
    /// A file holding the bearer token `POST /snapshot` requires (else
    /// `$REPLISNAP_HTTP_TOKEN`; neither: no token).
    pub token_file: Option<PathBuf>,
    /// `/readyz` is 503 while `replication_lag_seconds` exceeds this.
    pub ready_max_lag: f64,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            listen: SocketAddr::from(([127, 0, 0, 1], 9187)),
            token_file: None,
            ready_max_lag: DEFAULT_READY_MAX_LAG,
        }
    }
}

/// Where the source password comes from, resolved.
pub const PASSWORD_ENV: &str = "REPLISNAP_SOURCE_PASSWORD";
/// The bearer token `POST /snapshot` requires, when `[http] token_file` is not set.
pub const HTTP_TOKEN_ENV: &str = "REPLISNAP_HTTP_TOKEN";
