//! Streams on the way out: listpack nodes keyed by their master ID, then the metadata and
//! consumer groups in the layout of the target's stream format (1–5).
//!
//! Owns node packing (at most 100 entries / ~4 KiB per node, like the server's defaults)
//! and the derivation of format-2 metadata from a format-1 source the way the servers do
//! on load, so the target ends up with what the source server held.

use super::super::value::{EntryRef, Stream, StreamId};
use super::encode;
use super::packed::Listpack;
use super::target::{thresholds as th, Target};
use super::WriteOptions;

const FLAG_SAMEFIELDS: i64 = 2;

fn id(buf: &mut Vec<u8>, id: StreamId) {
    encode::len(buf, id.ms);
    encode::len(buf, id.seq);
}

fn raw_id(buf: &mut Vec<u8>, id: StreamId) {
    buf.extend_from_slice(&id.ms.to_be_bytes());
    buf.extend_from_slice(&id.seq.to_be_bytes());
}

/// The servers' estimate of a group's read counter when the file has none (format 1):
/// exact when nothing was deleted ahead of the group, otherwise unknown (-1).
fn estimate_entries_read(
    s: &Stream,
    first: StreamId,
    max_deleted: StreamId,
    added: u64,
    gid: StreamId,
) -> i64 {
    if added == 0 {
        return 0;
    }
    match gid.cmp(&s.last_id) {
        std::cmp::Ordering::Equal => return added as i64,
        std::cmp::Ordering::Greater => return -1,
        std::cmp::Ordering::Less => {}
    }
    if max_deleted == StreamId::default() || max_deleted < first {
        match gid.cmp(&first) {
            std::cmp::Ordering::Less => return added as i64 - s.length as i64,
            std::cmp::Ordering::Equal => return added as i64 - s.length as i64 + 1,
            std::cmp::Ordering::Greater => {}
        }
    }
    -1
}

/// One RDB node being built: a listpack whose master entry names the first entry's fields.
struct NodeBuilder<'a> {
    master: EntryRef<'a>,
    body: Listpack,
    n: usize,
}

impl<'a> NodeBuilder<'a> {
    fn new(master: EntryRef<'a>) -> Self {
        NodeBuilder {
            master,
            body: Listpack::new(),
            n: 0,
        }
    }

    /// Whether the servers' default node limits still leave room.
    fn has_room(&self) -> bool {
        self.n < th::STREAM_NODE_MAX_ENTRIES
            && (self.n == 0 || self.body.bytes() < th::STREAM_NODE_MAX_BYTES)
    }

    fn push(&mut self, e: &EntryRef) {
        let (master, body) = (&self.master, &mut self.body);
        let same = e.fields.len() == master.fields.len()
            && e.fields
                .iter()
                .zip(&master.fields)
                .all(|((f, _), (m, _))| f == m);
        body.push_int(if same { FLAG_SAMEFIELDS } else { 0 });
        body.push_int(e.id.ms.wrapping_sub(master.id.ms) as i64);
        body.push_int(e.id.seq.wrapping_sub(master.id.seq) as i64);
        if same {
            for (_, v) in &e.fields {
                body.push(v);
            }
            body.push_int(3 + e.fields.len() as i64);
        } else {
            body.push_int(e.fields.len() as i64);
            for (f, v) in &e.fields {
                body.push(f);
                body.push(v);
            }
            body.push_int(4 + 2 * e.fields.len() as i64);
        }
        self.n += 1;
    }

    /// The node's master ID and listpack.
    fn finish(self) -> (StreamId, Vec<u8>) {
        // The master entry goes first; build it now that the live count is known.
        let mut lp = Listpack::new();
        lp.push_int(self.n as i64);
        lp.push_int(0);
        lp.push_int(self.master.fields.len() as i64);
        for (f, _) in &self.master.fields {
            lp.push(f);
        }
        lp.push_int(0);
        let mut blob = lp.finish();
        let body = self.body.finish();
        // Splice: master listpack without its end byte + body entries without its header.
        blob.pop();
        blob.extend_from_slice(&body[6..]);
        let total = blob.len() as u32;
        blob[0..4].copy_from_slice(&total.to_le_bytes());
        // master entry: count, deleted, field count, the fields, the 0 terminator
        let body_count = u16::from_le_bytes([body[4], body[5]]);
        let count = 3 + self.master.fields.len() + 1 + usize::from(body_count);
        let c = if body_count < u16::MAX && count < 65535 {
            count as u16
        } else {
            u16::MAX // "unknown": readers count the entries themselves
        };
        blob[4..6].copy_from_slice(&c.to_le_bytes());
        (self.master.id, blob)
    }
}

/// One node as an RDB stream node: its master ID as the key, then the listpack.
pub(crate) fn put_node(buf: &mut Vec<u8>, node: (StreamId, Vec<u8>), o: WriteOptions) {
    let mut key = Vec::with_capacity(16);
    raw_id(&mut key, node.0);
    encode::string(buf, &key, false);
    encode::string(buf, &node.1, o.compress);
}

/// One node from entries already grouped (a native stream's node; never empty).
pub(crate) fn node<'a>(mut entries: impl Iterator<Item = EntryRef<'a>>) -> (StreamId, Vec<u8>) {
    let first = entries.next().unwrap_or(EntryRef {
        id: StreamId::default(),
        fields: Vec::new(),
    });
    let mut b = NodeBuilder::new(first.clone());
    b.push(&first);
    for e in entries {
        b.push(&e);
    }
    b.finish()
}

