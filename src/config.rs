//! The daemon's configuration file (TOML, ../shared/SPEC.md §2): parsing and validation.
//!
//! Owns every key users may write and what it means, defaults included. Unknown keys and
//! bad values are errors naming the key and, from the TOML parser, the line. Secrets are
//! resolved here (inline, file, or environment) and never printed: [`Config::redacted`]
//! is what `check-config` shows.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {err}")]
    Read { path: String, err: std::io::Error },
    #[error("{path}: {msg}")]
    Parse { path: String, msg: String },
    #[error("{path}: {key}: {msg}")]
    Invalid {
        path: String,
        key: &'static str,
        msg: String,
    },
    /// A file a key names (a secret) could not be read; the caller adds the config file.
    #[error("{key} = {file:?}: cannot read: {err}")]
    KeyFile {
        key: &'static str,
        file: String,
        err: std::io::Error,
    },
}

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
    /// Seconds without a byte from the master (data or PING) before the link is declared
    /// stalled; default [`DEFAULT_SOURCE_TIMEOUT`] (the servers' `repl-timeout`).
    pub timeout: Option<u64>,
    pub tls: Option<Tls>,
}

pub const DEFAULT_SOURCE_TIMEOUT: u64 = 60;
pub const DEFAULT_READY_MAX_LAG: f64 = 30.0;
pub const DEFAULT_SNAPSHOT_TIMEOUT: u64 = 900;

impl Source {
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
}

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

impl Storage {
    /// The S3-only keys: refused under `kind = "local"`, range-checked under `"s3"`.
    fn validate_s3(&self) -> Result<(), (&'static str, String)> {
        let s3_only: [(&'static str, bool); 12] = [
            ("storage.bucket", self.bucket.is_some()),
            ("storage.region", self.region.is_some()),
            ("storage.endpoint", self.endpoint.is_some()),
            ("storage.sse", self.sse.is_some()),
            ("storage.storage_class", self.storage_class.is_some()),
            ("storage.part_size", self.part_size.is_some()),
            (
                "storage.upload_concurrency",
                self.upload_concurrency.is_some(),
            ),
            ("storage.checksum", self.checksum.is_some()),
            (
                "storage.request_checksum_calculation",
                self.request_checksum_calculation.is_some(),
            ),
            (
                "storage.response_checksum_validation",
                self.response_checksum_validation.is_some(),
            ),
            ("storage.max_attempts", self.max_attempts.is_some()),
            ("storage.lease_seconds", self.lease_seconds.is_some()),
        ];
        if self.kind == StorageKind::Local {
            if let Some((key, _)) = s3_only.iter().find(|(_, set)| *set) {
                return Err((key, "only with kind = \"s3\"".into()));
            }
            return Ok(());
        }
        if self.path.is_some() {
            return Err(("storage.path", "only with kind = \"local\"".into()));
        }
        if let Some(b) = &self.bucket {
            let ok = (3..=63).contains(&b.len())
                && b.bytes().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.'
                });
            if !ok {
                return Err((
                    "storage.bucket",
                    format!("{b:?}: 3 to 63 characters of a-z, 0-9, '-' and '.'"),
                ));
            }
        }
        if self.prefix.starts_with('/') || self.prefix.split('/').any(|p| p == "..") {
            return Err((
                "storage.prefix",
                format!("{:?}: must not start with '/' or hold '..'", self.prefix),
            ));
        }
        if let Some(e) = &self.endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err((
                    "storage.endpoint",
                    format!("{e:?}: expected an http:// or https:// URL"),
                ));
            }
        }
        if let Some(n) = self.part_size {
            if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&n) {
                return Err((
                    "storage.part_size",
                    format!("{n}: expected {MIN_PART_SIZE} (5 MiB) to {MAX_PART_SIZE} (5 GiB)"),
                ));
            }
        }
        if let Some(n) = self.upload_concurrency {
            if !(1..=64).contains(&n) {
                return Err((
                    "storage.upload_concurrency",
                    format!("{n}: expected 1 to 64"),
                ));
            }
        }
        if let Some(c) = &self.checksum {
            if !["crc64nvme", "crc32c", "none"].contains(&c.as_str()) {
                return Err((
                    "storage.checksum",
                    format!("{c:?}: expected \"crc64nvme\", \"crc32c\" or \"none\""),
                ));
            }
        }
        for (key, v) in [
            (
                "storage.request_checksum_calculation",
                &self.request_checksum_calculation,
            ),
            (
                "storage.response_checksum_validation",
                &self.response_checksum_validation,
            ),
        ] {
            if let Some(v) = v {
                if v != "when_supported" && v != "when_required" {
                    return Err((
                        key,
                        format!("{v:?}: expected \"when_supported\" or \"when_required\""),
                    ));
                }
            }
        }
        if let Some(n) = self.max_attempts {
            if !(1..=20).contains(&n) {
                return Err(("storage.max_attempts", format!("{n}: expected 1 to 20")));
            }
        }
        if let Some(n) = self.lease_seconds {
            if !(10..=3600).contains(&n) {
                return Err(("storage.lease_seconds", format!("{n}: expected 10 to 3600")));
            }
        }
        Ok(())
    }
}

