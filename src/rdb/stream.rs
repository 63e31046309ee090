//! Streams (types 15, 19, 21, 26): listpack nodes, metadata, consumer groups.
//!
//! Owns the decoding and the structural checks of stream nodes (master entry, per-entry
//! flags and counts) and of consumer groups (every consumer's pending ID must be in the
//! group's PEL, as the servers require). It must never trust a count: node sizes, entry
//! counts and PEL sizes are all checked before use.

use std::collections::HashSet;
use std::io::Read;

use super::blob::{packed_err, reserve};
use super::error::{ErrorKind, RdbError, Result};
use super::input::Input;
use super::packed::{self, Elem};
use super::value::{Consumer, ConsumerGroup, PendingEntry, Stream, StreamEntry, StreamId};

const FLAG_DELETED: i64 = 1;
const FLAG_SAMEFIELDS: i64 = 2;

fn read_id<R: Read>(inp: &mut Input<R>, what: &'static str) -> Result<StreamId> {
    let ms = inp.read_len(what)?;
    let seq = inp.read_len(what)?;
    Ok(StreamId { ms, seq })
}

fn read_raw_id<R: Read>(inp: &mut Input<R>, what: &'static str) -> Result<StreamId> {
    Ok(StreamId::from_be_bytes(&inp.read_array::<16>(what)?))
}

pub(super) fn read_stream<R: Read>(inp: &mut Input<R>, format: u8) -> Result<Stream> {
    let mut s = Stream::default();
    let nodes = inp.read_count(2, "stream node count")?;
    for _ in 0..nodes {
        let at = inp.offset();
        let key = inp.read_string("stream node key")?;
        let Ok(key) = <[u8; 16]>::try_from(key.as_slice()) else {
            return Err(RdbError::new(
                at,
                ErrorKind::invalid(
                    "stream node key",
                    format!("{} bytes, expected 16", key.len()),
                ),
            ));
        };
        let master = StreamId::from_be_bytes(&key);
        let (at, blob) = super::blob::blob(inp, "stream listpack")?;
        let items = packed::listpack(&blob).map_err(|e| packed_err(at, "stream listpack", e))?;
        decode_node(&items, master, &mut s.entries)
            .map_err(|d| RdbError::new(at, ErrorKind::invalid("stream node", d)))?;
    }
    s.length = inp.read_len("stream length")?;
    s.last_id = read_id(inp, "stream last id")?;
    if format >= 2 {
        s.first_id = Some(read_id(inp, "stream first id")?);
        s.max_deleted_id = Some(read_id(inp, "stream max deleted id")?);
        s.entries_added = Some(inp.read_len("stream entries added")?);
    }
    if let Some(last) = s.entries.last() {
        if last.id > s.last_id {
            return Err(inp.err(ErrorKind::invalid(
                "stream",
                format!("entry {} is after the last id {}", last.id, s.last_id),
            )));
        }
    }
    let groups = inp.read_count(3, "stream consumer group count")?;
    s.groups.reserve(reserve(groups));
    for _ in 0..groups {
        s.groups.push(read_group(inp, format)?);
    }
    if format >= 4 {
        s.idmp = Some(super::stream_idmp::read(inp)?);
    }
    Ok(s)
}

