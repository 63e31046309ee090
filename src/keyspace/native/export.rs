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
//!
//! A snapshot's walker owns what it walks: [`write_owned`] takes a set, hash or sorted set
//! by value and lets go of each chunk (leaf) as soon as it is written, so the live value,
//! which shares those chunks until it changes them, changes a chunk the walk has passed in
//! place instead of copying it, and a chunk it already copied is freed at once.

use std::io::Write;
use std::sync::Arc;

use super::{Native, NativeEntry};
use crate::digest::{elements, Acc, Rules};
use crate::rdb::types::{HASH, SET, ZSET_2};
use crate::rdb::writer::target::thresholds as th;
use crate::rdb::writer::{KeyRecord, RdbWriter, Target, WriteError};

/// Whether [`write_owned`] writes `value` chunk by chunk, letting go as it goes (sets,
/// hashes, sorted sets); the others are written with [`write`] from a shared handle.
pub fn releases(value: &Native) -> bool {
    matches!(value, Native::Set(_) | Native::Hash(_) | Native::ZSet(_))
}

/// Whether [`write`] writes `value` itself for `target` (else the decoded path does).
pub fn writes_natively(value: &Native, target: &Target) -> bool {
    match value {
        Native::Set(m) => m.len() > th::SET_MAX_INTSET_ENTRIES,
        Native::Hash(m) => {
            m.len() > th::HASH_MAX_LISTPACK_ENTRIES && m.iter().all(|r| r.ttl().is_none())
        }
        Native::ZSet(z) => z.len() > th::ZSET_MAX_LISTPACK_ENTRIES,
        Native::List(_) => target.listpacks(),
        Native::Stream(_) => true,
    }
}

/// The walker's own copy of a key it holds: the entry itself when nothing else holds it,
/// else a copy of its handles (the chunks stay shared), the shared handle let go.
pub fn own(n: Arc<NativeEntry>) -> NativeEntry {
    Arc::try_unwrap(n).unwrap_or_else(|n| NativeEntry::clone(&n))
}

/// Like [`write`], consuming the value: a set, hash or sorted set is written chunk by
/// chunk and each chunk let go once written (a sorted set's member map at once: only its
/// order is written). `Ok(Err(value))` gives the value back where the decoded path
/// writes it (the same cases as [`write`]'s `Ok(false)`).
pub fn write_owned<W: Write>(
    w: &mut RdbWriter<W>,
    rec: &KeyRecord,
    value: Native,
) -> Result<Result<(), Native>, WriteError> {
    if !writes_natively(&value, &w.target()) {
        return Ok(Err(value));
    }
    match value {
        Native::Set(m) => {
            w.key_start(rec, SET)?;
            w.put_len(m.len() as u64)?;
            m.visit_releasing(|x| w.put_string(&x.0))?;
        }
        Native::Hash(m) => {
            w.key_start(rec, HASH)?;
            w.put_len(m.len() as u64)?;
            m.visit_releasing(|r| {
                w.put_string(r.field())?;
                w.put_string(r.value())
            })?;
        }
        Native::ZSet(z) => {
            w.key_start(rec, ZSET_2)?;
            w.put_len(z.len() as u64)?;
            z.into_order().visit_rev_releasing(|score, member| {
                w.put_string(member)?;
                w.put_double(score)
            })?;
        }
        other => {
            let written = write(w, rec, &other)?;
            debug_assert!(written, "writes_natively said so");
        }
    }
    Ok(Ok(()))
}

