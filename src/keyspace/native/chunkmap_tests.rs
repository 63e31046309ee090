//! Tests of [`super`]: a model map, splits, releasing walks, snapshots read on another
//! thread while the live map changes, deep copies.
use super::*;

#[derive(Clone, Debug, PartialEq)]
struct It(Vec<u8>, u32);
impl MapItem for It {
    fn key(&self) -> &[u8] {
        &self.0
    }
}

#[test]
fn matches_a_std_map_through_splits_and_removals() {
    let mut m = ChunkMap::new();
    let mut model = std::collections::HashMap::new();
    let mut x = 0x9e37_79b9_u64;
    for i in 0..60_000u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let k = (x % 20_000).to_string().into_bytes();
        if i % 3 == 2 {
            assert_eq!(m.remove_with(&k, |t: &It| t.1), model.remove(&k));
        } else {
            assert_eq!(m.insert_with(It(k.clone(), i), |t| t.1), model.insert(k, i));
        }
        assert_eq!(m.len(), model.len());
    }
    for (k, v) in &model {
        assert_eq!(m.get(k).map(|t| t.1), Some(*v));
    }
    assert_eq!(m.iter().count(), model.len());
    assert!(m.chunks.len() > 4, "it split");
    for (c, chunk) in m.chunks.iter().enumerate() {
        for t in chunk.table.iter() {
            assert_eq!(m.dir[slot(hash_bytes(&t.0), m.depth)] as usize, c);
        }
    }
}

#[test]
fn a_presized_map_behaves_as_a_grown_one() {
    let mut m = ChunkMap::with_capacity(50_000);
    for i in 0..60_000u32 {
        m.insert(It(i.to_le_bytes().to_vec(), i));
    }
    assert_eq!(m.len(), 60_000);
    for i in (0..60_000u32).step_by(7) {
        assert_eq!(m.get(&i.to_le_bytes()).map(|t| t.1), Some(i));
        assert_eq!(m.remove_with(&i.to_le_bytes(), |t| t.1), Some(i));
    }
    for (c, chunk) in m.chunks.iter().enumerate() {
        for t in chunk.table.iter() {
            assert_eq!(m.dir[slot(hash_bytes(&t.0), m.depth)] as usize, c);
        }
    }
}

