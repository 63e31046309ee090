//! One key's records: expiry and LRU/LFU hints, key metadata, type byte, key, value.
//!
//! Owns the choice of encoding per value and target, mirroring what the target server
//! itself writes for the same data at default settings (compact encodings under the
//! default `*-max-*` thresholds, plain ones above).

use super::super::error::escape_key;
use super::super::opcodes;
use super::super::types::*;
use super::super::value::{ArrayElem, HashField, Value};
use super::encode;
use super::packed::{canonical_int, intset, Listpack, Ziplist};
use super::target::{thresholds as th, HashTtlFormat, Target};
use super::{KeyRecord, WriteError, WriteOptions};

fn refuse(rec: &KeyRecord, t: &Target, what: impl Into<String>) -> WriteError {
    WriteError::Unrepresentable {
        key: escape_key(rec.key),
        what: what.into(),
        target: t.server.to_string(),
    }
}

pub(super) fn write_key(
    buf: &mut Vec<u8>,
    rec: &KeyRecord,
    t: &Target,
    o: WriteOptions,
) -> Result<(), WriteError> {
    write_hints(buf, rec, t)?;
    let type_at = buf.len();
    buf.push(0); // patched below, once the encoding is chosen
    encode::string(buf, rec.key, o.compress);
    buf[type_at] = write_value(buf, rec, t, o)?;
    Ok(())
}

/// Expiry, LRU/LFU and key-metadata records that precede a key.
pub(super) fn write_hints(
    buf: &mut Vec<u8>,
    rec: &KeyRecord,
    t: &Target,
) -> Result<(), WriteError> {
    if let Some(ms) = rec.expire_ms {
        buf.push(opcodes::EXPIRETIME_MS);
        encode::ms_time(buf, ms);
    }
    if let Some(idle) = rec.idle {
        buf.push(opcodes::IDLE);
        encode::len(buf, idle);
    }
    if let Some(freq) = rec.freq {
        buf.push(opcodes::FREQ);
        buf.push(freq);
    }
    if !rec.meta.is_empty() {
        if !t.redis_86() {
            return Err(refuse(rec, t, "key metadata (Redis 8.6+)"));
        }
        buf.push(opcodes::OP243);
        encode::len(buf, rec.meta.len() as u64);
        for (spec, raw) in rec.meta {
            buf.extend_from_slice(&spec.to_le_bytes());
            buf.extend_from_slice(raw);
        }
    }
    Ok(())
}

/// The value alone (what follows the key); returns its type byte.
pub(super) fn write_value(
    buf: &mut Vec<u8>,
    rec: &KeyRecord,
    t: &Target,
    o: WriteOptions,
) -> Result<u8, WriteError> {
    Ok(match rec.value {
        Value::String(s) => {
            encode::string(buf, s, o.compress);
            STRING
        }
        Value::List(items) => list(buf, items, t, o),
        Value::Set(members) => set(buf, members, t, o),
        Value::SortedSet(pairs) => zset(buf, pairs, rec.source_type, t, o),
        Value::Hash(fields) => hash(buf, fields, rec, t, o)?,
        Value::Stream(s) => {
            super::stream::write(buf, s, t, o).map_err(|what| refuse(rec, t, what))?
        }
        Value::Module(m) => {
            buf.extend_from_slice(&m.raw);
            MODULE_2
        }
        Value::Array(a) => {
            if !t.arrays() {
                return Err(refuse(rec, t, "a sparse array (Redis 8.8+)"));
            }
            encode::len(buf, a.elems.len() as u64);
            match a.insert_idx {
                None => encode::len(buf, 0),
                Some(i) => {
                    encode::len(buf, 1);
                    encode::len(buf, i);
                }
            }
            for (idx, e) in &a.elems {
                encode::len(buf, *idx);
                match e {
                    ArrayElem::Str(s) => {
                        encode::len(buf, 0);
                        encode::string(buf, s, o.compress);
                    }
                    ArrayElem::Int(i) => {
                        encode::len(buf, 1);
                        buf.extend_from_slice(&i.to_le_bytes());
                    }
                    ArrayElem::Float(f) => {
                        encode::len(buf, 2);
                        buf.extend_from_slice(&f.to_le_bytes());
                    }
                }
            }
            ARRAY
        }
        Value::Gcra(_) => return Err(refuse(rec, t, "GCRA state (a build option of Redis 8.10)")),
    })
}

