//! Snapshot sets of a cluster (`[source] cluster = true`): one tick's snapshots of every
//! shard, named by one manifest at `sets/<id>/manifest.json` beside the shards' own
//! snapshots (`shards/<shard>/<id>/…`, each an ordinary snapshot with its own manifest).
//!
//! Owns the set manifest's fields, its key, and reading sets back as hostile input. A set
//! manifest is written once, after every shard's snapshot of the tick has its own manifest
//! (or failed): it never names a snapshot that is not stored, it is never overwritten
//! (`put_object` refuses an existing key), and a set is `complete` only when every slot
//! of the cluster is in a stored snapshot. It must never delete anything.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::id::SnapshotId;
use super::{Storage, StorageError, MANIFEST_LIMIT};

/// The folder the shards' storages live under (`<prefix>shards/<name>/`).
pub const SHARDS_DIR: &str = "shards";
/// The folder of the set manifests (`<prefix>sets/<id>/manifest.json`).
pub const SETS_DIR: &str = "sets";

/// One set: what a tick stored for each shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetManifest {
    pub id: SnapshotId,
    /// RFC 3339, UTC: when the tick asked for the snapshots.
    pub created_at: DateTime<Utc>,
    /// Every slot of the cluster is in a stored snapshot of this set.
    pub complete: bool,
    /// Slots no shard owned when the set was taken (inclusive ranges).
    #[serde(default)]
    pub missing_slots: Vec<(u16, u16)>,
    pub shards: Vec<SetShard>,
    pub replisnap_version: String,
}

/// One shard's part of a set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetShard {
    /// The shard's storage name (its slot ranges, "0-5460").
    pub shard: String,
    /// The slots the shard owned at discovery (inclusive ranges).
    pub slots: Vec<(u16, u16)>,
    /// The primary the snapshot's data came from.
    pub primary: String,
    /// Where the shard's snapshots live, relative to the storage's root or prefix.
    pub prefix: String,
    /// The shard's snapshot, when stored.
    pub snapshot: Option<SnapshotId>,
    #[serde(default)]
    pub replid: String,
    #[serde(default)]
    pub offset: u64,
    #[serde(default)]
    pub digest: String,
    #[serde(default)]
    pub keys_total: u64,
    #[serde(default)]
    pub bytes: u64,
    /// Why the shard has no snapshot in this set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The key of a set's manifest.
pub fn manifest_key(id: &SnapshotId) -> String {
    format!("{SETS_DIR}/{id}/manifest.json")
}

/// The prefix of a shard's storage, relative to the root (`shards/0-5460/`).
pub fn shard_prefix(shard: &str) -> String {
    format!("{SHARDS_DIR}/{shard}/")
}

/// The storage settings of one shard's snapshots: `[storage]` one level down
/// (`<path>/shards/<name>/`, or `<prefix>shards/<name>/` on S3).
pub fn shard_storage(cfg: &crate::config::Storage, shard: &str) -> crate::config::Storage {
    use crate::config::StorageKind;
    let mut c = cfg.clone();
    match c.kind {
        StorageKind::Local => c.path = c.path.as_ref().map(|p| p.join(shard_prefix(shard))),
        StorageKind::S3 => c.prefix = format!("{}{}", c.prefix, shard_prefix(shard)),
    }
    c
}

/// Whether `name` can be a shard's folder name: slot ranges ("0-5460", "0-10_20-30").
pub fn valid_shard_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name.split('_').all(|r| {
            let mut it = r.splitn(2, '-');
            let ok = |p: Option<&str>| p.is_some_and(|p| p.parse::<u16>().is_ok_and(|n| n < 16384));
            ok(it.next()) && ok(it.next())
        })
}

/// Store `set` (never overwriting one).
pub fn put(storage: &dyn Storage, set: &SetManifest) -> Result<(), StorageError> {
    let body = serde_json::to_vec_pretty(set).map_err(|e| StorageError::Manifest {
        path: manifest_key(&set.id),
        reason: e.to_string(),
    })?;
    storage.put_object(&manifest_key(&set.id), &body)
}

/// Read one set's manifest; `Ok(None)` when there is none.
pub fn get(storage: &dyn Storage, id: &SnapshotId) -> Result<Option<SetManifest>, StorageError> {
    let key = manifest_key(id);
    let Some(body) = storage.get_object(&key, MANIFEST_LIMIT)? else {
        return Ok(None);
    };
    parse(&key, &body).map(Some)
}

