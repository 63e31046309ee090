//! Everything the daemon does before the replica attaches, in two steps. [`check`]: the
//! config checks that need more than the config's own types (the password file, the TLS
//! files, the snapshot and verify cron expressions and time zones, the retention policy,
//! the storage settings) — side-effect free, so `replisnap check-config` runs exactly the
//! same code. [`open_checkpoints`]: locking `[replica] state_dir`. [`claim_and_restore`]:
//! taking the storage as its only writer, cleaning it, and the warm restart (the newer of
//! the shutdown checkpoint and the newest verified snapshot becomes the replica's
//! preload, so its first attach is a PSYNC).
//!
//! Owns the order "refuse, then claim, then clean, then load": whatever can be refused is
//! refused before storage is claimed or the master is contacted. It must never start a
//! thread, never contact the master, and never modify storage before [`Storage::claim`]
//! succeeded; [`check`] must never touch storage, the network or a port.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono_tz::Tz;
use tracing::{info, warn};

use super::error::DaemonError;
use crate::config::{Config, StorageKind};
use crate::replication::sentinel::SentinelSettings;
use crate::replication::tls::{self, TlsSettings};
use crate::replication::{Replica, ReplicaHandle, Settings};
use crate::resp::Limits;
use crate::retention::Policy;
use crate::snapshot::checkpoint::{self, CheckpointDir};
use crate::snapshot::{schedule, warm};
use crate::storage::Storage;

/// What the checks produced: the replica's settings (password read) and the checked
/// policies.
pub struct Checked {
    pub settings: Settings,
    pub retention: Option<Policy>,
    /// `[verify] schedule` and the zone it is read in, when set.
    pub verify: Option<(String, Tz)>,
    /// The bearer token `POST /snapshot` requires (`[http] token_file`, else the env).
    pub http_token: Option<String>,
    /// Where to ask for the master's address (`[source] sentinels`), when set.
    pub sentinel: Option<SentinelSettings>,
}

/// A config key's value refused by the part that uses it ("source.tls: …").
#[derive(Debug, thiserror::Error)]
#[error("{key}: {msg}")]
struct KeyError {
    key: &'static str,
    msg: String,
}

/// The replica's settings from the config, with the password already read.
fn replica_settings(cfg: &Config, password: Option<String>) -> Settings {
    Settings {
        address: cfg.source.address.clone(),
        username: cfg.source.username.clone(),
        password,
        announce_port: cfg.replica.announce_port,
        psync_command: cfg
            .source
            .psync_command
            .clone()
            .unwrap_or_else(|| "PSYNC".into()),
        connect_timeout: Duration::from_secs(10),
        tls: cfg.source.tls.as_ref().map(|t| TlsSettings {
            ca_file: t.ca_file.clone(),
            cert_file: t.cert_file.clone(),
            key_file: t.key_file.clone(),
            server_name: t.server_name.clone(),
            insecure_skip_verify: t.insecure_skip_verify,
        }),
    }
}

