//! A big list as a deque of copy-on-write chunks of packed elements (quicklist-like).
//!
//! Owns the layout: each chunk holds up to [`CHUNK_BYTES`] of element bytes back to back
//! with their end offsets (one element bigger than that gets a chunk of its own). Pushing
//! and popping at either end are O(chunk); indexing walks chunk counts (O(n / chunk)).
//! Cloning shares every chunk, so a write to a list a snapshot still holds copies one
//! chunk. A leaf: it knows nothing of keys or commands and never reorders elements.

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

#[derive(Clone, Default)]
pub struct ChunkList {
    chunks: VecDeque<Arc<Chunk>>,
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
        match self.chunks.back_mut() {
            Some(c) if c.room_for(v) => Arc::make_mut(c).push_back(v),
            _ => {
                if let Some(c) = self.chunks.back_mut() {
                    Arc::make_mut(c).data.shrink_to_fit();
                }
                let mut c = Chunk::default();
                c.push_back(v);
                self.chunks.push_back(Arc::new(c));
            }
        }
        self.len += 1;
    }

    pub fn push_front(&mut self, v: &[u8]) {
        match self.chunks.front_mut() {
            Some(c) if c.room_for(v) => Arc::make_mut(c).push_front(v),
            _ => {
                if let Some(c) = self.chunks.front_mut() {
                    Arc::make_mut(c).data.shrink_to_fit();
                }
                let mut c = Chunk::default();
                c.push_back(v);
                self.chunks.push_front(Arc::new(c));
            }
        }
        self.len += 1;
    }

    pub fn pop_back(&mut self) -> Option<Vec<u8>> {
        let c = self.chunks.back_mut()?;
        let v = Arc::make_mut(c).pop_back();
        if c.len() == 0 {
            self.chunks.pop_back();
        }
        self.len -= usize::from(v.is_some());
        v
    }

    pub fn pop_front(&mut self) -> Option<Vec<u8>> {
        let c = self.chunks.front_mut()?;
        let v = Arc::make_mut(c).pop_front();
        if c.len() == 0 {
            self.chunks.pop_front();
        }
        self.len -= usize::from(v.is_some());
        v
    }

    /// The chunk and position of element `i`.
    fn locate(&self, mut i: usize) -> Option<(usize, usize)> {
        for (ci, c) in self.chunks.iter().enumerate() {
            if i < c.len() {
                return Some((ci, i));
            }
            i -= c.len();
        }
        None
    }

    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let (ci, j) = self.locate(i)?;
        Some(self.chunks[ci].get(j))
    }

    /// Replace element `i`; false if out of range.
    pub fn set(&mut self, i: usize, v: &[u8]) -> bool {
        let Some((ci, j)) = self.locate(i) else {
            return false;
        };
        Arc::make_mut(&mut self.chunks[ci]).set(j, v);
        true
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &[u8]> + '_ {
        self.chunks
            .iter()
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
        let (fl, fm) = frozen.unwrap();
        assert!(fl.iter().eq(fm.iter().map(|v| &v[..])));
    }
}
