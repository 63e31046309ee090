//! Keys whose values the reader only framed ([`crate::rdb::Framed::Encoded`]), made ready
//! for the digest on a worker thread without building a decoded value: a string's bytes
//! stay in the framed buffer (moved to its front), and a collection's elements are
//! digested where they lie in its encoding.
//!
//! Owns the choice between that and decoding. It must give exactly the digest and the
//! errors a decoded value gives: whatever [`crate::rdb::view`] declines (an encoding it
//! does not read, or a value that is damaged) is decoded by [`decode_value`], whose
//! error is the reader's.

use crate::rdb::packed::Elem;
use crate::rdb::types::{
    HASH, HASH_LISTPACK, HASH_ZIPLIST, LIST, LIST_QUICKLIST, LIST_QUICKLIST_2, LIST_ZIPLIST,
    STRING, ZSET_LISTPACK, ZSET_ZIPLIST,
};
use crate::rdb::view;
use crate::rdb::{decode_value, Dialect, KeyEntry, RdbError};

use super::elements;
use super::mix::{mix_in, Acc};
use super::target::Rules;

/// What a framed key became.
pub(super) enum Ready {
    /// Its value is in `key.value`: digest it with the others.
    Decoded,
    /// A collection whose digest (its name, type and elements; no expiry mark) was
    /// computed; `None`: it is empty, and the server drops it.
    Body(Option<Acc>),
}

/// Make a framed key ready: its value `encoded` started at file offset `value_at`.
pub(super) fn ready(
    k: &mut KeyEntry,
    value_at: u64,
    mut encoded: Vec<u8>,
    rules: &Rules,
    now_ms: i64,
) -> Result<Ready, RdbError> {
    let ty = k.rdb_type;
    if ty == STRING {
        match view::string_value(ty, encoded) {
            Ok(v) => {
                k.value = v;
                return Ok(Ready::Decoded);
            }
            Err(e) => encoded = e,
        }
    } else if view::viewed(ty) {
        let elems = view::pieces(ty, &encoded).and_then(|p| {
            let e = p.elements()?;
            Some(body(&e, ty, rules, now_ms, &k.key))
        });
        if let Some(b) = elems {
            return Ok(Ready::Body(b));
        }
    }
    // The framed types mean the same in both dialects.
    k.value = decode_value(ty, &encoded, Dialect::Redis).map_err(|mut e| {
        e.offset += value_at;
        e.with_key(&k.key)
    })?;
    Ok(Ready::Decoded)
}

