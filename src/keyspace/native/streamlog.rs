//! A big stream's entries as a deque of copy-on-write nodes of packed entries: the
//! server's radix tree of listpacks, flattened (IDs only grow, so a deque ordered by ID is
//! the tree's in-order walk, and a node is found by binary search on its ID range).
//!
//! Owns the node layout. A node holds up to [`NODE_ENTRIES`] entries and about
//! [`NODE_BYTES`] of encoded data, as the servers' default stream nodes do, so that a
//! snapshot writes one RDB node per node here. Inside a node an entry is its ID as a delta
//! from the node's base ID, then either only its values (when its field names are those of
//! the node's first entry, the servers' "same fields" rule) or its field/value pairs;
//! lengths are varints. That keeps a stream at or below the server's own memory.
//! Appending copies nothing but the last node when a snapshot still holds it; deleting or
//! trimming inside a node rewrites that node only (O(node)); whole nodes are dropped from
//! the head. A leaf: it knows nothing of keys, groups or commands, and it trusts its own
//! encoding only (nothing here reads bytes from outside).

use crate::keyspace::varint::{get_varint, put_varint};
use std::collections::VecDeque;
use std::sync::Arc;

use crate::rdb::value::{EntryRef, StreamId};

/// Entries per node at most (the servers' `stream-node-max-entries` default).
pub const NODE_ENTRIES: usize = 100;
/// Encoded bytes after which a node takes no more entries (`stream-node-max-bytes`).
pub const NODE_BYTES: usize = 4096;

const SAME_FIELDS: u8 = 1;

fn put_bytes(out: &mut Vec<u8>, s: &[u8]) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s);
}

fn get_bytes<'a>(b: &'a [u8], pos: &mut usize) -> &'a [u8] {
    let n = get_varint(b, pos) as usize;
    let s = &b[*pos..*pos + n];
    *pos += n;
    s
}

#[derive(Clone)]
struct Node {
    /// The ID entry deltas are taken from: the first ID this node ever held.
    base: StreamId,
    first: StreamId,
    last: StreamId,
    count: u32,
    /// The field names of the first entry the node was built with.
    master: Vec<Box<[u8]>>,
    data: Vec<u8>,
}

impl Node {
    fn new(base: StreamId, master: Vec<Box<[u8]>>) -> Node {
        Node {
            base,
            first: base,
            last: base,
            count: 0,
            master,
            data: Vec::new(),
        }
    }

    fn for_entry(id: StreamId, fields: &[(&[u8], &[u8])]) -> Node {
        Node::new(id, fields.iter().map(|(f, _)| Box::from(*f)).collect())
    }

    fn has_room(&self) -> bool {
        (self.count as usize) < NODE_ENTRIES && self.data.len() < NODE_BYTES
    }

    /// Append an entry whose ID is above every ID here (and not below `base`).
    fn push(&mut self, id: StreamId, fields: &[(&[u8], &[u8])]) {
        let same = fields.len() == self.master.len()
            && fields
                .iter()
                .zip(&self.master)
                .all(|((f, _), m)| *f == &m[..]);
        self.data.push(if same { SAME_FIELDS } else { 0 });
        put_varint(&mut self.data, id.ms - self.base.ms);
        put_varint(&mut self.data, id.seq);
        if same {
            for (_, v) in fields {
                put_bytes(&mut self.data, v);
            }
        } else {
            put_varint(&mut self.data, fields.len() as u64);
            for (f, v) in fields {
                put_bytes(&mut self.data, f);
                put_bytes(&mut self.data, v);
            }
        }
        if self.count == 0 {
            self.first = id;
        }
        self.last = id;
        self.count += 1;
    }

    fn iter(&self) -> NodeIter<'_> {
        NodeIter { node: self, pos: 0 }
    }

    /// This node without the entries `drop` picks (by position and ID); `None` if empty.
    fn without(&self, mut drop: impl FnMut(usize, StreamId) -> bool) -> Option<Node> {
        let mut n = Node::new(self.base, self.master.clone());
        n.data.reserve(self.data.len());
        for (i, e) in self.iter().enumerate() {
            if !drop(i, e.id) {
                n.push(e.id, &e.fields);
            }
        }
        (n.count > 0).then_some(n)
    }
}

