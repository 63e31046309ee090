//! A hash table of byte-keyed items split into copy-on-write chunks (extendible hashing).
//!
//! Owns the layout big sets, hashes and sorted-set member maps live in: a directory of
//! chunk numbers indexed by hash bits, each chunk a small `hashbrown` table behind an
//! `Arc`. Every write touches one chunk: an insert, a lookup and a removal are O(1), a
//! chunk that grows past [`CHUNK_MAX`] splits in two (O(chunk)), and the directory doubles
//! when a split needs it (O(chunks)). Cloning the map shares every chunk, so the first
//! write to a map a snapshot still holds copies one chunk's slots (its items stay shared,
//! [`super::alias`]), never the whole map; the chunk
//! list is held in shared segments of 256, so that clone touches one handle per segment
//! (measured at 15 M members: the flat list's 16 k handles cost milliseconds).
//! A walker of its own copy ([`ChunkMap::visit_releasing`], a snapshot's) lets go of each
//! chunk once it has seen it, so the live map changes a walked chunk without copying it.
//!
//! It is a leaf: it knows nothing of keys, values or snapshots beyond [`MapItem`], and it
//! must never hand out an item whose key bytes it did not check for equality.

use std::sync::Arc;

use hashbrown::HashTable;

use super::alias::{Body, Node, Raw};

/// Items per chunk before it splits: a full 2048-bucket `hashbrown` table (7/8 load).
pub const CHUNK_MAX: usize = 1792;
/// Directory bits are taken from bit 32 up, away from the table's own bucket (low) and tag
/// (top 7) bits; 25 bits keep them clear of the tag.
const MAX_DEPTH: u32 = 25;

/// What the map holds: anything with key bytes (`Clone` for a deep copy, [`ChunkMap::deep_clone`]).
pub trait MapItem: Clone {
    fn key(&self) -> &[u8];
}

pub fn hash_bytes(b: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x6e61_7469_7665).hash_one(b)
}

fn rehash<T: MapItem>(t: &Raw<T>) -> u64 {
    hash_bytes(t.key())
}

struct Chunk<T> {
    depth: u32,
    table: HashTable<Raw<T>>,
}

impl<T> Default for Chunk<T> {
    fn default() -> Self {
        Chunk {
            depth: 0,
            table: HashTable::new(),
        }
    }
}

impl<T> Body for Chunk<T> {
    type Item = T;
    fn alias(&self) -> Self {
        Chunk {
            depth: self.depth,
            table: self.table.clone(),
        }
    }
    fn drain_into(&mut self, out: &mut Vec<Raw<T>>) {
        out.extend(self.table.drain());
    }
}

type Shared<T> = Arc<Node<Chunk<T>>>;

/// Chunks per segment: the chunk list is itself split in shared segments, so cloning a map
/// of 16 k chunks touches 64 handles, not 16 k (each a cache miss on its chunk's count).
const SEGMENT: usize = 256;

/// The chunks, in segments of [`SEGMENT`], each segment shared until written.
#[derive(Clone)]
struct Chunks<T> {
    segs: Vec<Arc<Vec<Shared<T>>>>,
    len: usize,
}

impl<T: MapItem> Chunks<T> {
    fn one(c: Chunk<T>) -> Self {
        let mut s = Chunks {
            segs: Vec::new(),
            len: 0,
        };
        s.push(Node::new(c));
        s
    }

    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, i: usize) -> &Chunk<T> {
        self.segs[i / SEGMENT][i % SEGMENT].body()
    }

    /// Chunk `i` for a change: its segment is copied first if shared, and the chunk gets a
    /// node of its own (its slots copied, its items shared) if a snapshot holds it.
    fn get_mut(&mut self, i: usize) -> &mut Node<Chunk<T>> {
        Node::make_mut(&mut Arc::make_mut(&mut self.segs[i / SEGMENT])[i % SEGMENT])
    }

    fn push(&mut self, c: Node<Chunk<T>>) {
        if self.len.is_multiple_of(SEGMENT) {
            self.segs.push(Arc::new(Vec::with_capacity(SEGMENT)));
        }
        let last = self.segs.len() - 1;
        Arc::make_mut(&mut self.segs[last]).push(Arc::new(c));
        self.len += 1;
    }

    fn iter(&self) -> impl Iterator<Item = &Chunk<T>> + '_ {
        self.segs.iter().flat_map(|s| s.iter().map(|c| c.body()))
    }
}

