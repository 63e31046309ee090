//! Proving the stored archive good (`verify --archive`): every segment read back whole.
//!
//! Owns the archive's integrity rules: each segment decodes (magic, bounded header, LZ4,
//! SHA-256 of the stream bytes), its header agrees with its name (history, first and end
//! offsets), its samples lie inside it in order, and each history's segments follow one
//! another with no missing or doubled offset. It must never call a history good without
//! reading every byte of it, and never stop at the first problem: each is reported.

use serde::Serialize;

use super::segment::{decode, parse_key, OBJECT_LIMIT};
use crate::storage::{Storage, StorageError};

#[derive(Debug, Clone, Serialize)]
pub struct HistoryCheck {
    pub name: String,
    pub segments: u64,
    /// Stored (compressed) bytes.
    pub bytes: u64,
    /// Stream bytes, decompressed and checked.
    pub stream_bytes: u64,
    pub first_offset: i64,
    pub end_offset: i64,
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct ArchiveCheck {
    pub histories: Vec<HistoryCheck>,
    /// Keys under `archive/` that are not segment names.
    pub unknown: Vec<String>,
}

impl ArchiveCheck {
    pub fn ok(&self) -> bool {
        self.histories.iter().all(|h| h.problems.is_empty())
    }
}

/// Read and check every segment `storage` holds; `progress` gets the stored bytes read.
pub fn verify(
    storage: &dyn Storage,
    mut progress: impl FnMut(u64),
) -> Result<ArchiveCheck, StorageError> {
    let listing = super::list(storage)?;
    let mut out = ArchiveCheck {
        unknown: listing.unknown.clone(),
        ..Default::default()
    };
    let mut read = 0u64;
    for h in &listing.histories {
        let mut c = HistoryCheck {
            name: h.name.clone(),
            segments: 0,
            bytes: 0,
            stream_bytes: 0,
            first_offset: h.first_offset,
            end_offset: h.end_offset,
            problems: Vec::new(),
        };
        let mut expected: Option<i64> = None;
        for key in &h.keys {
            let Some(k) = parse_key(key) else { continue };
            match expected {
                Some(e) if k.first > e => c
                    .problems
                    .push(format!("offsets {e}..{} missing (before {key})", k.first)),
                Some(e) if k.first < e => c
                    .problems
                    .push(format!("offsets {}..{e} stored twice ({key})", k.first)),
                _ => {}
            }
            expected = Some(k.end.max(expected.unwrap_or(k.end)));
            c.segments += 1;
            let data = match storage.get_object(key, OBJECT_LIMIT) {
                Ok(Some(d)) => d,
                Ok(None) => {
                    c.problems.push(format!("{key}: listed but gone"));
                    continue;
                }
                Err(e) => {
                    c.problems.push(format!("{key}: {e}"));
                    continue;
                }
            };
            c.bytes += data.len() as u64;
            read += data.len() as u64;
            progress(read);
            let seg = match decode(&data, key) {
                Ok(s) => s,
                Err(e) => {
                    c.problems.push(e.to_string());
                    continue;
                }
            };
            let hd = &seg.header;
            c.stream_bytes += seg.bytes.len() as u64;
            if hd.history != k.history || hd.first_offset != k.first || hd.end_offset != k.end {
                c.problems.push(format!(
                    "{key}: header says history {} offsets {}..{}",
                    hd.history, hd.first_offset, hd.end_offset
                ));
            }
            let inside = hd
                .samples
                .iter()
                .all(|(_, o)| *o >= hd.first_offset && *o < hd.end_offset.max(hd.first_offset + 1));
            let ordered = hd.samples.windows(2).all(|w| w[0].1 < w[1].1);
            if hd.samples.is_empty() || !inside || !ordered || hd.sample_ms <= 0 {
                c.problems.push(format!(
                    "{key}: time samples out of order or outside the segment"
                ));
            }
        }
        out.histories.push(c);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::segment::{encode, object_key};
    use crate::storage::LocalStorage;

    #[test]
    fn every_kind_of_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path());
        let h = "r-00000000000000000000";
        let cmd = b"*1\r\n$4\r\nPING\r\n";
        let put = |first: i64, n: usize| {
            let bytes = cmd.repeat(n);
            let end = first + bytes.len() as i64;
            let key = object_key(h, first, end, 1000, 2000);
            s.put_object(&key, &encode(h, first, vec![(1000, first)], &bytes))
                .unwrap();
            (key, end)
        };
        let (_, e1) = put(0, 2);
        let (_, e2) = put(e1, 3);
        let good = verify(&s, |_| {}).unwrap();
        assert!(good.ok(), "{good:?}");
        assert_eq!(good.histories[0].stream_bytes, 5 * cmd.len() as u64);
        // A missing range, a damaged body, a header that disagrees with its name.
        let (k3, _) = put(e2 + 14, 1);
        let mut data = s.get_object(&k3, 1 << 20).unwrap().unwrap();
        let n = data.len();
        data[n - 2] ^= 1;
        s.delete_object(&k3).unwrap();
        s.put_object(&k3, &data).unwrap();
        let liar = object_key(h, 1000, 1014, 3000, 3000);
        s.put_object(&liar, &encode(h, 999, vec![(3000, 999)], cmd))
            .unwrap();
        let bad = verify(&s, |_| {}).unwrap();
        assert!(!bad.ok());
        let p = &bad.histories[0].problems;
        assert!(p.iter().any(|x| x.contains("missing")), "{p:?}");
        assert!(p.iter().any(|x| x.contains(&k3)), "{p:?}");
        assert!(p.iter().any(|x| x.contains("header says")), "{p:?}");
    }
}
