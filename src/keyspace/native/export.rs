//! A native value into an RDB file and into `DEBUG DIGEST`, element by element.
//!
//! Owns the choice of writing a big value straight from its chunks, in exactly the bytes
//! the decoded path would write (plain encodings: sets past the intset size, hashes past
//! the listpack size without field TTLs, sorted sets past the listpack size highest first,
//! lists as quicklists of listpacks), so a snapshot never builds a decoded copy of a big
//! value. It must never write something the decoded path would write differently: where it
//! would (small values, field TTLs, targets before listpacks), it declines and the caller
//! writes the decoded value. Streams are the one exception: their nodes are written as
//! they are held (the same entries and metadata; node boundaries may differ after
//! deletions, which no server reads as data).

use std::io::Write;

use super::{Native, NativeEntry};
use crate::digest::{elements, Acc, Rules};
use crate::rdb::types::{HASH, SET, ZSET_2};
use crate::rdb::writer::target::thresholds as th;
use crate::rdb::writer::{KeyRecord, RdbWriter, WriteError};

/// Write the key from its native value if the decoded path would write the same bytes;
/// `Ok(false)`: the caller writes the decoded value instead.
pub fn write<W: Write>(
    w: &mut RdbWriter<W>,
    rec: &KeyRecord,
    value: &Native,
) -> Result<bool, WriteError> {
    match value {
        Native::Set(m) if m.len() > th::SET_MAX_INTSET_ENTRIES => {
            w.key_start(rec, SET)?;
            w.put_len(m.len() as u64)?;
            for x in m.iter() {
                w.put_string(&x.0)?;
            }
        }
        Native::Hash(m)
            if m.len() > th::HASH_MAX_LISTPACK_ENTRIES && m.iter().all(|r| r.ttl().is_none()) =>
        {
            w.key_start(rec, HASH)?;
            w.put_len(m.len() as u64)?;
            for r in m.iter() {
                w.put_string(r.field())?;
                w.put_string(r.value())?;
            }
        }
        Native::ZSet(z) if z.len() > th::ZSET_MAX_LISTPACK_ENTRIES => {
            // Highest first, as the servers write skiplists.
            w.key_start(rec, ZSET_2)?;
            w.put_len(z.len() as u64)?;
            for (score, member) in z.order().iter().rev() {
                w.put_string(member)?;
                w.put_double(score)?;
            }
        }
        Native::List(l) if w.target().listpacks() => w.key_list(rec, || l.iter())?,
        // Streams are written node for node from the native nodes (the same entries,
        // nodes within the servers' limits, but not always packed as full as a decoded
        // stream's): a big stream is never decoded whole.
        Native::Stream(s) => w.key_stream(rec, &s.head, s.log.first_id(), s.log.nodes())?,
        _ => return Ok(false),
    }
    Ok(true)
}

/// The key's `DEBUG DIGEST` part under `rules` at `now_ms`; `None` when a server loading it
/// drops the key (expired, or every field expired where fields are dropped on load).
pub fn digest(n: &NativeEntry, rules: &Rules, now_ms: i64) -> Option<Acc> {
    if matches!(n.hints.expire_ms, Some(t) if t < now_ms) || n.value.is_empty() {
        return None;
    }
    if let Native::Hash(m) = &n.value {
        if rules.drops_expired_fields && !m.iter().any(|r| elements::field_alive(r.ttl(), now_ms)) {
            return None;
        }
    }
    Some(elements::key(&n.key, n.hints.expire_ms, |acc| {
        match &n.value {
            Native::Set(m) => elements::set(acc, m.iter().map(|x| &x.0[..])),
            Native::List(l) => elements::list(acc, l.iter()),
            Native::Stream(s) => elements::stream(acc, s.log.iter()),
            Native::Hash(m) => elements::hash(
                acc,
                rules,
                now_ms,
                m.iter().map(|r| (r.field(), r.value(), r.ttl())),
            ),
            Native::ZSet(z) => {
                let longest = z.order().iter().map(|(_, m)| m.len()).max().unwrap_or(0);
                elements::zset(
                    acc,
                    rules,
                    ZSET_2,
                    z.len(),
                    longest,
                    z.order().iter().map(|(s, m)| (m, s)),
                )
            }
        }
    }))
}

/// The type name `TYPE` answers.
pub fn type_name(value: &Native) -> &'static str {
    match value {
        Native::Set(_) => "set",
        Native::Hash(_) => "hash",
        Native::ZSet(_) => "zset",
        Native::List(_) => "list",
        Native::Stream(_) => "stream",
    }
}