/// `Clone` shares every chunk: for a snapshot's read-only view. A second live value (COPY)
/// takes [`ChunkMap::deep_clone`] (see [`super::alias`]).
#[derive(Clone)]
pub struct ChunkMap<T> {
    /// `2^depth` entries: directory slot → index into `chunks`.
    dir: Arc<Vec<u32>>,
    chunks: Chunks<T>,
    depth: u32,
    len: usize,
}

impl<T: MapItem> Default for ChunkMap<T> {
    fn default() -> Self {
        Self::new()
    }
}

fn slot(hash: u64, depth: u32) -> usize {
    ((hash >> 32) & ((1u64 << depth) - 1)) as usize
}

impl<T: MapItem> ChunkMap<T> {
    pub fn new() -> Self {
        ChunkMap {
            dir: Arc::new(vec![0]),
            chunks: Chunks::one(Chunk::default()),
            depth: 0,
            len: 0,
        }
    }

    /// An empty map sized for about `n` items: the directory and chunks it will need are
    /// made up front, so filling it never splits or rehashes (loading a file).
    pub fn with_capacity(n: usize) -> Self {
        let per_chunk = CHUNK_MAX * 3 / 4;
        let mut depth = 0;
        while depth < 16 && (n >> depth) > per_chunk {
            depth += 1;
        }
        let chunks = 1usize << depth;
        let each = n / chunks + n / chunks / 8 + 1;
        let mut m = ChunkMap {
            dir: Arc::new((0..chunks as u32).collect()),
            chunks: Chunks {
                segs: Vec::new(),
                len: 0,
            },
            depth,
            len: 0,
        };
        for _ in 0..chunks {
            m.chunks.push(Node::new(Chunk {
                depth,
                table: HashTable::with_capacity(each.min(CHUNK_MAX)),
            }));
        }
        m
    }