/// Write the key from its native value if the decoded path would write the same bytes;
/// `Ok(false)`: the caller writes the decoded value instead.
pub fn write<W: Write>(
    w: &mut RdbWriter<W>,
    rec: &KeyRecord,
    value: &Native,
) -> Result<bool, WriteError> {
    if !writes_natively(value, &w.target()) {
        return Ok(false);
    }
    match value {
        Native::Set(m) => {
            w.key_start(rec, SET)?;
            w.put_len(m.len() as u64)?;
            for x in m.iter() {
                w.put_string(&x.0)?;
            }
        }
        Native::Hash(m) => {
            w.key_start(rec, HASH)?;
            w.put_len(m.len() as u64)?;
            for r in m.iter() {
                w.put_string(r.field())?;
                w.put_string(r.value())?;
            }
        }
        Native::ZSet(z) => {
            // Highest first, as the servers write skiplists.
            w.key_start(rec, ZSET_2)?;
            w.put_len(z.len() as u64)?;
            for (score, member) in z.order().iter().rev() {
                w.put_string(member)?;
                w.put_double(score)?;
            }
        }
        Native::List(l) => w.key_list(rec, || l.iter())?,
        // Streams are written node for node from the native nodes (the same entries,
        // nodes within the servers' limits, but not always packed as full as a decoded
        // stream's): a big stream is never decoded whole.
        Native::Stream(s) => w.key_stream(rec, &s.head, s.log.first_id(), s.log.nodes())?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdb::writer::WriteOptions;
    use crate::rdb::Value;

    /// An output that notes, at every flush, how many chunks (leaves) of the live value a
    /// write would still have to copy.
    struct Probe<F: Fn() -> usize> {
        shared: F,
        seen: Vec<usize>,
        bytes: Vec<u8>,
    }

    impl<F: Fn() -> usize> Write for Probe<F> {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.seen.push((self.shared)());
            self.bytes.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn rdb<W: Write>(out: W, value: Result<&Native, Native>) -> (W, bool) {
        let target = Target::for_server("redis-7.0".parse().unwrap()).unwrap();
        let mut w = RdbWriter::new(out, target, WriteOptions::default()).unwrap();
        let placeholder = Value::String(Vec::new());
        let rec = KeyRecord {
            key: b"big",
            value: &placeholder,
            expire_ms: None,
            idle: None,
            freq: None,
            meta: &[],
            source_type: None,
        };
        let native = match value {
            Ok(v) => write(&mut w, &rec, v).unwrap(),
            Err(v) => write_owned(&mut w, &rec, v).unwrap().is_ok(),
        };
        (w.finish().unwrap().0, native)
    }

    /// While a snapshot writes a value it owns, the live value it shares chunks with holds
    /// fewer and fewer shared chunks (a write to a written one copies nothing), and the
    /// bytes are those the shared-handle path writes.
    fn lets_go_while_written(live: Native, shared: impl Fn(&Native) -> usize) {
        let total = shared(&live);
        assert_eq!(total, 0);
        let (want, native) = rdb(Vec::new(), Ok(&live));
        assert!(native);
        let view = live.clone();
        let all = shared(&live);
        assert!(all > 8, "a value of several chunks");
        let probe = Probe {
            shared: || shared(&live),
            seen: Vec::new(),
            bytes: Vec::new(),
        };
        let (probe, native) = rdb(probe, Err(view));
        assert!(native);
        assert_eq!(probe.bytes, want, "the same bytes");
        let seen = probe.seen;
        assert!(seen.windows(2).all(|w| w[1] <= w[0]), "{seen:?}");
        let between = seen.iter().filter(|&&n| n > 0 && n < all).count();
        assert!(between >= 3, "let go of chunk by chunk: {seen:?}");
        assert_eq!(shared(&live), 0, "a write copies nothing now");
    }

    #[test]
    fn sets_hashes_and_sorted_sets_are_let_go_of_as_they_are_written() {
        let members = |i: u32| format!("member:{i}").into_bytes();
        let v = Value::Set((0..200_000).map(members).collect());
        lets_go_while_written(Native::from_value(&v, true).unwrap(), |n| match n {
            Native::Set(m) => m.shared_chunks(),
            _ => unreachable!(),
        });
        let v = Value::Hash(
            (0..100_000)
                .map(|i| crate::rdb::value::HashField {
                    field: members(i),
                    value: format!("value-{}", i * 7).into_bytes(),
                    expire_ms: None,
                })
                .collect(),
        );
        lets_go_while_written(Native::from_value(&v, true).unwrap(), |n| match n {
            Native::Hash(m) => m.shared_chunks(),
            _ => unreachable!(),
        });
        let v = Value::SortedSet(
            (0..100_000)
                .map(|i| (members(i), f64::from(i % 1009) * 0.5))
                .collect(),
        );
        lets_go_while_written(Native::from_value(&v, true).unwrap(), |n| match n {
            // The member map at once (a snapshot writes only the order), then leaf by leaf.
            Native::ZSet(z) => z.dict.shared_chunks() + z.order().shared_leaves(),
            _ => unreachable!(),
        });
    }
}