/// A list's quicklist nodes as listpacks, in order: at most 8 KiB each, each holding at
/// least one element, as quicklists do.
pub(super) fn listpack_nodes<'a, E>(
    items: impl IntoIterator<Item = &'a [u8]>,
    mut emit: impl FnMut(Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
    let mut lp = Listpack::new();
    for it in items {
        if !lp.is_empty() && lp.bytes() + it.len() + 11 > th::LIST_NODE_BYTES {
            emit(std::mem::take(&mut lp).finish())?;
        }
        lp.push(it);
    }
    if !lp.is_empty() {
        emit(lp.finish())?;
    }
    Ok(())
}

fn list(buf: &mut Vec<u8>, items: &[Vec<u8>], t: &Target, o: WriteOptions) -> u8 {
    let mut nodes: Vec<Vec<u8>> = Vec::new();
    if t.listpacks() {
        let _ = listpack_nodes::<()>(items.iter().map(|x| &x[..]), |n| {
            nodes.push(n);
            Ok(())
        });
        encode::len(buf, nodes.len() as u64);
        for n in &nodes {
            encode::len(buf, 2); // PACKED container
            encode::string(buf, n, o.compress);
        }
        LIST_QUICKLIST_2
    } else {
        let mut zl = Ziplist::new();
        for it in items {
            if !zl.is_empty() && zl.bytes() + it.len() + 11 > th::LIST_NODE_BYTES {
                nodes.push(std::mem::take(&mut zl).finish());
            }
            zl.push(it);
        }
        if !zl.is_empty() {
            nodes.push(zl.finish());
        }
        encode::len(buf, nodes.len() as u64);
        for n in &nodes {
            encode::string(buf, n, o.compress);
        }
        LIST_QUICKLIST
    }
}

fn set(buf: &mut Vec<u8>, members: &[Vec<u8>], t: &Target, o: WriteOptions) -> u8 {
    if members.len() <= th::SET_MAX_INTSET_ENTRIES {
        let ints: Option<Vec<i64>> = members.iter().map(|m| canonical_int(m)).collect();
        if let Some(mut ints) = ints {
            ints.sort_unstable();
            ints.dedup();
            encode::string(buf, &intset(&ints), o.compress);
            return SET_INTSET;
        }
    }
    if t.set_listpack()
        && members.len() <= th::SET_MAX_LISTPACK_ENTRIES
        && members
            .iter()
            .all(|m| m.len() <= th::SET_MAX_LISTPACK_VALUE)
    {
        let mut lp = Listpack::new();
        for m in members {
            lp.push(m);
        }
        encode::string(buf, &lp.finish(), o.compress);
        return SET_LISTPACK;
    }
    encode::len(buf, members.len() as u64);
    for m in members {
        encode::string(buf, m, o.compress);
    }
    SET
}