    /// A map of fresh copies of every item, sharing nothing with this one.
    pub fn deep_clone(&self) -> Self {
        let mut chunks = Chunks {
            segs: Vec::new(),
            len: 0,
        };
        for c in self.chunks.iter() {
            let mut table = HashTable::with_capacity(c.table.len());
            for t in c.table.iter() {
                table.insert_unique(rehash(t), Raw::new(T::clone(t)), rehash);
            }
            chunks.push(Node::new(Chunk {
                depth: c.depth,
                table,
            }));
        }
        ChunkMap {
            dir: Arc::new((*self.dir).clone()),
            chunks,
            depth: self.depth,
            len: self.len,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn chunk_of(&self, hash: u64) -> usize {
        self.dir[slot(hash, self.depth)] as usize
    }

    pub fn get(&self, key: &[u8]) -> Option<&T> {
        let h = hash_bytes(key);
        self.chunks
            .get(self.chunk_of(h))
            .table
            .find(h, |t| t.key() == key)
            .map(|r| &**r)
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    /// Insert or replace; whether an item was replaced.
    pub fn insert(&mut self, item: T) -> bool {
        self.insert_with(item, |_| ()).is_some()
    }

    /// Insert or replace; `old` sees the item replaced, if any, before it is let go.
    pub fn insert_with<R>(&mut self, item: T, old: impl FnOnce(&T) -> R) -> Option<R> {
        let h = hash_bytes(item.key());
        let c = self.chunk_of(h);
        let node = self.chunks.get_mut(c);
        let chunk = node.body_mut();
        let replaced = match chunk.table.find_mut(h, |t| t.key() == item.key()) {
            Some(slot) => Some(std::mem::replace(slot, Raw::new(item))),
            None => {
                chunk.table.insert_unique(h, Raw::new(item), rehash);
                None
            }
        };
        let grow = replaced.is_none() && chunk.table.len() > CHUNK_MAX && chunk.depth < MAX_DEPTH;
        let r = replaced.map(|gone| {
            let r = old(&gone);
            node.evict(gone);
            r
        });
        if r.is_none() {
            self.len += 1;
            if grow {
                self.split(c);
            }
        }
        r
    }

    /// Remove the item under `key`; whether it was there.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        self.remove_with(key, |_| ()).is_some()
    }

    /// Remove the item under `key`; `f` sees it before it is let go.
    pub fn remove_with<R>(&mut self, key: &[u8], f: impl FnOnce(&T) -> R) -> Option<R> {
        let h = hash_bytes(key);
        let c = self.chunk_of(h);
        // Look before copying: removing what is absent must not copy a shared chunk.
        self.chunks.get(c).table.find(h, |t| t.key() == key)?;
        let node = self.chunks.get_mut(c);
        let (gone, _) = node
            .body_mut()
            .table
            .find_entry(h, |t| t.key() == key)
            .ok()?
            .remove();
        let r = f(&gone);
        node.evict(gone);
        self.len -= 1;
        Some(r)
    }

    /// Split chunk `c` on its next hash bit, doubling the directory first if needed.
    fn split(&mut self, c: usize) {
        let d = self.chunks.get(c).depth;
        let dir = Arc::make_mut(&mut self.dir);
        if d == self.depth {
            dir.extend_from_within(..);
            self.depth += 1;
        }
        let new_index = self.chunks.len() as u32;
        let node = self.chunks.get_mut(c);
        let chunk = node.body_mut();
        chunk.depth = d + 1;
        let bit = 1u64 << (32 + d);
        let mut moved = HashTable::with_capacity(chunk.table.len() / 2 + 1);
        let mut keep = HashTable::with_capacity(chunk.table.len() / 2 + 1);
        for item in std::mem::take(&mut chunk.table) {
            let h = rehash(&item);
            let dest = if h & bit != 0 { &mut moved } else { &mut keep };
            dest.insert_unique(h, item, rehash);
        }
        chunk.table = keep;
        // The moved items may still be read by the snapshots this chunk's items are.
        let sibling = node.sibling(Chunk {
            depth: d + 1,
            table: moved,
        });
        self.chunks.push(sibling);
        // Slots that pointed at `c` and have bit `d` set now point at the new chunk.
        let low = (1usize << d) - 1;
        let pattern = dir
            .iter()
            .position(|&x| x as usize == c)
            .map_or(0, |i| i & low);
        let mut s = pattern | (1 << d);
        while s < dir.len() {
            dir[s] = new_index;
            s += 1 << (d + 1);
        }
    }

    /// Every item, chunk by chunk (no order).
    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.chunks
            .iter()
            .flat_map(|c| c.table.iter().map(|r| &**r))
    }

    /// Every item in [`ChunkMap::iter`]'s order, consuming the map: each chunk is let go
    /// as soon as `f` has seen its items. A snapshot walks its own copy this way, so the
    /// live map it shares chunks with finds a walked chunk unshared and changes it in
    /// place (copying nothing), and a chunk the live map already copied is freed at once.
    pub fn visit_releasing<E>(self, mut f: impl FnMut(&T) -> Result<(), E>) -> Result<(), E> {
        drop(self.dir);
        for seg in self.chunks.segs {
            // Our own handles to the segment's chunks (a copy of 256 handles when the live
            // map still shares the segment), so each chunk can be let go on its own.
            let seg = Arc::try_unwrap(seg).unwrap_or_else(|s| (*s).clone());
            for chunk in seg {
                chunk.body().table.iter().try_for_each(|r| f(r))?;
            }
        }
        Ok(())
    }

    /// Chunks a write would copy first, their own or their segment's handle being shared
    /// with another map (a clone, a snapshot's view). For tests and diagnostics; O(chunks).
    pub fn shared_chunks(&self) -> usize {
        self.chunks
            .segs
            .iter()
            .map(|s| {
                if Arc::strong_count(s) > 1 {
                    s.len()
                } else {
                    s.iter().filter(|c| Arc::strong_count(c) > 1).count()
                }
            })
            .sum()
    }

    /// Keep only the items `f` accepts.
    pub fn retain(&mut self, mut f: impl FnMut(&T) -> bool) {
        for c in 0..self.chunks.len() {
            if self.chunks.get(c).table.iter().all(|r| f(r)) {
                continue;
            }
            let node = self.chunks.get_mut(c);
            let gone: Vec<Raw<T>> = node.body_mut().table.extract_if(|r| !f(r)).collect();
            self.len -= gone.len();
            for g in gone {
                node.evict(g);
            }
        }
    }
}

#[cfg(test)]
#[path = "chunkmap_tests.rs"]
mod tests;
