//! A big list as a deque of copy-on-write chunks of packed elements (quicklist-like).
//!
//! Owns the layout: each chunk holds up to [`CHUNK_BYTES`] of element bytes back to back
//! with their end offsets (one element bigger than that gets a chunk of its own); chunks
//! are grouped into branches of up to 128. Pushing and popping at either end are
//! O(chunk); indexing walks branch sizes, then one branch's chunk sizes. Cloning shares
//! every branch, so the first write to a list a snapshot still holds copies the root's
//! handles, one branch's and one chunk (a 5 M-element list: ~70 + 128 handles, not 8 500). A leaf: it knows nothing of keys or commands and never reorders elements.

use std::collections::VecDeque;
use std::sync::Arc;

pub const CHUNK_BYTES: usize = 8 * 1024;
const CHUNK_ELEMS: usize = 1024;

#[derive(Clone, Default)]
struct Chunk {
    data: Vec<u8>,
    ends: Vec<u32>,
}

impl Chunk {
    fn len(&self) -> usize {
        self.ends.len()
    }
    fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.data[start..self.ends[i] as usize]
    }
    fn room_for(&self, v: &[u8]) -> bool {
        self.ends.is_empty()
            || (self.data.len() + v.len() <= CHUNK_BYTES && self.ends.len() < CHUNK_ELEMS)
    }
    fn push_back(&mut self, v: &[u8]) {
        self.data.extend_from_slice(v);
        self.ends.push(self.data.len() as u32);
    }
    fn push_front(&mut self, v: &[u8]) {
        let n = v.len() as u32;
        self.data.splice(0..0, v.iter().copied());
        for e in &mut self.ends {
            *e += n;
        }
        self.ends.insert(0, n);
    }
    fn pop_back(&mut self) -> Option<Vec<u8>> {
        self.ends.pop()?;
        let start = self.ends.last().map_or(0, |&e| e as usize);
        Some(self.data.split_off(start))
    }
    fn pop_front(&mut self) -> Option<Vec<u8>> {
        if self.ends.is_empty() {
            return None;
        }
        let n = self.ends.remove(0);
        let v: Vec<u8> = self.data.drain(..n as usize).collect();
        for e in &mut self.ends {
            *e -= n;
        }
        Some(v)
    }
    /// Elements `i..` as a chunk of their own; `self` keeps `..i`.
    fn split_off(&mut self, i: usize) -> Chunk {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        let data = self.data.split_off(start as usize);
        let ends = self
            .ends
            .split_off(i)
            .into_iter()
            .map(|e| e - start)
            .collect();
        Chunk { data, ends }
    }
    fn set(&mut self, i: usize, v: &[u8]) {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        let end = self.ends[i] as usize;
        self.data.splice(start..end, v.iter().copied());
        let delta = v.len() as i64 - (end - start) as i64;
        for e in &mut self.ends[i..] {
            *e = (*e as i64 + delta) as u32;
        }
    }
}

impl Chunk {
    /// A chunk at a list's end, made for the pushes that follow: room for a full chunk of
    /// elements the size of `v`, so filling it does not regrow its buffers step by step.
    fn with(v: &[u8]) -> Chunk {
        let elems = (CHUNK_BYTES / v.len().max(1)).clamp(1, CHUNK_ELEMS);
        let mut c = Chunk {
            data: Vec::with_capacity(v.len().max(CHUNK_BYTES)),
            ends: Vec::with_capacity(elems),
        };
        c.push_back(v);
        c
    }

    /// Give back the room kept for pushes once the chunk is no longer at the list's end.
    /// A copy, not `shrink_to_fit`: the allocator keeps a block in place when at least half
    /// of it is used, and a full chunk's end offsets use about half of what growing gave them.
    fn seal(&mut self) {
        if self.data.capacity() > self.data.len() + self.data.len() / 16 {
            self.data = self.data.as_slice().to_vec();
        }
        if self.ends.capacity() > self.ends.len() + self.ends.len() / 16 {
            self.ends = self.ends.as_slice().to_vec();
        }
    }
}

/// Chunks per branch: a clone copies the root's branch handles, and the first write then
/// one branch's chunk handles and one chunk (small in tests, to exercise the splits).
const BRANCH_CHUNKS: usize = if cfg!(test) { 4 } else { 128 };

#[derive(Clone, Default)]
struct Branch {
    chunks: VecDeque<Arc<Chunk>>,
    /// Elements in all its chunks.
    len: usize,
}

#[derive(Clone, Default)]
pub struct ChunkList {
    branches: VecDeque<Arc<Branch>>,
    len: usize,
}

impl ChunkList {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push_back(&mut self, v: &[u8]) {
        self.len += 1;
        if let Some(b) = self.branches.back_mut() {
            let fits = b.chunks.back().is_some_and(|c| c.room_for(v));
            if fits || b.chunks.len() < BRANCH_CHUNKS {
                let b = Arc::make_mut(b);
                b.len += 1;
                match b.chunks.back_mut() {
                    Some(c) if fits => Arc::make_mut(c).push_back(v),
                    last => {
                        if let Some(c) = last {
                            Arc::make_mut(c).seal();
                        }
                        b.chunks.push_back(Arc::new(Chunk::with(v)));
                    }
                }
                return;
            }
        }
        self.branches.push_back(Arc::new(Branch {
            chunks: VecDeque::from([Arc::new(Chunk::with(v))]),
            len: 1,
        }));
    }

