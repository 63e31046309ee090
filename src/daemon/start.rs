//! Everything the daemon does before the replica attaches: the config checks that can only
//! be made here (the snapshot and verify cron expressions and time zones, the retention
//! policy, the storage backend),
//! taking the storage as its only writer, cleaning it, and the warm restart (the newest
//! verified snapshot becomes the replica's preload, so its first attach is a PSYNC).
//!
//! Owns the order "refuse, then claim, then clean, then load": whatever can be refused is
//! refused before storage is claimed or the master is contacted. It must never start a
//! thread, never contact the master, and never modify storage before [`Storage::claim`]
//! succeeded.

use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use tracing::{info, warn};

use super::error::DaemonError;
use crate::config::Config;
use crate::replication::tls::TlsSettings;
use crate::replication::{Replica, ReplicaHandle, Settings};
use crate::resp::Limits;
use crate::retention::Policy;
use crate::snapshot::{schedule, warm};
use crate::storage::Storage;

/// What the daemon starts from: a replica ready to run (preloaded or not), the storage it
/// alone writes to, and the checked policies.
pub struct Prepared {
    pub replica: Replica,
    pub handle: ReplicaHandle,
    pub storage: Option<Arc<dyn Storage>>,
    pub retention: Option<Policy>,
    /// `[verify] schedule` and the zone it is read in, when set.
    pub verify: Option<(String, Tz)>,
}

/// The replica's settings from the config.
pub fn replica_settings(cfg: &Config) -> Result<Settings, DaemonError> {
    Ok(Settings {
        address: cfg.source.address.clone(),
        username: cfg.source.username.clone(),
        password: cfg.source_password()?,
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
    })
}

/// Check what only the daemon checks, claim and clean storage, load the newest usable
/// snapshot, and build the replica. `file` names the config file in errors.
pub fn prepare(cfg: &Config, file: &str) -> Result<Prepared, DaemonError> {
    let settings = replica_settings(cfg)?;
    // Everything that can be refused is refused before attaching to the master.
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
    let storage: Option<Arc<dyn Storage>> = match &cfg.storage {
        Some(s) => Some(Arc::from(
            crate::storage::open(s).map_err(|e| DaemonError::config(file, e))?,
        )),
        None => {
            warn!("no [storage] section: replicating only, no snapshots");
            None
        }
    };
    info!(address = %settings.address, version = env!("CARGO_PKG_VERSION"), "replisnap starting");

    // One writer per storage: a second daemon refuses here, naming the holder.
    if let Some(s) = &storage {
        s.claim().map_err(|source| DaemonError::Claim {
            location: s.describe(),
            source,
        })?;
    }
    let restored = match &storage {
        Some(s) => {
            warm::cleanup_and_restore(s.as_ref()).map_err(|source| DaemonError::Cleanup {
                location: s.describe(),
                source,
            })?
        }
        None => None,
    };
    let (mut replica, handle) = match restored {
        Some(r) => {
            if r.source_address != settings.address {
                // Not refused: a master moved to a new address keeps its replication ID,
                // and PSYNC decides (a foreign ID just means a full sync).
                warn!(
                    id = %r.id, snapshot_source = %r.source_address, configured = %settings.address,
                    "the stored snapshot came from another address; the master decides whether it continues"
                );
            }
            info!(id = %r.id, "resuming from the stored snapshot");
            Replica::with_preload(settings, r.preload)
        }
        None => Replica::new(settings),
    };
    replica.set_limits(Limits {
        max_command_bytes: cfg.replica.max_command_bytes,
        ..Limits::default()
    });
    Ok(Prepared {
        replica,
        handle,
        storage,
        retention,
        verify,
    })
}