/// Everything `run` refuses about a config before it binds, claims or connects; `file`
/// names the config file in errors. No side effect: `check-config` calls it too.
pub fn check(cfg: &Config, file: &str) -> Result<Checked, DaemonError> {
    let refuse = |e| DaemonError::config(file, e);
    let password = cfg.source_password().map_err(refuse)?;
    let settings = replica_settings(cfg, password);
    let http_token = cfg.http_token().map_err(refuse)?;
    if let Some(t) = &settings.tls {
        let keyed = |e: tls::TlsError| {
            DaemonError::config(
                file,
                KeyError {
                    key: "source.tls",
                    msg: e.to_string(),
                },
            )
        };
        tls::client_config(t).map_err(keyed)?;
        // Through Sentinel the address is known per connection only.
        if !settings.address.is_empty() {
            tls::server_name(t, &settings.address).map_err(keyed)?;
        }
    }
    schedule::validate(&cfg.snapshot.schedule, cfg.snapshot.timezone.as_deref())
        .map_err(|e| DaemonError::config(file, e))?;
    let verify = match &cfg.verify {
        Some(v) => {
            // Read in its own zone if it names one, else in the snapshot schedule's.
            let (zone_key, zone_name) = match &v.timezone {
                Some(z) => ("verify.timezone", Some(z.as_str())),
                None => ("snapshot.timezone", cfg.snapshot.timezone.as_deref()),
            };
            let tz = schedule::check("verify.schedule", &v.schedule, zone_key, zone_name)
                .map_err(|e| DaemonError::config(file, e))?;
            Some((v.schedule.clone(), tz))
        }
        None => None,
    };
    let retention = cfg
        .retention
        .as_ref()
        .map(Policy::from_config)
        .transpose()
        .map_err(|e| DaemonError::config(file, e))?;
    if let Some(n) = &cfg.notify {
        // A hook that cannot run would only show at the first snapshot: refuse it now.
        for (key, hook) in [
            ("notify.on_success", &n.on_success),
            ("notify.on_failure", &n.on_failure),
        ] {
            if let Some(path) = hook {
                let runnable = std::fs::metadata(path).map(|m| {
                    use std::os::unix::fs::PermissionsExt;
                    m.is_file() && m.permissions().mode() & 0o111 != 0
                });
                let msg = match runnable {
                    Ok(true) => continue,
                    Ok(false) => format!("{}: not an executable file", path.display()),
                    Err(e) => format!("{}: {e}", path.display()),
                };
                return Err(DaemonError::config(file, KeyError { key, msg }));
            }
        }
    }
    if let Some(s) = &cfg.storage {
        if s.kind == StorageKind::S3 {
            crate::storage::s3::Settings::from_config(s)
                .map_err(|e| DaemonError::config(file, e))?;
        }
    }
    let sentinel = if cfg.source.sentinels.is_empty() {
        None
    } else {
        Some(SentinelSettings {
            addresses: cfg.source.sentinels.clone(),
            master_name: cfg.source.master_name.clone().unwrap_or_default(),
            username: cfg.source.sentinel_username.clone(),
            password: cfg.sentinel_password().map_err(refuse)?,
            // Sentinels of a TLS deployment speak TLS with the same CA.
            tls: settings.tls.clone(),
            timeout: Duration::from_secs(5),
        })
    };
    Ok(Checked {
        settings,
        retention,
        verify,
        http_token,
        sentinel,
    })
}

/// The storage `[storage]` names (an S3 client makes no request yet), or none.
pub fn open_storage(cfg: &Config, file: &str) -> Result<Option<Arc<dyn Storage>>, DaemonError> {
    match &cfg.storage {
        Some(s) => Ok(Some(Arc::from(
            crate::storage::open_with_staging(s, &cfg.replica.state_dir)
                .map_err(|e| DaemonError::config(file, e))?,
        ))),
        None => {
            warn!("no [storage] section: replicating only, no snapshots");
            Ok(None)
        }
    }
}

/// Take `[replica] state_dir`'s checkpoint directory: created 0700, locked for this
/// process (a second daemon on the same state dir refuses here), leftovers removed.
pub fn open_checkpoints(cfg: &Config, file: &str) -> Result<CheckpointDir, DaemonError> {
    CheckpointDir::open(&cfg.replica.state_dir).map_err(|source| DaemonError::StateDir {
        file: file.to_string(),
        source,
    })
}

