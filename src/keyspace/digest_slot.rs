//! A key's hashed `DEBUG DIGEST` contribution, remembered beside its immutable value so
//! the next snapshot of an unchanged key xors 20 remembered bytes instead of rehashing it.
//!
//! Owns the slot's protocol: it starts empty, the first digest to finish a key fills it
//! once (under the tag of the digest rules it was computed with), and it is never
//! written again: a reader that sees its tag sees the words written before it. A value
//! is immutable once built, so a filled slot stays true for as long as the value lives.
//! It must never hand out a digest under a tag other than the one it was filled with.
//!
//! A leaf: atomics only, nothing of digests or keys.

use std::sync::atomic::{AtomicU32, Ordering};

/// Nothing remembered yet.
const EMPTY: u32 = 0;
/// A writer is filling the words.
const BUSY: u32 = 1;

/// The first tag a caller may use (0 and 1 are the slot's own states).
pub const FIRST_TAG: u32 = 2;

#[derive(Debug, Default)]
pub struct DigestSlot {
    tag: AtomicU32,
    words: [AtomicU32; 5],
}

impl DigestSlot {
    /// What was remembered under `tag`, if anything was.
    pub fn get(&self, tag: u32) -> Option<[u8; 20]> {
        if tag < FIRST_TAG || self.tag.load(Ordering::Acquire) != tag {
            return None;
        }
        let mut out = [0u8; 20];
        for (o, w) in out.chunks_exact_mut(4).zip(&self.words) {
            o.copy_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes());
        }
        Some(out)
    }

    /// Remember `hashed` under `tag`, unless something is remembered (or being) already.
    pub fn set(&self, tag: u32, hashed: &[u8; 20]) {
        if tag < FIRST_TAG
            || self
                .tag
                .compare_exchange(EMPTY, BUSY, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        for (w, b) in self.words.iter().zip(hashed.chunks_exact(4)) {
            w.store(
                u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
                Ordering::Relaxed,
            );
        }
        self.tag.store(tag, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_until_filled_then_only_under_its_tag() {
        let s = DigestSlot::default();
        assert_eq!(s.get(FIRST_TAG), None);
        let d: [u8; 20] = std::array::from_fn(|i| i as u8 * 7 + 1);
        s.set(FIRST_TAG + 1, &d);
        assert_eq!(s.get(FIRST_TAG + 1), Some(d));
        assert_eq!(s.get(FIRST_TAG), None);
        // Filled once: a later digest under other rules does not overwrite it.
        s.set(FIRST_TAG, &[9; 20]);
        assert_eq!(s.get(FIRST_TAG), None);
        assert_eq!(s.get(FIRST_TAG + 1), Some(d));
    }

    #[test]
    fn the_slots_own_states_are_not_tags() {
        let s = DigestSlot::default();
        s.set(BUSY, &[1; 20]);
        s.set(EMPTY, &[1; 20]);
        assert_eq!(s.get(EMPTY), None);
        assert_eq!(s.get(BUSY), None);
        s.set(FIRST_TAG, &[3; 20]);
        assert_eq!(s.get(FIRST_TAG), Some([3; 20]));
    }

    #[test]
    fn racing_writers_leave_one_whole_digest() {
        let s = std::sync::Arc::new(DigestSlot::default());
        let hs: Vec<_> = (0..4u8)
            .map(|t| {
                let s = std::sync::Arc::clone(&s);
                std::thread::spawn(move || s.set(FIRST_TAG, &[t + 1; 20]))
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let d = s.get(FIRST_TAG).expect("one writer filled it");
        assert!(
            d.iter().all(|&b| b == d[0]) && (1..=4).contains(&d[0]),
            "{d:?}"
        );
    }
}