/// Where the source password comes from, resolved.
pub const PASSWORD_ENV: &str = "REPLISNAP_SOURCE_PASSWORD";
/// The bearer token `POST /snapshot` requires, when `[http] token_file` is not set.
pub const HTTP_TOKEN_ENV: &str = "REPLISNAP_HTTP_TOKEN";

/// Whether a config line may hold a secret: its key names a password, a secret, a token,
/// a credential or a key (`secret_access_key`), wherever on the line.
fn holds_secret(line: &str) -> bool {
    let key = line.split('=').next().unwrap_or(line).to_ascii_lowercase();
    ["password", "secret", "token", "credential", "key"]
        .iter()
        .any(|w| key.contains(w))
}

/// `key = <redacted>`: the key stays (the user needs to know which line), the value goes.
fn redact_line(line: &str) -> String {
    match line.split_once('=') {
        Some((k, _)) => format!("{} = <redacted>", k.trim()),
        None => "<redacted>".into(),
    }
}

/// A parser message with every `quoted` part replaced (it may quote the value).
fn mask_quoted(msg: &str) -> String {
    let mut out = String::new();
    for (i, part) in msg.split('`').enumerate() {
        out.push_str(if i % 2 == 1 { "`…`" } else { part });
    }
    out
}

impl Config {
    /// Read, parse and validate a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
            path: p.clone(),
            err,
        })?;
        Config::parse(&text, &p)
    }

    /// Parse and validate TOML text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
        let c: Config = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|sp| {
                let before = &text[..sp.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let line_start = before.rfind('\n').map_or(0, |i| i + 1);
                let col = before.len() - line_start + 1;
                let src = text[line_start..].lines().next().unwrap_or("").trim();
                (format!("line {line}, column {col}"), src)
            });
            let mut message = e.message().trim_end().replace('\n', " ");
            let at = match at {
                // A secret's line is named, never shown, and neither is any value the
                // parser quotes from it (`invalid type: integer `1234``).
                Some((place, src)) if holds_secret(src) => {
                    message = mask_quoted(&message);
                    format!("{place} (`{}`): ", redact_line(src))
                }
                Some((place, src)) => format!("{place} (`{src}`): "),
                None => String::new(),
            };
            ConfigError::Parse {
                path: path.to_string(),
                msg: format!("{at}{message}"),
            }
        })?;
        c.validate(path)?;
        Ok(c)
    }

    fn validate(&self, path: &str) -> Result<(), ConfigError> {
        let bad = |key: &'static str, msg: String| ConfigError::Invalid {
            path: path.to_string(),
            key,
            msg,
        };
        let host_port = |a: &str| {
            a.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            })
        };
        let src = &self.source;
        if src.sentinels.is_empty() {
            if !host_port(&src.address) {
                let addr = &src.address;
                return Err(bad("source.address", format!("{addr:?} is not host:port")));
            }
            if src.master_name.is_some() {
                return Err(bad("source.master_name", "needs source.sentinels".into()));
            }
        } else {
            if !src.address.is_empty() {
                return Err(bad(
                    "source.sentinels",
                    "give address or sentinels, not both".into(),
                ));
            }
            if let Some(a) = src.sentinels.iter().find(|a| !host_port(a)) {
                return Err(bad("source.sentinels", format!("{a:?} is not host:port")));
            }
            if src.master_name.as_deref().is_none_or(str::is_empty) {
                return Err(bad(
                    "source.master_name",
                    "the name the sentinels monitor is required with sentinels".into(),
                ));
            }
        }
        if src.sentinel_username.is_some() && src.sentinel_password_file.is_none() {
            return Err(bad(
                "source.sentinel_username",
                "needs source.sentinel_password_file".into(),
            ));
        }
        if self.source.password.is_some() && self.source.password_file.is_some() {
            return Err(bad(
                "source.password",
                "give password or password_file, not both".into(),
            ));
        }
        if self.source.username.is_some()
            && self.source.password.is_none()
            && self.source.password_file.is_none()
            && std::env::var_os(PASSWORD_ENV).is_none()
        {
            return Err(bad(
                "source.username",
                format!("a username needs a password (password, password_file or ${PASSWORD_ENV})"),
            ));
        }
        if let Some(cmd) = &self.source.psync_command {
            if cmd.is_empty() || cmd.bytes().any(|b| b.is_ascii_whitespace()) {
                return Err(bad(
                    "source.psync_command",
                    format!("{cmd:?} is not a command name"),
                ));
            }
        }
        if let Some(tls) = &self.source.tls {
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                return Err(bad(
                    "source.tls.cert_file",
                    "cert_file and key_file go together".into(),
                ));
            }
        }
        if let Some(t) = self.source.timeout {
            if !(1..=3600).contains(&t) {
                return Err(bad(
                    "source.timeout",
                    format!("{t}: expected 1 to 3600 seconds"),
                ));
            }
        }
        if !(self.http.ready_max_lag.is_finite() && self.http.ready_max_lag > 0.0) {
            return Err(bad(
                "http.ready_max_lag",
                format!(
                    "{}: expected a positive number of seconds",
                    self.http.ready_max_lag
                ),
            ));
        }
        if !(10..=86400).contains(&self.snapshot.timeout) {
            return Err(bad(
                "snapshot.timeout",
                format!("{}: expected 10 to 86400 seconds", self.snapshot.timeout),
            ));
        }
        if self.replica.max_command_bytes < MIN_COMMAND_BYTES {
            return Err(bad(
                "replica.max_command_bytes",
                format!(
                    "{} is below the minimum of {MIN_COMMAND_BYTES} (1 MiB)",
                    self.replica.max_command_bytes
                ),
            ));
        }
        if self.snapshot.schedule.split_whitespace().count() != 6 {
            return Err(bad(
                "snapshot.schedule",
                format!(
                    "{:?}: expected 6 cron fields (sec min hour day month weekday)",
                    self.snapshot.schedule
                ),
            ));
        }
        if let Some(v) = &self.verify {
            if v.schedule.split_whitespace().count() != 6 {
                return Err(bad(
                    "verify.schedule",
                    format!(
                        "{:?}: expected 6 cron fields (sec min hour day month weekday)",
                        v.schedule
                    ),
                ));
            }
            if self.storage.is_none() {
                return Err(bad(
                    "verify.schedule",
                    "needs a [storage] section: it verifies the newest stored snapshot".into(),
                ));
            }
        }
        if let Some(s) = &self.storage {
            match s.kind {
                StorageKind::Local if s.path.is_none() => {
                    return Err(bad("storage.path", "required when kind = \"local\"".into()))
                }
                StorageKind::S3 if s.bucket.is_none() => {
                    return Err(bad("storage.bucket", "required when kind = \"s3\"".into()))
                }
                _ => {}
            }
            if let Some(sse) = &s.sse {
                if sse != "AES256" && sse != "aws:kms" {
                    return Err(bad(
                        "storage.sse",
                        format!("{sse:?}: expected \"AES256\" or \"aws:kms\""),
                    ));
                }
            }
            if s.kms_key_id.is_some() && s.sse.as_deref() != Some("aws:kms") {
                return Err(bad(
                    "storage.kms_key_id",
                    "only with sse = \"aws:kms\"".into(),
                ));
            }
            s.validate_s3().map_err(|(key, msg)| bad(key, msg))?;
        }
        if let Some(r) = &self.retention {
            let keeps = [
                r.keep_last,
                r.keep_hourly,
                r.keep_daily,
                r.keep_weekly,
                r.keep_monthly,
                r.keep_yearly,
            ];
            if keeps.iter().all(|k| k.is_none_or(|n| n == 0)) {
                return Err(bad(
                    "retention",
                    "no keep_* rule keeps anything; remove the section to keep every snapshot"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// The source password from the config, its file, or the environment. An unreadable
    /// file is [`ConfigError::KeyFile`] naming `source.password_file`.
    pub fn source_password(&self) -> Result<Option<String>, ConfigError> {
        if let Some(p) = &self.source.password {
            return Ok(Some(p.clone()));
        }
        if let Some(f) = &self.source.password_file {
            let text = std::fs::read_to_string(f).map_err(|err| ConfigError::KeyFile {
                key: "source.password_file",
                file: f.display().to_string(),
                err,
            })?;
            return Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()));
        }
        Ok(std::env::var(PASSWORD_ENV).ok())
    }

    /// The sentinels' password, from `[source] sentinel_password_file`.
    pub fn sentinel_password(&self) -> Result<Option<String>, ConfigError> {
        let Some(f) = &self.source.sentinel_password_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(f).map_err(|err| ConfigError::KeyFile {
            key: "source.sentinel_password_file",
            file: f.display().to_string(),
            err,
        })?;
        Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()))
    }

    /// The bearer token for `POST /snapshot`: `[http] token_file`'s contents (trailing
    /// newline dropped), else `$REPLISNAP_HTTP_TOKEN`; `None` when neither is set. An
    /// unreadable or empty file is [`ConfigError::KeyFile`] naming `http.token_file`.
    pub fn http_token(&self) -> Result<Option<String>, ConfigError> {
        let token = match &self.http.token_file {
            Some(f) => {
                let key_file = |err| ConfigError::KeyFile {
                    key: "http.token_file",
                    file: f.display().to_string(),
                    err,
                };
                let text = std::fs::read_to_string(f).map_err(key_file)?;
                let t = text.trim_end_matches(['\r', '\n']).to_string();
                if t.is_empty() {
                    return Err(key_file(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "the file is empty",
                    )));
                }
                t
            }
            None => match std::env::var(HTTP_TOKEN_ENV) {
                Ok(t) if !t.is_empty() => t,
                _ => return Ok(None),
            },
        };
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            let msg = "the token must be printable ASCII without spaces";
            return Err(match &self.http.token_file {
                Some(f) => ConfigError::KeyFile {
                    key: "http.token_file",
                    file: f.display().to_string(),
                    err: std::io::Error::new(std::io::ErrorKind::InvalidData, msg),
                },
                None => ConfigError::Invalid {
                    path: format!("${HTTP_TOKEN_ENV}"),
                    key: "http.token_file",
                    msg: msg.into(),
                },
            });
        }
        Ok(Some(token))
    }

    /// The effective configuration with every secret replaced.
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        if c.source.password.is_some() {
            c.source.password = Some("<redacted>".into());
        }
        c
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