struct NodeIter<'a> {
    node: &'a Node,
    pos: usize,
}

impl<'a> Iterator for NodeIter<'a> {
    type Item = EntryRef<'a>;

    fn next(&mut self) -> Option<EntryRef<'a>> {
        let b = &self.node.data[..];
        if self.pos >= b.len() {
            return None;
        }
        let p = &mut self.pos;
        let flag = b[*p];
        *p += 1;
        let ms = self.node.base.ms + get_varint(b, p);
        let seq = get_varint(b, p);
        let fields = if flag == SAME_FIELDS {
            self.node
                .master
                .iter()
                .map(|f| (&f[..], get_bytes(b, p)))
                .collect()
        } else {
            let n = get_varint(b, p) as usize;
            (0..n).map(|_| (get_bytes(b, p), get_bytes(b, p))).collect()
        };
        Some(EntryRef {
            id: StreamId { ms, seq },
            fields,
        })
    }
}

/// The entries of a stream, in ID order. Cloning shares every node.
#[derive(Clone, Default)]
pub struct StreamLog {
    nodes: VecDeque<Arc<Node>>,
    len: usize,
}

impl StreamLog {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn first_id(&self) -> Option<StreamId> {
        self.nodes.front().map(|n| n.first)
    }

    /// Encoded bytes held (field names shared per node not counted).
    pub fn data_bytes(&self) -> usize {
        self.nodes.iter().map(|n| n.data.len()).sum()
    }

    /// Append an entry; the caller has checked that `id` is above every ID held.
    pub fn push(&mut self, id: StreamId, fields: &[(&[u8], &[u8])]) {
        match self.nodes.back_mut() {
            Some(n) if n.has_room() => Arc::make_mut(n).push(id, fields),
            _ => {
                let mut n = Node::for_entry(id, fields);
                n.push(id, fields);
                self.nodes.push_back(Arc::new(n));
            }
        }
        self.len += 1;
    }

    /// The index of the node whose ID range holds `id`.
    fn node_of(&self, id: StreamId) -> Option<usize> {
        let i = self.nodes.partition_point(|n| n.last < id);
        (i < self.nodes.len() && self.nodes[i].first <= id).then_some(i)
    }

    pub fn contains(&self, id: StreamId) -> bool {
        self.node_of(id)
            .is_some_and(|i| self.nodes[i].iter().any(|e| e.id == id))
    }

    /// Replace node `i` by `n` (or remove it), keeping the count.
    fn replace(&mut self, i: usize, n: Option<Node>) {
        let before = self.nodes[i].count as usize;
        let after = n.as_ref().map_or(0, |n| n.count as usize);
        self.len = self.len - before + after;
        match n {
            Some(n) => self.nodes[i] = Arc::new(n),
            None => {
                self.nodes.remove(i);
            }
        }
    }

    /// Delete one entry; false when there is none with that ID.
    pub fn remove(&mut self, id: StreamId) -> bool {
        let Some(i) = self.node_of(id) else {
            return false;
        };
        if !self.nodes[i].iter().any(|e| e.id == id) {
            return false;
        }
        let n = self.nodes[i].without(|_, x| x == id);
        self.replace(i, n);
        true
    }

    /// Keep the newest `keep` entries (MAXLEN).
    pub fn keep_last(&mut self, keep: usize) {
        while let Some(n) = self.nodes.front() {
            let c = n.count as usize;
            if self.len - c < keep {
                break;
            }
            self.len -= c;
            self.nodes.pop_front();
        }
        if self.len > keep {
            let drop = self.len - keep;
            let n = self.nodes[0].without(|i, _| i < drop);
            self.replace(0, n);
        }
    }

    /// Drop the entries with IDs below `min` (MINID).
    pub fn drop_below(&mut self, min: StreamId) {
        while let Some(n) = self.nodes.front() {
            if n.last >= min {
                break;
            }
            self.len -= n.count as usize;
            self.nodes.pop_front();
        }
        if self.nodes.front().is_some_and(|n| n.first < min) {
            let n = self.nodes[0].without(|_, id| id < min);
            self.replace(0, n);
        }
    }