/// The digest of key `name` holding a collection of these elements, without the expiry
/// mark (`None`: there are none).
fn body(elems: &[Elem<'_>], ty: u8, rules: &Rules, now_ms: i64, name: &[u8]) -> Option<Acc> {
    if elems.is_empty() {
        return None;
    }
    let mut acc = [0u8; 20];
    mix_in(&mut acc, name);
    let a = &mut acc;
    with_texts(elems, |t| match ty {
        LIST | LIST_ZIPLIST | LIST_QUICKLIST | LIST_QUICKLIST_2 => {
            elements::list(a, t.iter().copied())
        }
        HASH | HASH_ZIPLIST | HASH_LISTPACK => elements::hash(
            a,
            rules,
            now_ms,
            t.chunks_exact(2).map(|p| (p[0], p[1], None)),
        ),
        ZSET_ZIPLIST | ZSET_LISTPACK => {
            let members = elems.chunks_exact(2).zip(t.chunks_exact(2));
            elements::zset(
                a,
                rules,
                ty,
                elems.len() / 2,
                t.chunks_exact(2).map(|p| p[0].len()).max().unwrap_or(0),
                // Scores were checked by the view: numbers, not NaN.
                members.map(|(e, t)| (t[0], e[1].as_f64().unwrap_or(0.0))),
            )
        }
        _ => elements::set(a, t.iter().copied()),
    });
    Some(acc)
}

/// An integer as decimal text, without allocating.
struct IntText {
    buf: [u8; 20],
    start: u8,
}

impl IntText {
    fn new(i: i64) -> Self {
        let mut buf = [0u8; 20];
        let mut n = i.unsigned_abs();
        let mut p = buf.len();
        loop {
            p -= 1;
            buf[p] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        if i < 0 {
            p -= 1;
            buf[p] = b'-';
        }
        IntText {
            buf,
            start: p as u8,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start as usize..]
    }
}

/// The elements as the text a server digests (integers printed), handed to `f`.
fn with_texts<R>(elems: &[Elem<'_>], f: impl FnOnce(&[&[u8]]) -> R) -> R {
    let ints: Vec<IntText> = elems
        .iter()
        .filter_map(|e| match e {
            Elem::Int(i) => Some(IntText::new(*i)),
            Elem::Str(_) => None,
        })
        .collect();
    let mut next = ints.iter();
    let texts: Vec<&[u8]> = elems
        .iter()
        .map(|e| match e {
            Elem::Str(s) => *s,
            Elem::Int(_) => next.next().map_or(&[][..], IntText::as_bytes),
        })
        .collect();
    f(&texts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdb::value::HashField;
    use crate::rdb::writer::{encode_value, KeyRecord, Target, WriteOptions};
    use crate::rdb::{KeyEntry, Value};

    fn entry(ty: u8, value: Value) -> KeyEntry {
        KeyEntry {
            db: 0,
            key: b"k".to_vec(),
            expire_ms: None,
            idle: None,
            freq: None,
            meta: Vec::new(),
            rdb_type: ty,
            value,
            offset: 0,
        }
    }

    /// Values in every encoding the framed types have, as three server versions write them.
    fn samples() -> Vec<(u8, Vec<u8>)> {
        let long = "abc".repeat(40);
        let strs = |n: usize| -> Vec<Vec<u8>> {
            (0..n)
                .map(|i| match i % 3 {
                    0 => format!("e{i}").into_bytes(),
                    1 => (i as i64 * 977 - 5000).to_string().into_bytes(),
                    _ => format!("{long}{i}").into_bytes(),
                })
                .collect()
        };
        let mut values = vec![
            Value::String(b"plain".to_vec()),
            Value::String(b"-12345".to_vec()),
            Value::String(long.clone().into_bytes()),
            Value::String(Vec::new()),
        ];
        for n in [3, 200] {
            values.push(Value::List(strs(n)));
            values.push(Value::Set(strs(n)));
            values.push(Value::Set(
                (0..n).map(|i| (i * 3).to_string().into_bytes()).collect(),
            ));
            values.push(Value::Hash(
                strs(n)
                    .into_iter()
                    .zip(strs(n).into_iter().rev())
                    .map(|(f, v)| HashField {
                        field: f,
                        value: v,
                        expire_ms: None,
                    })
                    .collect(),
            ));
            let scores = [1.5, 3.0, -0.0, f64::INFINITY, -2e17, 0.1];
            values.push(Value::SortedSet(
                strs(n)
                    .into_iter()
                    .enumerate()
                    .map(|(i, m)| (m, scores[i % scores.len()]))
                    .collect(),
            ));
        }
        let mut out = packed_samples();
        for server in ["redis-6.2.0", "redis-7.0.0", "valkey-8.1.0"] {
            let target = Target::for_server(server.parse().expect("version")).expect("target");
            for v in &values {
                let e = entry(0, v.clone());
                let rec = KeyRecord {
                    source_type: None,
                    ..KeyRecord::from(&e)
                };
                out.push(encode_value(&rec, &target, WriteOptions::default()).expect("encode"));
            }
        }
        out
    }

    /// An RDB string holding `b` as it is.
    fn rdb_string(b: &[u8]) -> Vec<u8> {
        let n = b.len();
        let mut out = if n < 64 {
            vec![n as u8]
        } else if n < 16384 {
            vec![0x40 | (n >> 8) as u8, n as u8]
        } else {
            let mut v = vec![0x80];
            v.extend_from_slice(&(n as u32).to_be_bytes());
            v
        };
        out.extend_from_slice(b);
        out
    }

    /// Listpacks and ziplists of each packed type, as servers write them (the writer
    /// writes plain encodings and lets the target pack them).
    fn packed_samples() -> Vec<(u8, Vec<u8>)> {
        use crate::rdb::types::*;
        use crate::rdb::writer::packed::{Listpack, Ziplist};
        let elems: Vec<Vec<u8>> = ["a", "17", "-3", "1.5", "bb", "0", "inf", "-2"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        let mut out = Vec::new();
        for n in [2usize, 8] {
            let mut lp = Listpack::new();
            let mut zl = Ziplist::new();
            for e in &elems[..n] {
                lp.push(e);
                zl.push(e);
            }
            let (lp, zl) = (rdb_string(&lp.finish()), rdb_string(&zl.finish()));
            for ty in [HASH_LISTPACK, ZSET_LISTPACK, SET_LISTPACK] {
                out.push((ty, lp.clone()));
            }
            for ty in [LIST_ZIPLIST, HASH_ZIPLIST, ZSET_ZIPLIST] {
                out.push((ty, zl.clone()));
            }
            // Quicklists: two packed nodes, and (v2) a plain node between them.
            let mut q1 = vec![2u8];
            q1.extend_from_slice(&zl);
            q1.extend_from_slice(&zl);
            out.push((LIST_QUICKLIST, q1));
            let mut q2 = vec![3u8, 2];
            q2.extend_from_slice(&lp);
            q2.push(1);
            q2.extend_from_slice(&rdb_string(b"plain node"));
            q2.push(2);
            q2.extend_from_slice(&lp);
            out.push((LIST_QUICKLIST_2, q2));
        }
        out
    }

    /// The digest (or the refusal) of a framed value read in place, and by the decoder.
    fn both(ty: u8, enc: &[u8], rules: &Rules) -> (Option<Option<Acc>>, Option<Option<Acc>>) {
        let mut k = entry(ty, Value::String(Vec::new()));
        let in_place = ready(&mut k, 0, enc.to_vec(), rules, 0)
            .ok()
            .map(|r| match r {
                Ready::Body(b) => b,
                Ready::Decoded => super::super::value::key_digest(rules, &k, 0).expect("digest"),
            });
        let decoded = decode_value(ty, enc, Dialect::Redis).ok().map(|v| {
            let k = entry(ty, v);
            super::super::value::key_digest(rules, &k, 0).expect("digest")
        });
        (in_place, decoded)
    }

    #[test]
    fn in_place_and_decoded_agree_even_on_damaged_values() {
        let rules = Rules::for_target("redis-7.0.0".parse().expect("version")).expect("rules");
        let samples = samples();
        let mut types = std::collections::BTreeSet::new();
        let mut refused = 0;
        for (ty, enc) in &samples {
            types.insert(*ty);
            let (a, b) = both(*ty, enc, &rules);
            assert!(a.is_some(), "type {ty}: a sound value is read");
            assert_eq!(a, b, "type {ty}");
            // Every byte damaged three ways, and every truncation (of a big value, a
            // sample of them spread over it).
            for at in (0..enc.len()).step_by((enc.len() / 500).max(1)) {
                for mask in [0x01u8, 0x80, 0xff] {
                    let mut bad = enc.clone();
                    bad[at] ^= mask;
                    let (a, b) = both(*ty, &bad, &rules);
                    assert_eq!(a, b, "type {ty}, byte {at} ^ {mask:#x}");
                    refused += usize::from(a.is_none());
                }
                let (a, b) = both(*ty, &enc[..at], &rules);
                assert_eq!(a, b, "type {ty}, cut at {at}");
            }
        }
        // Plain, packed (ziplist, listpack, intset) and quicklist encodings all came by.
        for ty in [0, 2, 4, 10, 11, 12, 13, 14, 16, 17, 18, 20] {
            assert!(types.contains(&ty), "no sample of type {ty}: {types:?}");
        }
        assert!(refused > 1000, "damage was refused only {refused} times");
    }

    #[test]
    fn integers_print_as_the_server_prints_them() {
        for i in [0, 7, -1, 10, -10, 123_456_789, i64::MAX, i64::MIN] {
            assert_eq!(IntText::new(i).as_bytes(), i.to_string().as_bytes());
        }
    }
}
