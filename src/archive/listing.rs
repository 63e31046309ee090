//! The stored archive as `list --archive` shows it: histories, their ranges, and every
//! gap, from the object listing alone (segment names carry offsets and times).
//!
//! Owns grouping and gap detection. It must never hide a gap: a missing offset range
//! inside a history and the change from one history to the next are both reported.
//! Keys that are not segment names are counted as unknown, not skipped in silence.

use serde::Serialize;

use super::segment::{parse_key, KeyInfo};
use crate::storage::{Storage, StorageError};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Gap {
    /// The history the gap is in, or the history that ended (between two histories).
    pub history: String,
    /// The offset range missing ([from, to)); between histories, the old history's end
    /// and the new one's start (offsets of different replication histories).
    pub from: i64,
    pub to: i64,
    /// The new history, when the gap is between two.
    pub next_history: Option<String>,
    /// Unix seconds of the last byte before and the first byte after.
    pub from_time: i64,
    pub to_time: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct History {
    pub name: String,
    pub first_offset: i64,
    pub end_offset: i64,
    pub first_time: i64,
    pub last_time: i64,
    pub segments: u64,
    pub bytes: u64,
    /// Keys of the segments, in offset order.
    #[serde(skip)]
    pub keys: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct ArchiveListing {
    /// Oldest first (by first segment time).
    pub histories: Vec<History>,
    pub gaps: Vec<Gap>,
    /// Keys under `archive/` that are not segments (temporaries of other tools…).
    pub unknown: Vec<String>,
}

pub fn list(storage: &dyn Storage) -> Result<ArchiveListing, StorageError> {
    let objects = storage.list_objects("archive/")?;
    let mut out = ArchiveListing::default();
    let mut segs: Vec<(KeyInfo, String, u64)> = Vec::new();
    for o in objects {
        match parse_key(&o.key) {
            Some(k) => segs.push((k, o.key, o.size)),
            None => out.unknown.push(o.key),
        }
    }
    segs.sort_by(|a, b| {
        (&a.0.history, a.0.first, a.0.end).cmp(&(&b.0.history, b.0.first, b.0.end))
    });
    let mut histories: Vec<History> = Vec::new();
    for (k, key, size) in segs {
        match histories.last_mut().filter(|h| h.name == k.history) {
            Some(h) => {
                if k.first > h.end_offset {
                    out.gaps.push(Gap {
                        history: h.name.clone(),
                        from: h.end_offset,
                        to: k.first,
                        next_history: None,
                        from_time: h.last_time,
                        to_time: k.t0,
                    });
                }
                h.end_offset = h.end_offset.max(k.end);
                h.last_time = h.last_time.max(k.t1);
                h.first_time = h.first_time.min(k.t0);
                h.segments += 1;
                h.bytes += size;
                h.keys.push(key);
            }
            None => histories.push(History {
                name: k.history,
                first_offset: k.first,
                end_offset: k.end,
                first_time: k.t0,
                last_time: k.t1,
                segments: 1,
                bytes: size,
                keys: vec![key],
            }),
        }
    }
    histories.sort_by_key(|h| (h.first_time, h.name.clone()));
    for w in histories.windows(2) {
        out.gaps.push(Gap {
            history: w[0].name.clone(),
            from: w[0].end_offset,
            to: w[1].first_offset,
            next_history: Some(w[1].name.clone()),
            from_time: w[0].last_time,
            to_time: w[1].first_time,
        });
    }
    out.histories = histories;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::segment::object_key;
    use crate::storage::LocalStorage;

    #[test]
    fn holes_and_history_changes_are_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path());
        for (h, a, b, t) in [
            ("a-1", 1, 10, 100),
            ("a-1", 10, 20, 110),
            ("a-1", 25, 30, 120),
            ("b-5", 5, 9, 130),
        ] {
            s.put_object(&object_key(h, a, b, t * 1000, t * 1000 + 5), b"x")
                .unwrap();
        }
        s.put_object("archive/a-1/junk", b"x").unwrap();
        let l = list(&s).unwrap();
        assert_eq!(l.histories.len(), 2);
        assert_eq!(
            (
                l.histories[0].first_offset,
                l.histories[0].end_offset,
                l.histories[0].segments
            ),
            (1, 30, 3)
        );
        assert_eq!(l.gaps.len(), 2);
        assert_eq!(
            (
                l.gaps[0].from,
                l.gaps[0].to,
                l.gaps[0].next_history.is_none()
            ),
            (20, 25, true)
        );
        assert_eq!(l.gaps[1].next_history.as_deref(), Some("b-5"));
        assert_eq!(l.unknown, vec!["archive/a-1/junk".to_string()]);
    }
}