    /// Every entry in ID order.
    pub fn iter(&self) -> impl Iterator<Item = EntryRef<'_>> + '_ {
        self.nodes.iter().flat_map(|n| n.iter())
    }

    /// The nodes, each as its entries in ID order (none is empty).
    pub fn nodes(&self) -> impl ExactSizeIterator<Item = impl Iterator<Item = EntryRef<'_>>> {
        self.nodes.iter().map(|n| n.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    type Model = Vec<(StreamId, Vec<(Vec<u8>, Vec<u8>)>)>;

    fn model_check(log: &StreamLog, model: &Model) {
        assert_eq!(log.len(), model.len());
        let got: Vec<_> = log
            .iter()
            .map(|e| {
                (
                    e.id,
                    e.fields
                        .iter()
                        .map(|(f, v)| (f.to_vec(), v.to_vec()))
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        assert_eq!(&got, model);
        assert_eq!(log.first_id(), model.first().map(|e| e.0));
        assert_eq!(log.nodes().map(|n| n.count()).sum::<usize>(), model.len());
        assert!(log.nodes().all(|mut n| n.next().is_some()));
    }

    #[test]
    fn follows_a_model_through_pushes_deletes_and_trims() {
        let mut log = StreamLog::default();
        let mut model: Model = Vec::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut ms = 1_700_000_000_000u64;
        for step in 0..20_000u64 {
            let r = next();
            match r % 16 {
                0 if !model.is_empty() => {
                    let i = (next() as usize) % model.len();
                    let victim = model.remove(i).0;
                    assert!(log.remove(victim));
                    assert!(!log.remove(victim));
                    assert!(!log.contains(victim));
                }
                1 if step % 7 == 0 => {
                    let keep = (next() as usize) % (model.len() + 2);
                    log.keep_last(keep);
                    let drop = model.len().saturating_sub(keep);
                    model.drain(..drop);
                }
                2 if step % 5 == 0 && !model.is_empty() => {
                    let min = model[(next() as usize) % model.len()].0;
                    let min = id(min.ms, min.seq + (next() % 2));
                    log.drop_below(min);
                    model.retain(|e| e.0 >= min);
                }
                _ => {
                    ms += next() % 3;
                    let seq = if next() % 4 == 0 { next() % 1000 } else { 0 };
                    let eid = id(ms, seq);
                    if model.last().is_some_and(|l| l.0 >= eid) {
                        continue;
                    }
                    let fields: Vec<(Vec<u8>, Vec<u8>)> = if r % 5 == 0 {
                        vec![(b"other".to_vec(), vec![b'z'; (r % 300) as usize])]
                    } else {
                        vec![
                            (b"sensor".to_vec(), (r % 1000).to_string().into_bytes()),
                            (b"temp".to_vec(), Vec::new()),
                        ]
                    };
                    let refs: Vec<(&[u8], &[u8])> =
                        fields.iter().map(|(f, v)| (&f[..], &v[..])).collect();
                    log.push(eid, &refs);
                    model.push((eid, fields));
                }
            }
            if step % 997 == 0 {
                model_check(&log, &model);
            }
        }
        model_check(&log, &model);
        for e in &model {
            assert!(log.contains(e.0));
        }
    }

    #[test]
    fn a_clone_keeps_its_entries_while_the_original_changes() {
        let mut log = StreamLog::default();
        for i in 1..=1000 {
            log.push(id(i, 0), &[(b"f", b"v")]);
        }
        let snap = log.clone();
        log.push(id(2000, 0), &[(b"f", b"w")]);
        log.remove(id(500, 0));
        log.keep_last(10);
        assert_eq!(snap.len(), 1000);
        assert_eq!(
            snap.iter().map(|e| e.id.ms).collect::<Vec<_>>(),
            (1..=1000).collect::<Vec<_>>()
        );
        assert_eq!(log.len(), 10);
        assert_eq!(log.first_id(), Some(id(992, 0)));
    }
}