/// Decode one node's listpack: the master entry, then entries relative to it.
fn decode_node(
    items: &[Elem],
    master: StreamId,
    out: &mut Vec<StreamEntry>,
) -> std::result::Result<(), String> {
    let mut it = items.iter().copied().enumerate();
    let mut int = |what: &str| -> std::result::Result<i64, String> {
        match it.next() {
            Some((_, e)) => e
                .as_int()
                .ok_or_else(|| format!("{what} is not an integer")),
            None => Err(format!("node ends before its {what}")),
        }
    };
    let count = int("master entry count")?;
    let deleted = int("master deleted count")?;
    let nfields = int("master field count")?;
    if count < 0 || deleted < 0 || nfields < 0 || nfields as usize > items.len() {
        return Err(format!(
            "bad master entry (count {count}, deleted {deleted}, fields {nfields})"
        ));
    }
    let nfields = nfields as usize;
    let master_fields: Vec<Vec<u8>> = items
        .get(3..3 + nfields)
        .ok_or("master fields run past the node")?
        .iter()
        .map(|e| e.to_bytes())
        .collect();
    let mut p = 3 + nfields;
    match items.get(p).and_then(|e| e.as_int()) {
        Some(0) => p += 1,
        _ => return Err("master entry is not terminated by 0".into()),
    }
    let get_int = |p: usize, what: &str| -> std::result::Result<i64, String> {
        items
            .get(p)
            .ok_or_else(|| format!("entry ends before its {what}"))?
            .as_int()
            .ok_or_else(|| format!("{what} is not an integer"))
    };
    let (mut live, mut dead) = (0i64, 0i64);
    while p < items.len() {
        let start = p;
        let flags = get_int(p, "flags")?;
        let ms_diff = get_int(p + 1, "id ms delta")?;
        let seq_diff = get_int(p + 2, "id seq delta")?;
        p += 3;
        let id = StreamId {
            ms: master.ms.wrapping_add(ms_diff as u64),
            seq: master.seq.wrapping_add(seq_diff as u64),
        };
        let mut fields = Vec::new();
        if flags & FLAG_SAMEFIELDS != 0 {
            let vals = items
                .get(p..p + nfields)
                .ok_or("entry values run past the node")?;
            for (f, v) in master_fields.iter().zip(vals) {
                fields.push((f.clone(), v.to_bytes()));
            }
            p += nfields;
        } else {
            let n = get_int(p, "field count")?;
            p += 1;
            if n < 0 || (n as usize).saturating_mul(2) > items.len() - p {
                return Err(format!("entry {id} declares {n} fields, beyond the node"));
            }
            for i in 0..n as usize {
                fields.push((items[p + 2 * i].to_bytes(), items[p + 2 * i + 1].to_bytes()));
            }
            p += 2 * n as usize;
        }
        let lp_count = get_int(p, "lp-count")?;
        p += 1;
        if lp_count != (p - start - 1) as i64 {
            return Err(format!(
                "entry {id} lp-count {lp_count} but it has {} elements",
                p - start - 1
            ));
        }
        if flags & FLAG_DELETED != 0 {
            dead += 1;
        } else {
            if let Some(prev) = out.last() {
                if prev.id >= id {
                    return Err(format!(
                        "entry {id} is not after the previous entry {}",
                        prev.id
                    ));
                }
            }
            live += 1;
            out.push(StreamEntry { id, fields });
        }
    }
    if live != count || dead != deleted {
        return Err(format!(
            "master entry counts {count} live / {deleted} deleted but the node holds {live} / {dead}"
        ));
    }
    Ok(())
}

fn read_group<R: Read>(inp: &mut Input<R>, format: u8) -> Result<ConsumerGroup> {
    let name = inp.read_string("consumer group name")?;
    let last_id = read_id(inp, "consumer group last id")?;
    let entries_read = if format >= 2 {
        Some(inp.read_len("consumer group entries read")? as i64)
    } else {
        None
    };
    let npel = inp.read_count(17, "consumer group PEL size")?;
    let mut pending = Vec::with_capacity(reserve(npel));
    let mut pel_ids = HashSet::with_capacity(reserve(npel));
    for _ in 0..npel {
        let at = inp.offset();
        let id = read_raw_id(inp, "PEL entry id")?;
        if !pel_ids.insert(id) {
            return Err(RdbError::new(
                at,
                ErrorKind::invalid("consumer group PEL", format!("duplicate id {id}")),
            ));
        }
        let delivery_time_ms = inp.read_ms_time("PEL delivery time")?;
        let delivery_count = inp.read_len("PEL delivery count")?;
        pending.push(PendingEntry {
            id,
            delivery_time_ms,
            delivery_count,
        });
    }
    let nconsumers = inp.read_count(10, "consumer count")?;
    let mut consumers = Vec::with_capacity(reserve(nconsumers));
    let mut owned = HashSet::new();
    for _ in 0..nconsumers {
        let cname = inp.read_string("consumer name")?;
        let seen_time_ms = inp.read_ms_time("consumer seen time")?;
        let active_time_ms = if format >= 3 {
            Some(inp.read_ms_time("consumer active time")?)
        } else {
            None
        };
        let n = inp.read_count(16, "consumer PEL size")?;
        let mut ids = Vec::with_capacity(reserve(n));
        for _ in 0..n {
            let at = inp.offset();
            let id = read_raw_id(inp, "consumer PEL id")?;
            if !pel_ids.contains(&id) || !owned.insert(id) {
                return Err(RdbError::new(
                    at,
                    ErrorKind::invalid(
                        "consumer PEL",
                        format!("id {id} is not pending in the group, or owned twice"),
                    ),
                ));
            }
            ids.push(id);
        }
        consumers.push(Consumer {
            name: cname,
            seen_time_ms,
            active_time_ms,
            pending: ids,
        });
    }
    let unowned = if format >= 5 {
        let n = inp.read_count(16, "unowned PEL size")?;
        let mut ids = Vec::with_capacity(reserve(n));
        for _ in 0..n {
            let at = inp.offset();
            let id = read_raw_id(inp, "unowned PEL id")?;
            if !pel_ids.contains(&id) || !owned.insert(id) {
                return Err(RdbError::new(
                    at,
                    ErrorKind::invalid(
                        "unowned PEL",
                        format!("id {id} is not pending, or has a consumer"),
                    ),
                ));
            }
            ids.push(id);
        }
        Some(ids)
    } else {
        None
    };
    Ok(ConsumerGroup {
        name,
        last_id,
        entries_read,
        pending,
        consumers,
        unowned,
    })
}