    pub fn push_front(&mut self, v: &[u8]) {
        self.len += 1;
        if let Some(b) = self.branches.front_mut() {
            let fits = b.chunks.front().is_some_and(|c| c.room_for(v));
            if fits || b.chunks.len() < BRANCH_CHUNKS {
                let b = Arc::make_mut(b);
                b.len += 1;
                match b.chunks.front_mut() {
                    Some(c) if fits => Arc::make_mut(c).push_front(v),
                    first => {
                        if let Some(c) = first {
                            Arc::make_mut(c).seal();
                        }
                        b.chunks.push_front(Arc::new(Chunk::with(v)));
                    }
                }
                return;
            }
        }
        self.branches.push_front(Arc::new(Branch {
            chunks: VecDeque::from([Arc::new(Chunk::with(v))]),
            len: 1,
        }));
    }

    pub fn pop_back(&mut self) -> Option<Vec<u8>> {
        let b = Arc::make_mut(self.branches.back_mut()?);
        let c = b.chunks.back_mut()?;
        let v = Arc::make_mut(c).pop_back();
        if c.len() == 0 {
            b.chunks.pop_back();
        }
        if v.is_some() {
            b.len -= 1;
            self.len -= 1;
        }
        if b.chunks.is_empty() {
            self.branches.pop_back();
        }
        v
    }

    pub fn pop_front(&mut self) -> Option<Vec<u8>> {
        let b = Arc::make_mut(self.branches.front_mut()?);
        let c = b.chunks.front_mut()?;
        let v = Arc::make_mut(c).pop_front();
        if c.len() == 0 {
            b.chunks.pop_front();
        }
        if v.is_some() {
            b.len -= 1;
            self.len -= 1;
        }
        if b.chunks.is_empty() {
            self.branches.pop_front();
        }
        v
    }

    /// The branch, chunk and position of element `i`: walks branch sizes, then one
    /// branch's chunk sizes.
    fn locate(&self, mut i: usize) -> Option<(usize, usize, usize)> {
        for (bi, b) in self.branches.iter().enumerate() {
            if i >= b.len {
                i -= b.len;
                continue;
            }
            for (ci, c) in b.chunks.iter().enumerate() {
                if i < c.len() {
                    return Some((bi, ci, i));
                }
                i -= c.len();
            }
            return None;
        }
        None
    }

    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let (bi, ci, j) = self.locate(i)?;
        Some(self.branches[bi].chunks[ci].get(j))
    }

    /// Replace element `i`; false if out of range. A value bigger than a chunk gets a chunk
    /// of its own, as a push gives it, so a chunk's offsets stay far below `u32::MAX`
    /// however many big values replace small ones.
    pub fn set(&mut self, i: usize, v: &[u8]) -> bool {
        let Some((bi, ci, j)) = self.locate(i) else {
            return false;
        };
        let b = Arc::make_mut(&mut self.branches[bi]);
        let c = Arc::make_mut(&mut b.chunks[ci]);
        if v.len() <= CHUNK_BYTES || c.len() == 1 {
            c.set(j, v);
            return true;
        }
        let mut tail = c.split_off(j);
        tail.pop_front();
        let mut at = ci + 1;
        if c.len() == 0 {
            *c = Chunk::with(v);
        } else {
            b.chunks.insert(at, Arc::new(Chunk::with(v)));
            at += 1;
        }
        if tail.len() > 0 {
            b.chunks.insert(at, Arc::new(tail));
        }
        true
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &[u8]> + '_ {
        self.branches
            .iter()
            .flat_map(|b| b.chunks.iter())
            .flat_map(|c| (0..c.len()).map(move |i| c.get(i)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_deque_and_clones_stay_frozen() {
        let mut l = ChunkList::default();
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        let mut x = 7u64;
        let mut frozen = None;
        for i in 0..50_000usize {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = vec![
                (x >> 56) as u8;
                ((x >> 33) % 40) as usize + if i % 997 == 0 { 9000 } else { 0 }
            ];
            match (x >> 20) % 7 {
                0 | 1 => {
                    l.push_back(&v);
                    model.push_back(v);
                }
                2 | 3 => {
                    l.push_front(&v);
                    model.push_front(v);
                }
                4 => assert_eq!(l.pop_front(), model.pop_front()),
                5 => assert_eq!(l.pop_back(), model.pop_back()),
                _ => {
                    if !model.is_empty() {
                        let j = (x as usize >> 3) % model.len();
                        assert!(l.set(j, &v));
                        model[j] = v;
                    }
                }
            }
            if i == 25_000 {
                frozen = Some((l.clone(), model.clone()));
            }
        }
        assert_eq!(l.len(), model.len());
        assert!(l.iter().eq(model.iter().map(|v| &v[..])));
        assert!(l.iter().rev().eq(model.iter().rev().map(|v| &v[..])));
        if let Some(j) = model.len().checked_sub(1) {
            assert_eq!(l.get(j), Some(&model[j][..]));
        }
        assert!(l.branches.len() > 4, "branches split");
        for b in &l.branches {
            for c in &b.chunks {
                let shared_big = c.len() > 1 && (0..c.len()).any(|i| c.get(i).len() > CHUNK_BYTES);
                assert!(!shared_big, "a value bigger than a chunk shares one");
            }
        }
        let (fl, fm) = frozen.unwrap();
        assert!(fl.iter().eq(fm.iter().map(|v| &v[..])));
    }
}
