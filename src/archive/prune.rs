//! Retention of the stream archive: the segments no kept snapshot can ever replay from.
//!
//! Owns the rule of SPEC §6 (retention): a point is restorable from a snapshot of its
//! history at or before it, so a segment that ends at or before the oldest kept snapshot
//! of its history serves no point; a history with no kept snapshot serves none at all.
//! It must never delete a segment a kept snapshot's points need (one that ends after the
//! oldest kept snapshot of its history), never a segment of the newest history that has
//! no snapshot yet (its first one may be on its way), and nothing when the snapshot
//! listing had unusable manifests (such a snapshot may belong to any history).

use tracing::{info, warn};

use super::segment::parse_key;
use crate::storage::{Manifest, Storage, StorageError};

/// Whether snapshot `m` belongs to archive history `history`: its manifest says so, or
/// (a manifest from before the field) its replication id started the history and its
/// offset lies after the start.
pub fn snapshot_in_history(m: &Manifest, history: &str) -> bool {
    match &m.source.history {
        Some(h) => h == history,
        None => history
            .rsplit_once('-')
            .and_then(|(id, start)| Some((id, start.parse::<u64>().ok()?)))
            .is_some_and(|(id, start)| id == m.source.replid && m.source.offset >= start),
    }
}

/// What one pass condemned (and, unless a dry run, deleted).
#[derive(Debug, Default, Clone)]
pub struct Pruned {
    /// Keys condemned, oldest first.
    pub keys: Vec<String>,
    pub bytes: u64,
    /// Keys whose delete failed, with the error.
    pub failed: Vec<(String, String)>,
}

/// Delete the segments `kept` snapshots do not need. `complete`: the snapshot listing had
/// no unusable manifest (otherwise nothing is deleted).
pub fn prune(
    storage: &dyn Storage,
    kept: &[Manifest],
    complete: bool,
    dry_run: bool,
) -> Result<Pruned, StorageError> {
    let mut out = Pruned::default();
    if !complete {
        warn!("archive retention skipped: a snapshot's manifest is unusable and may belong to any history");
        return Ok(out);
    }
    let listing = super::list(storage)?;
    let newest = listing.histories.last().map(|h| h.name.clone());
    for h in &listing.histories {
        let oldest_kept = kept
            .iter()
            .filter(|m| snapshot_in_history(m, &h.name))
            .map(|m| m.source.offset as i64)
            .min();
        let cutoff = match oldest_kept {
            Some(o) => o,
            None if Some(&h.name) == newest.as_ref() => continue,
            None => i64::MAX,
        };
        for key in &h.keys {
            let Some(k) = parse_key(key) else { continue };
            if k.end <= cutoff {
                out.keys.push(key.clone());
            }
        }
    }
    let sizes: std::collections::HashMap<String, u64> = storage
        .list_objects("archive/")?
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect();
    out.bytes = out.keys.iter().filter_map(|k| sizes.get(k)).sum();
    if !out.keys.is_empty() {
        info!(
            segments = out.keys.len(),
            bytes = out.bytes,
            dry_run,
            "archive retention: segments before the oldest kept snapshot of their history"
        );
    }
    if dry_run {
        return Ok(out);
    }
    for key in &out.keys {
        if let Err(e) = storage.delete_object(key) {
            warn!(key = %key, error = %e, "archive retention: delete failed");
            out.failed.push((key.clone(), e.to_string()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::segment::object_key;
    use crate::storage::LocalStorage;

    fn snap(history: &str, offset: u64) -> Manifest {
        let mut m = crate::storage::manifest::tests::sample();
        m.source.offset = offset;
        m.source.history = Some(history.into());
        m
    }

    #[test]
    fn segments_before_the_oldest_kept_snapshot_of_their_history_go() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path());
        let (a, b, c) = ("a-0", "b-0", "c-0");
        let mut t = 100;
        for (h, ranges) in [
            (a, &[(0, 100), (100, 200), (200, 300), (300, 400)][..]),
            (b, &[(0, 50)][..]),
            (c, &[(0, 10), (10, 20)][..]),
        ] {
            for (x, y) in ranges {
                t += 1;
                s.put_object(&object_key(h, *x, *y, t * 1000, t * 1000), b"seg")
                    .unwrap();
            }
        }
        let all = |s: &LocalStorage| {
            crate::archive::list(s)
                .unwrap()
                .histories
                .iter()
                .map(|h| (h.name.clone(), h.first_offset, h.segments))
                .collect::<Vec<_>>()
        };
        // Snapshots of `a` at 150 and 300: only the segment ending at 100 serves nothing.
        // `b` has no kept snapshot and is not the newest history: all of it goes. `c` is
        // the newest, its first snapshot may be on its way: kept.
        let kept = [snap(a, 300), snap(a, 150)];
        let dry = prune(&s, &kept, true, true).unwrap();
        assert_eq!(dry.keys.len(), 2, "{dry:?}");
        assert_eq!(dry.bytes, 6);
        assert_eq!(all(&s).len(), 3, "a dry run deletes nothing");
        assert!(prune(&s, &kept, false, false).unwrap().keys.is_empty());
        let done = prune(&s, &kept, true, false).unwrap();
        assert!(done.failed.is_empty());
        assert_eq!(
            all(&s),
            vec![("a-0".to_string(), 100, 3), ("c-0".to_string(), 0, 2)]
        );
        // The segment holding the oldest snapshot's offset stays (150 is inside 100..200),
        // and a snapshot at a segment's end needs nothing before it.
        let kept = [snap(a, 300)];
        prune(&s, &kept, true, false).unwrap();
        assert_eq!(all(&s)[0], ("a-0".to_string(), 300, 1));
    }

    #[test]
    fn old_manifests_belong_by_replid_and_offset() {
        let mut m = crate::storage::manifest::tests::sample();
        m.source.replid = "r".into();
        m.source.offset = 50;
        assert!(snapshot_in_history(&m, "r-00000000000000000010"));
        assert!(!snapshot_in_history(&m, "r-00000000000000000060"));
        assert!(!snapshot_in_history(&m, "q-00000000000000000010"));
        m.source.history = Some("q-00000000000000000010".into());
        assert!(snapshot_in_history(&m, "q-00000000000000000010"));
    }
}