/// Claim `storage` when there is one (one writer per storage: a second daemon refuses
/// here, naming the holder) and clean it, then load into `replica` the newer of the
/// shutdown checkpoint and the newest usable stored snapshot (warm restart). A checkpoint
/// is used once: removed when loaded, when older than the newest stored snapshot, or
/// when it fails to verify. `address` is the configured master's, for a warning when the
/// data came from another.
pub fn claim_and_restore(
    storage: Option<&dyn Storage>,
    checkpoints: &CheckpointDir,
    replica: &mut Replica,
    address: &str,
) -> Result<(), DaemonError> {
    let mut stored = Vec::new();
    if let Some(storage) = storage {
        storage.claim().map_err(|source| DaemonError::Claim {
            location: storage.describe(),
            source,
        })?;
        let cleanup = |source| DaemonError::Cleanup {
            location: storage.describe(),
            source,
        };
        warm::cleanup(storage).map_err(cleanup)?;
        stored = warm::list(storage).map_err(cleanup)?;
    }
    if let Some(meta) = checkpoints.find() {
        let path = checkpoints.path().display().to_string();
        if checkpoint::prefer(&meta, stored.first()) {
            let started = Instant::now();
            match checkpoints.load(&meta) {
                Ok((preload, keys)) => {
                    info!(
                        path = %path, replid = %meta.source.replid, offset = meta.source.offset,
                        keys, seconds = started.elapsed().as_secs_f64(),
                        "warm restart: loaded the shutdown checkpoint"
                    );
                    // Used once: from here the replica moves on from it.
                    checkpoints.remove("the checkpoint just loaded");
                    warn_other_address("checkpoint", &meta.source.address, address);
                    replica.preload(preload);
                    return Ok(());
                }
                Err(e) => {
                    warn!(
                        path = %path, error = %e,
                        "checkpoint unusable: ignored and removed; trying the stored snapshots"
                    );
                    checkpoints.remove("an unusable checkpoint");
                }
            }
        } else {
            info!(
                path = %path, offset = meta.source.offset,
                newest = %stored.first().map(|m| m.id.to_string()).unwrap_or_default(),
                "checkpoint older than the newest stored snapshot"
            );
            checkpoints.remove("a checkpoint older than the newest stored snapshot");
        }
    }
    if let Some(r) = storage.and_then(|s| warm::restore_newest(s, &stored)) {
        warn_other_address(r.id.as_str(), &r.source_address, address);
        info!(id = %r.id, "resuming from the stored snapshot");
        replica.preload(r.preload);
    }
    Ok(())
}

/// Not refused: a master moved to a new address keeps its replication ID, and PSYNC
/// decides (a foreign ID just means a full sync).
fn warn_other_address(what: &str, from: &str, configured: &str) {
    // Through Sentinel there is no configured address to compare with.
    if !configured.is_empty() && from != configured {
        warn!(
            data = %what, source = %from, configured = %configured,
            "the data came from another address; the master decides whether it continues"
        );
    }
}

/// The replica, not started yet: settings and the command size cap from the config.
pub fn replica(
    cfg: &Config,
    settings: Settings,
    sentinel: Option<SentinelSettings>,
) -> (Replica, ReplicaHandle) {
    let (mut replica, handle) = Replica::new(settings);
    replica.set_limits(Limits {
        max_command_bytes: cfg.replica.max_command_bytes,
        ..Limits::default()
    });
    replica.set_master_timeout(cfg.source.timeout());
    if let Some(s) = sentinel {
        replica.set_sentinel(s);
    }
    replica.set_dual_channel(cfg.source.dual_channel.unwrap_or(true));
    replica.set_psync_commands(cfg.source.psync_commands.clone());
    let mb = cfg
        .source
        .dual_channel_memory_mb
        .unwrap_or(crate::config::DEFAULT_DUAL_CHANNEL_MEMORY_MB);
    replica.set_dual_channel_spool(cfg.replica.state_dir.clone(), (mb as usize) << 20);
    if let Some(address) = &cfg.source.full_sync_from {
        use crate::replication::handoff::{Fallback, FullSyncFrom};
        let fallback = match cfg.source.full_sync_fallback.unwrap_or_default() {
            crate::config::FullSyncFallback::Never => Fallback::Never,
            crate::config::FullSyncFallback::Primary => Fallback::Primary,
        };
        replica.set_full_sync_from(FullSyncFrom {
            address: address.clone(),
            fallback,
        });
    }
    (replica, handle)
}