/// A set manifest from its bytes, checked: every shard name is a slot-range name and
/// every slot range is in bounds (they become paths and routes).
pub fn parse(key: &str, body: &[u8]) -> Result<SetManifest, StorageError> {
    let bad = |reason: String| StorageError::Manifest {
        path: key.to_string(),
        reason,
    };
    let set: SetManifest = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    for s in &set.shards {
        if !valid_shard_name(&s.shard) {
            return Err(bad(format!("shard {:?} is not a slot-range name", s.shard)));
        }
        if s.prefix != shard_prefix(&s.shard) {
            return Err(bad(format!("shard {}: prefix {:?}", s.shard, s.prefix)));
        }
        if let Some((a, b)) = s.slots.iter().find(|(a, b)| a > b || *b >= 16384) {
            return Err(bad(format!("shard {}: slot range {a}-{b}", s.shard)));
        }
    }
    Ok(set)
}

/// Keys that could not be read as a set, with why.
pub type Unreadable = Vec<(String, StorageError)>;
/// Sets deleted, and those whose deletion failed.
pub type Pruned = (Vec<SnapshotId>, Vec<(SnapshotId, StorageError)>);

/// Every set in `storage`, newest first, and the keys that could not be read as one.
pub fn list(storage: &dyn Storage) -> Result<(Vec<SetManifest>, Unreadable), StorageError> {
    let mut sets = Vec::new();
    let mut problems = Vec::new();
    for o in storage.list_objects(&format!("{SETS_DIR}/"))? {
        let Some(id) = o
            .key
            .strip_prefix(&format!("{SETS_DIR}/"))
            .and_then(|k| k.strip_suffix("/manifest.json"))
        else {
            continue;
        };
        let Ok(id) = SnapshotId::parse(id) else {
            continue;
        };
        match get(storage, &id) {
            Ok(Some(s)) => sets.push(s),
            Ok(None) => {}
            Err(e) => problems.push((o.key.clone(), e)),
        }
    }
    sets.sort_by(|a, b| b.id.as_str().cmp(a.id.as_str()));
    Ok((sets, problems))
}

/// Delete the set manifests that name a shard snapshot retention has since deleted (a
/// set is only as good as all its files). `exists(shard, id)` says whether a shard's
/// snapshot is still stored (an error counts as "still there": nothing is deleted on a
/// doubt). The newest set is never deleted. Returns the deleted sets' ids and the
/// failures.
pub fn prune(
    root: &dyn Storage,
    mut exists: impl FnMut(&str, &SnapshotId) -> bool,
) -> Result<Pruned, StorageError> {
    let (sets, _) = list(root)?;
    let mut deleted = Vec::new();
    let mut failed = Vec::new();
    for s in sets.iter().skip(1) {
        let gone = s
            .shards
            .iter()
            .any(|x| x.snapshot.as_ref().is_some_and(|id| !exists(&x.shard, id)));
        if gone {
            match root.delete_object(&manifest_key(&s.id)) {
                Ok(()) => deleted.push(s.id.clone()),
                Err(e) => failed.push((s.id.clone(), e)),
            }
        }
    }
    Ok((deleted, failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_are_slot_ranges_only() {
        for ok in ["0-5460", "0-10_20-30", "16383-16383"] {
            assert!(valid_shard_name(ok), "{ok}");
        }
        for bad in ["", "..", "0-16384", "a-b", "0-1/../x", "0", "0-1_", "-1-2"] {
            assert!(!valid_shard_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_set_names_its_shards_by_slots_and_reads_back() {
        let id = SnapshotId::parse("20261204T181500Z").unwrap();
        let set = SetManifest {
            id: id.clone(),
            created_at: Utc::now(),
            complete: true,
            missing_slots: vec![],
            shards: vec![SetShard {
                shard: "0-5460".into(),
                slots: vec![(0, 5460)],
                primary: "127.0.0.1:7000".into(),
                prefix: shard_prefix("0-5460"),
                snapshot: Some(id.clone()),
                replid: "a".repeat(40),
                offset: 10,
                digest: "0".repeat(40),
                keys_total: 3,
                bytes: 100,
                error: None,
            }],
            replisnap_version: "x".into(),
        };
        let body = serde_json::to_vec(&set).unwrap();
        assert_eq!(parse(&manifest_key(&id), &body).unwrap(), set);
        let mut evil = set.clone();
        evil.shards[0].shard = "../x".into();
        let body = serde_json::to_vec(&evil).unwrap();
        let e = parse("k", &body).unwrap_err().to_string();
        assert!(e.contains("not a slot-range name"), "{e}");
        let mut evil = set;
        evil.shards[0].slots = vec![(5, 16384)];
        let body = serde_json::to_vec(&evil).unwrap();
        assert!(parse("k", &body).is_err());
        assert!(parse("k", b"{").is_err());
    }
}
