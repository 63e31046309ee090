//! Native values built straight from an RDB file's elements, as a full sync or a warm
//! restart reads them: a big collection is never decoded whole first, so loading never
//! holds it twice.
//!
//! Owns which plain-encoded values are taken element by element: sets, hashes (without
//! field TTLs: those come in other types) and sorted sets of [`NATIVE_MIN`] elements or
//! more, plain lists of as many, and quicklists of [`MIN_NODES`] nodes or more. It never
//! changes an element: the reader has checked them as it does for decoded values.

use super::{ChunkList, ChunkMap, HashRec, Member, Native, Thin, ZSetNative, NATIVE_MIN};
use crate::rdb::collect::Collector;
use crate::rdb::types::{HASH, LIST, LIST_QUICKLIST, LIST_QUICKLIST_2, SET, ZSET, ZSET_2};

/// Quicklist nodes (of up to 8 KiB each) from which a list is built as it is read.
pub const MIN_NODES: u64 = 8;

/// Most members a map is presized for from a declared count (past it, it grows).
const PRESIZE_MAX: u64 = 1 << 20;

/// Collects one value at a time; the loader takes it after each key.
#[derive(Default)]
pub struct NativeCollector {
    current: Option<Native>,
}

impl NativeCollector {
    /// The value collected for the key just read, if it was collected.
    pub fn take(&mut self) -> Option<Native> {
        self.current.take()
    }
}

impl Collector for NativeCollector {
    fn wants(&mut self, ty: u8, n: u64) -> bool {
        let big = n >= NATIVE_MIN as u64;
        // Presized from the declared count, bounded: on a replication stream of unknown
        // length only the reader's element cap has checked it.
        let size = usize::try_from(n.min(PRESIZE_MAX)).unwrap_or(0);
        self.current = Some(match ty {
            SET if big => Native::Set(ChunkMap::with_capacity(size)),
            HASH if big => Native::Hash(ChunkMap::with_capacity(size)),
            ZSET | ZSET_2 if big => Native::ZSet(ZSetNative::with_capacity(size)),
            LIST if big => Native::List(ChunkList::default()),
            LIST_QUICKLIST | LIST_QUICKLIST_2 if n >= MIN_NODES => {
                Native::List(ChunkList::default())
            }
            _ => return false,
        });
        true
    }

    fn member(&mut self, m: Vec<u8>) {
        if let Some(Native::Set(s)) = &mut self.current {
            s.insert(Member(Thin::new(&m)));
        }
    }

    fn field(&mut self, field: Vec<u8>, value: Vec<u8>) {
        if let Some(Native::Hash(h)) = &mut self.current {
            h.insert(HashRec::new(&field, &value, None));
        }
    }

    fn scored(&mut self, member: Vec<u8>, score: f64) {
        if let Some(Native::ZSet(z)) = &mut self.current {
            z.set(&member, score);
        }
    }

    fn element(&mut self, e: &[u8]) {
        if let Some(Native::List(l)) = &mut self.current {
            l.push_back(e);
        }
    }
}