#[test]
fn a_releasing_visit_lets_go_of_each_chunk_once_seen() {
    let mut live = ChunkMap::new();
    for i in 0..30_000u32 {
        live.insert(It(i.to_be_bytes().to_vec(), i));
    }
    let chunks = live.chunks.len();
    assert!(chunks > 8, "several chunks");
    assert_eq!(live.shared_chunks(), 0);
    let view = live.clone();
    assert_eq!(live.shared_chunks(), chunks, "every chunk is shared");
    let want: Vec<u32> = view.iter().map(|t| t.1).collect();
    let mut seen = Vec::new();
    let mut shared_when_seen = Vec::new();
    view.visit_releasing::<()>(|t| {
        seen.push(t.1);
        shared_when_seen.push(live.shared_chunks());
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, want, "the same items in the same order");
    // Chunk by chunk, fewer and fewer of the live map's chunks are shared.
    assert!(shared_when_seen.windows(2).all(|w| w[1] <= w[0]));
    assert_eq!(shared_when_seen[0], chunks);
    assert!(*shared_when_seen.last().unwrap() <= 1);
    assert_eq!(live.shared_chunks(), 0, "a write now copies nothing");
    // An error stops the walk and lets go of the rest too.
    let view = live.clone();
    assert_eq!(
        view.visit_releasing(|t| if t.1 == want[10] { Err(t.1) } else { Ok(()) }),
        Err(want[10])
    );
    assert_eq!(live.shared_chunks(), 0);
}

#[test]
fn a_clone_is_unchanged_by_later_writes_and_shares_untouched_chunks() {
    let mut m = ChunkMap::new();
    for i in 0..20_000u32 {
        m.insert(It(i.to_be_bytes().to_vec(), i));
    }
    let snap = m.clone();
    m.insert(It(5u32.to_be_bytes().to_vec(), 99));
    m.remove(&7u32.to_be_bytes());
    assert_eq!(snap.get(&5u32.to_be_bytes()).map(|t| t.1), Some(5));
    assert!(snap.contains(&7u32.to_be_bytes()));
    assert_eq!(m.get(&5u32.to_be_bytes()).map(|t| t.1), Some(99));
    let shared = m
        .chunks
        .iter()
        .zip(snap.chunks.iter())
        .filter(|(a, b)| std::ptr::eq(*a, *b))
        .count();
    assert!(shared + 2 >= m.chunks.len(), "at most two chunks copied");
    let segs = m
        .chunks
        .segs
        .iter()
        .zip(&snap.chunks.segs)
        .filter(|(a, b)| Arc::ptr_eq(a, b))
        .count();
    assert!(
        segs + 2 >= m.chunks.segs.len(),
        "at most two segments copied"
    );
}

/// Counts live items: an item freed twice, or freed while a snapshot reads it, shows as
/// a wrong count or wrong bytes.
struct Tr(Vec<u8>, &'static std::sync::atomic::AtomicUsize);
impl Tr {
    fn new(k: Vec<u8>, live: &'static std::sync::atomic::AtomicUsize) -> Tr {
        live.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Tr(k, live)
    }
}
impl Clone for Tr {
    fn clone(&self) -> Tr {
        Tr::new(self.0.clone(), self.1)
    }
}
impl Drop for Tr {
    fn drop(&mut self) {
        self.1.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}
impl MapItem for Tr {
    fn key(&self) -> &[u8] {
        &self.0
    }
}

#[test]
fn a_snapshot_walked_on_another_thread_reads_its_items_while_the_live_map_changes() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static LIVE: AtomicUsize = AtomicUsize::new(0);
    let mut live = ChunkMap::new();
    for i in 0..40_000u32 {
        live.insert(Tr::new(i.to_be_bytes().to_vec(), &LIVE));
    }
    let mut want: Vec<Vec<u8>> = live.iter().map(|t| t.0.clone()).collect();
    want.sort();
    for round in 0..3u32 {
        let snap = live.clone();
        let walker = std::thread::spawn(move || {
            let mut seen = Vec::new();
            snap.visit_releasing::<()>(|t| {
                seen.push(t.0.clone());
                if seen.len() % 64 == 0 {
                    std::thread::yield_now();
                }
                Ok(())
            })
            .unwrap();
            seen.sort();
            seen
        });
        // Replace, remove and add (with splits) while the walk goes on.
        let mut x = 0x2545_f491_4f6c_dd1d_u64 ^ u64::from(round);
        for _ in 0..60_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = ((x % 80_000) as u32).to_be_bytes().to_vec();
            match x % 3 {
                0 => {
                    live.remove(&k);
                }
                _ => {
                    live.insert(Tr::new(k, &LIVE));
                }
            }
        }
        let seen = walker.join().expect("walker");
        assert_eq!(
            seen, want,
            "round {round}: the snapshot saw the map as it was"
        );
        want = live.iter().map(|t| t.0.clone()).collect();
        want.sort();
        assert_eq!(
            LIVE.load(Ordering::SeqCst),
            live.len(),
            "round {round}: nothing leaked"
        );
    }
    // COPY's deep copy shares nothing: dropping either leaves the other whole.
    let copy = live.deep_clone();
    assert_eq!(LIVE.load(Ordering::SeqCst), 2 * live.len());
    let snap = live.clone();
    live.retain(|t| t.0[3] % 2 == 0);
    drop(copy);
    let mut seen: Vec<Vec<u8>> = snap.iter().map(|t| t.0.clone()).collect();
    seen.sort();
    assert_eq!(seen, want);
    drop(snap);
    assert_eq!(LIVE.load(Ordering::SeqCst), live.len());
    drop(live);
    assert_eq!(LIVE.load(Ordering::SeqCst), 0);
}