fn zset(
    buf: &mut Vec<u8>,
    pairs: &[(Vec<u8>, f64)],
    source_type: Option<u8>,
    t: &Target,
    o: WriteOptions,
) -> u8 {
    let source_plain = matches!(source_type, Some(ZSET | ZSET_2));
    let mut sorted: Vec<&(Vec<u8>, f64)> = pairs.iter().collect();
    // The servers' order: by score, then member bytes (-0 and 0 compare equal).
    sorted.sort_by(|a, b| {
        a.1.partial_cmp(&b.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.0.cmp(&b.0))
    });
    if !source_plain
        && pairs.len() <= th::ZSET_MAX_LISTPACK_ENTRIES
        && pairs
            .iter()
            .all(|(m, _)| m.len() <= th::ZSET_MAX_LISTPACK_VALUE)
    {
        let blob = if t.listpacks() {
            let mut lp = Listpack::new();
            for (m, s) in &sorted {
                lp.push(m);
                lp.push(&encode::score_text(*s, t));
            }
            lp.finish()
        } else {
            let mut zl = Ziplist::new();
            for (m, s) in &sorted {
                zl.push(m);
                zl.push(&encode::score_text(*s, t));
            }
            zl.finish()
        };
        encode::string(buf, &blob, o.compress);
        return if t.listpacks() {
            ZSET_LISTPACK
        } else {
            ZSET_ZIPLIST
        };
    }
    // Highest first, as the servers write skiplists, so loading inserts at the head.
    encode::len(buf, pairs.len() as u64);
    for (m, s) in sorted.iter().rev() {
        encode::string(buf, m, o.compress);
        encode::binary_double(buf, *s);
    }
    ZSET_2
}

fn hash(
    buf: &mut Vec<u8>,
    fields: &[HashField],
    rec: &KeyRecord,
    t: &Target,
    o: WriteOptions,
) -> Result<u8, WriteError> {
    let small = fields.len() <= th::HASH_MAX_LISTPACK_ENTRIES
        && fields.iter().all(|f| {
            f.field.len() <= th::HASH_MAX_LISTPACK_VALUE
                && f.value.len() <= th::HASH_MAX_LISTPACK_VALUE
        });
    let with_ttl = fields.iter().any(|f| f.expire_ms.is_some());
    if !with_ttl {
        if small {
            let blob = if t.listpacks() {
                let mut lp = Listpack::new();
                for f in fields {
                    lp.push(&f.field);
                    lp.push(&f.value);
                }
                lp.finish()
            } else {
                let mut zl = Ziplist::new();
                for f in fields {
                    zl.push(&f.field);
                    zl.push(&f.value);
                }
                zl.finish()
            };
            encode::string(buf, &blob, o.compress);
            return Ok(if t.listpacks() {
                HASH_LISTPACK
            } else {
                HASH_ZIPLIST
            });
        }
        encode::len(buf, fields.len() as u64);
        for f in fields {
            encode::string(buf, &f.field, o.compress);
            encode::string(buf, &f.value, o.compress);
        }
        return Ok(HASH);
    }
    match t.hash_ttl() {
        None => Err(refuse(rec, t, "hash field TTLs (Redis 7.4+, Valkey 9.0+)")),
        Some(HashTtlFormat::Valkey) => {
            encode::len(buf, fields.len() as u64);
            for f in fields {
                encode::string(buf, &f.field, o.compress);
                encode::string(buf, &f.value, o.compress);
                encode::ms_time(buf, f.expire_ms.map_or(-1, |e| e as i64));
            }
            Ok(T22)
        }
        Some(HashTtlFormat::Redis) => {
            let min = fields.iter().filter_map(|f| f.expire_ms).min().unwrap_or(0);
            encode::ms_time(buf, min as i64);
            if small {
                // Ordered by expiry, fields without one last, as the server keeps them.
                let mut sorted: Vec<&HashField> = fields.iter().collect();
                sorted.sort_by_key(|f| f.expire_ms.unwrap_or(u64::MAX));
                let mut lp = Listpack::new();
                for f in sorted {
                    lp.push(&f.field);
                    lp.push(&f.value);
                    lp.push_int(f.expire_ms.map_or(0, |e| e as i64));
                }
                encode::string(buf, &lp.finish(), o.compress);
                Ok(HASH_LISTPACK_EX)
            } else {
                encode::len(buf, fields.len() as u64);
                for f in fields {
                    encode::len(buf, f.expire_ms.map_or(0, |e| e - min + 1));
                    encode::string(buf, &f.field, o.compress);
                    encode::string(buf, &f.value, o.compress);
                }
                Ok(HASH_METADATA)
            }
        }
    }
}