/// Decoded entries packed greedily into nodes within the servers' default limits.
fn nodes(buf: &mut Vec<u8>, s: &Stream, o: WriteOptions) {
    let mut packed = Vec::new();
    let mut it = s.entries.iter().map(|e| e.view()).peekable();
    while let Some(first) = it.next() {
        let mut b = NodeBuilder::new(first.clone());
        b.push(&first);
        while b.has_room() {
            let Some(e) = it.next() else { break };
            b.push(&e);
        }
        packed.push(b.finish());
    }
    encode::len(buf, packed.len() as u64);
    for n in packed {
        put_node(buf, n, o);
    }
}

/// The stream format the target gets for `s` (1–5), or what the target cannot hold.
pub(crate) fn format(s: &Stream, t: &Target) -> Result<u8, String> {
    let has_unowned = s
        .groups
        .iter()
        .any(|g| g.unowned.as_ref().is_some_and(|u| !u.is_empty()));
    Ok(if has_unowned {
        if t.valkey_magic || t.rdb_version < 14 {
            return Err("a stream group's unowned pending entries (Redis 8.8+)".into());
        }
        if s.idmp.is_none() {
            return Err("unowned pending entries without IDMP state (not supported yet)".into());
        }
        5
    } else if s.idmp.is_some() && t.redis_86() {
        4
    } else if s
        .idmp
        .as_ref()
        .is_some_and(|i| !i.producers.is_empty() || i.iids_added > 0 || i.iids_duplicates > 0)
    {
        // Redis 8.6 writes the block for every stream; it only carries data once a
        // producer has used idempotent IDs. Without that, a target without the feature
        // loses nothing but settings it has no use for.
        return Err("stream idempotency (IDMP) state (Redis 8.6+)".into());
    } else {
        t.stream_format()
    })
}

/// The type byte of stream format `format`.
pub(crate) fn type_byte(format: u8) -> u8 {
    use super::super::types::*;
    match format {
        1 => STREAM_LISTPACKS,
        2 => STREAM_LISTPACKS_2,
        3 => STREAM_LISTPACKS_3,
        4 => STREAM_LISTPACKS_4,
        _ => STREAM_LISTPACKS_5,
    }
}

/// Write the stream; returns the type byte, or what the target cannot hold.
pub(super) fn write(
    buf: &mut Vec<u8>,
    s: &Stream,
    t: &Target,
    o: WriteOptions,
) -> Result<u8, String> {
    let format = format(s, t)?;
    nodes(buf, s, o);
    tail(buf, s, s.entries.first().map(|e| e.id), format, o);
    Ok(type_byte(format))
}

/// Everything after the nodes: length, IDs, metadata, groups, IDMP state. `head` is the
/// stream's metadata (its `entries` are not read); `first_entry` the first live ID.
pub(crate) fn tail(
    buf: &mut Vec<u8>,
    s: &Stream,
    first_entry: Option<StreamId>,
    format: u8,
    o: WriteOptions,
) {
    encode::len(buf, s.length);
    id(buf, s.last_id);
    let first = s
        .first_id
        .unwrap_or_else(|| first_entry.unwrap_or_default());
    let max_deleted = s.max_deleted_id.unwrap_or_default();
    let added = s.entries_added.unwrap_or(s.length);
    if format >= 2 {
        id(buf, first);
        id(buf, max_deleted);
        encode::len(buf, added);
    }
    encode::len(buf, s.groups.len() as u64);
    for g in &s.groups {
        encode::string(buf, &g.name, o.compress);
        id(buf, g.last_id);
        if format >= 2 {
            let read = g
                .entries_read
                .unwrap_or_else(|| estimate_entries_read(s, first, max_deleted, added, g.last_id));
            encode::len(buf, read as u64);
        }
        encode::len(buf, g.pending.len() as u64);
        for p in &g.pending {
            raw_id(buf, p.id);
            encode::ms_time(buf, p.delivery_time_ms);
            encode::len(buf, p.delivery_count);
        }
        encode::len(buf, g.consumers.len() as u64);
        for c in &g.consumers {
            encode::string(buf, &c.name, o.compress);
            encode::ms_time(buf, c.seen_time_ms);
            if format >= 3 {
                encode::ms_time(buf, c.active_time_ms.unwrap_or(c.seen_time_ms));
            }
            encode::len(buf, c.pending.len() as u64);
            for pid in &c.pending {
                raw_id(buf, *pid);
            }
        }
        if format >= 5 {
            let u = g.unowned.as_deref().unwrap_or(&[]);
            encode::len(buf, u.len() as u64);
            for pid in u {
                raw_id(buf, *pid);
            }
        }
    }
    if let (true, Some(idmp)) = (format >= 4, &s.idmp) {
        encode::len(buf, idmp.duration_s);
        encode::len(buf, idmp.max_entries);
        encode::len(buf, idmp.producers.len() as u64);
        for p in &idmp.producers {
            encode::string(buf, &p.id, o.compress);
            encode::len(buf, p.entries.len() as u64);
            for (iid, eid) in &p.entries {
                encode::string(buf, iid, o.compress);
                id(buf, *eid);
            }
        }
        encode::len(buf, idmp.iids_added);
        encode::len(buf, idmp.iids_duplicates);
    }
}
