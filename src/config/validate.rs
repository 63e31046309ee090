//! What a parsed configuration must satisfy beyond its types: addresses, exclusive keys,
//! ranges, the S3 settings. Every refusal names its key. It must never read a file or
//! touch the network (`check-config` and `run` share it, and secrets are read elsewhere).

use super::error::ConfigError;
use super::model::*;

impl Storage {
    /// The S3-only keys: refused under `kind = "local"`, range-checked under `"s3"`.
    pub(super) fn validate_s3(&self) -> Result<(), (&'static str, String)> {
        // Both kinds: the lock file waits like the lease.
        if let Some(n) = self.lease_wait_seconds {
            if n > MAX_LEASE_WAIT_SECONDS {
                return Err((
                    "storage.lease_wait_seconds",
                    format!("{n}: expected 0 to {MAX_LEASE_WAIT_SECONDS} (a day)"),
                ));
            }
        }
        let s3_only: [(&'static str, bool); 13] = [
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
            (
                "storage.read_timeout_seconds",
                self.read_timeout_seconds.is_some(),
            ),
        ];
        if self.kind == StorageKind::Local {
            if let Some((key, _)) = s3_only.iter().find(|(_, set)| *set) {
                return Err((key, "only with kind = \"s3\"".into()));
            }
            // Local storage is already on this machine: a second local copy would only
            // double the disk used, so it is refused rather than silently ignored.
            if self.staging == Staging::Local {
                return Err((
                    "storage.staging",
                    "only with kind = \"s3\" (local storage is already a local copy)".into(),
                ));
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
        if let Some(n) = self.read_timeout_seconds {
            if !(1..=3600).contains(&n) {
                return Err((
                    "storage.read_timeout_seconds",
                    format!("{n}: expected 1 to 3600 seconds"),
                ));
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

impl Config {
    pub(super) fn validate(&self, path: &str) -> Result<(), ConfigError> {
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
        for (addr, cmd) in &src.psync_commands {
            if !host_port(addr) {
                return Err(bad(
                    "source.psync_commands",
                    format!("{addr:?} is not host:port"),
                ));
            }
            if cmd.is_empty() || cmd.bytes().any(|b| b.is_ascii_whitespace()) {
                return Err(bad(
                    "source.psync_commands",
                    format!("{cmd:?} (for {addr}) is not a command name"),
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
        if let Some(f) = &src.full_sync_from {
            if !host_port(f) {
                return Err(bad(
                    "source.full_sync_from",
                    format!("{f:?} is not host:port"),
                ));
            }
            if f.eq_ignore_ascii_case(&src.address) {
                return Err(bad(
                    "source.full_sync_from",
                    "is source.address: give a replica of that primary".into(),
                ));
            }
            // Sentinel moves the primary role: the replica named here may be the primary
            // after a failover, and a "full sync from the replica" would fork it.
            if !src.sentinels.is_empty() {
                return Err(bad(
                    "source.full_sync_from",
                    "not with source.sentinels (after a failover it may be the primary)".into(),
                ));
            }
        } else if src.full_sync_fallback.is_some() {
            return Err(bad(
                "source.full_sync_fallback",
                "needs source.full_sync_from".into(),
            ));
        }
        if let Some(n) = src.cluster_refresh_seconds {
            if !src.cluster {
                return Err(bad(
                    "source.cluster_refresh_seconds",
                    "needs source.cluster = true".into(),
                ));
            }
            if !(1..=86400).contains(&n) {
                return Err(bad(
                    "source.cluster_refresh_seconds",
                    format!("{n} is not 1 to 86400 (seconds)"),
                ));
            }
        }
        if src.cluster_instances.is_some() || src.cluster_instance.is_some() {
            let key = if src.cluster_instances.is_some() {
                "source.cluster_instances"
            } else {
                "source.cluster_instance"
            };
            if !src.cluster {
                return Err(bad(key, "needs source.cluster = true".into()));
            }
            match (src.cluster_instances, src.cluster_instance) {
                (Some(n), _) if !(1..=1024).contains(&n) => {
                    return Err(bad(key, format!("{n} is not 1 to 1024")));
                }
                (Some(n), Some(k)) if k >= n => {
                    return Err(bad(
                        "source.cluster_instance",
                        format!("{k} is not below cluster_instances ({n}); instances count from 0"),
                    ));
                }
                (None, Some(_)) => {
                    return Err(bad(
                        "source.cluster_instance",
                        "needs source.cluster_instances".into(),
                    ));
                }
                _ => {}
            }
        }
        if src.cluster {
            // One seed's answers name every shard; the parts below follow one master.
            let not_with = |what: &str| bad("source.cluster", format!("not with {what}"));
            if !src.sentinels.is_empty() {
                return Err(not_with(
                    "source.sentinels (a cluster elects its own primaries)",
                ));
            }
            if src.full_sync_from.is_some() {
                return Err(not_with("source.full_sync_from"));
            }
            if self.archive.as_ref().is_some_and(|a| a.enabled) {
                return Err(not_with("[archive] enabled: not yet per shard"));
            }
            if self.verify.is_some() {
                return Err(not_with(
                    "[verify]: not yet per shard (`replisnap verify` checks each shard's snapshots)",
                ));
            }
            if self.notify.is_some() {
                return Err(not_with("[notify]: not yet per snapshot set"));
            }
        }
        if let Some(mb) = src.dual_channel_memory_mb {
            if !(1..=65536).contains(&mb) {
                return Err(bad(
                    "source.dual_channel_memory_mb",
                    format!("{mb} is not 1 to 65536 (MiB)"),
                ));
            }
            if src.dual_channel == Some(false) {
                return Err(bad(
                    "source.dual_channel_memory_mb",
                    "has no use with source.dual_channel = false".into(),
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
        if let Some(n) = &self.notify {
            if let Some(u) = &n.heartbeat_url {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    return Err(bad(
                        "notify.heartbeat_url",
                        "expected an http:// or https:// URL".into(),
                    ));
                }
            }
            for (key, hook) in [
                ("notify.on_success", &n.on_success),
                ("notify.on_failure", &n.on_failure),
            ] {
                if let Some(h) = hook {
                    if !h.is_absolute() {
                        return Err(bad(
                            key,
                            format!("{}: expected an absolute path", h.display()),
                        ));
                    }
                }
            }
            if n.timeout == 0 {
                return Err(bad("notify.timeout", "must be at least 1 (seconds)".into()));
            }
            if self.storage.is_none() {
                return Err(bad(
                    "notify",
                    "needs a [storage] section: it reports stored snapshots".into(),
                ));
            }
        }
        if let Some(a) = self.archive.as_ref().filter(|a| a.enabled) {
            if a.segment_seconds == 0 || a.segment_seconds > 3600 {
                return Err(bad(
                    "archive.segment_seconds",
                    format!("{}: expected 1 to 3600 (seconds)", a.segment_seconds),
                ));
            }
            if a.segment_bytes < 4096 || a.segment_bytes > super::model::MAX_SEGMENT_BYTES {
                return Err(bad(
                    "archive.segment_bytes",
                    format!(
                        "{}: expected 4096 to {} (bytes)",
                        a.segment_bytes,
                        super::model::MAX_SEGMENT_BYTES
                    ),
                ));
            }
            if self.storage.is_none() {
                return Err(bad(
                    "archive.enabled",
                    "needs a [storage] section: segments are stored beside the snapshots".into(),
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
            if s.staging == Staging::Local && self.replica.state_dir.as_os_str().is_empty() {
                return Err(bad(
                    "storage.staging",
                    "needs [replica] state_dir: staged files are kept there".into(),
                ));
            }
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
}
