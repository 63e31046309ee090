//! Keys whose values the reader only framed ([`crate::rdb::Framed::Encoded`]), made ready
//! for the digest on a worker thread without building a decoded value: a string's bytes
//! stay in the framed buffer (moved to its front), and a collection's elements are
//! digested where they lie in its encoding — the collections of a batch together, so that
//! their hashes fill the wide SHA-1 lanes ([`super::sha1x`]): names and types side by
//! side, and the element chains of short lists stepped in lockstep (a list's chain is a
//! sequence of dependent hashes; one list alone leaves the lanes empty).
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

use super::elements::{self, OBJ_HASH, OBJ_LIST, OBJ_SET, OBJ_STRING, OBJ_ZSET};
use super::mix::{xor_raw, Acc, KNOWN};
use super::sha1x::{rehash_batch, sha1_batch};
use super::target::Rules;

/// Lists up to this long have their chains stepped together with the batch's other lists;
/// longer ones are chained alone (their element hashes are not all held at once).
const LOCKSTEP_MAX: usize = 256;

/// Sets, hashes and sorted sets up to this many elements have their elements hashed
/// together with the pass's other keys'; bigger ones alone, a chunk at a time (no
/// second list of their elements is built).
const TOGETHER_MAX: usize = 1024;

/// A framed key of a type [`view::viewed`] reads: its value starts at file offset `at`.
pub(super) struct Col {
    pub key: Box<KeyEntry>,
    pub at: u64,
    pub bytes: Vec<u8>,
}

/// A framed key made ready on its own: a string (or a value the view does not read) is
/// decoded into `k.value` (`Ok(None)`); a collection's bytes are given back to be digested
/// with others ([`collections`]).
pub(super) fn prepare(
    k: &mut KeyEntry,
    value_at: u64,
    mut encoded: Vec<u8>,
) -> Result<Option<Vec<u8>>, RdbError> {
    let ty = k.rdb_type;
    if ty == STRING {
        match view::string_value(ty, encoded) {
            Ok(v) => {
                k.value = v;
                return Ok(None);
            }
            Err(e) => encoded = e,
        }
    } else if view::viewed(ty) {
        return Ok(Some(encoded));
    }
    decode(k, value_at, &encoded)?;
    Ok(None)
}

/// Decode a framed value into `k.value`; an error placed in the file.
fn decode(k: &mut KeyEntry, value_at: u64, encoded: &[u8]) -> Result<(), RdbError> {
    // The framed types mean the same in both dialects.
    k.value = decode_value(k.rdb_type, encoded, Dialect::Redis).map_err(|mut e| {
        e.offset += value_at;
        e.with_key(&k.key)
    })?;
    Ok(())
}

/// What [`collections`] made of a batch's framed collections.
pub(super) struct Digested {
    /// Keys and their digests without the expiry mark (`None`: empty, the server drops
    /// it), in file order.
    pub bodies: Vec<(Box<KeyEntry>, Option<Acc>)>,
    /// Keys the view declined, decoded into `key.value` (boxed as the reader gave them).
    #[allow(clippy::vec_box)]
    pub decoded: Vec<Box<KeyEntry>>,
    /// The first key that did not decode, at its offset (the keys after it are left out).
    pub failed: Option<(u64, RdbError)>,
}

/// Digest framed collections (in file order) together.
pub(super) fn collections(cols: Vec<Col>, rules: &Rules, now_ms: i64) -> Digested {
    let (mut keys, bufs): (Vec<_>, Vec<_>) =
        cols.into_iter().map(|c| (c.key, (c.at, c.bytes))).unzip();
    let pieces: Vec<_> = keys
        .iter()
        .zip(&bufs)
        .map(|(k, (_, b))| view::pieces(k.rdb_type, b))
        .collect();
    let mut viewed = Vec::new();
    let mut decoded = Vec::new();
    let mut failed = None;
    for (i, p) in pieces.iter().enumerate() {
        match p.as_ref().and_then(|p| p.elements()) {
            Some(e) => viewed.push((i, e)),
            None => {
                let (at, b) = &bufs[i];
                if let Err(e) = decode(&mut keys[i], *at, b) {
                    failed = Some((keys[i].offset, e));
                    keys.truncate(i);
                    viewed.retain(|(j, _)| *j < i);
                    break;
                }
                decoded.push(i);
            }
        }
    }
    let items: Vec<(&[u8], u8, &[Elem<'_>])> = viewed
        .iter()
        .map(|(i, e)| (&keys[*i].key[..], keys[*i].rdb_type, &e[..]))
        .collect();
    let accs = digest_many(&items, rules, now_ms);
    drop(items);
    let mut slots: Vec<Option<Option<Acc>>> = vec![None; keys.len()];
    for ((i, _), a) in viewed.iter().zip(accs) {
        slots[*i] = Some(a);
    }
    let mut out = Digested {
        bodies: Vec::with_capacity(viewed.len()),
        decoded: Vec::with_capacity(decoded.len()),
        failed,
    };
    drop(viewed);
    for (k, slot) in keys.into_iter().zip(slots) {
        match slot {
            Some(body) => out.bodies.push((k, body)),
            None => out.decoded.push(k),
        }
    }
    out
}

/// The type a server gives a value of this RDB type, for its digest.
fn obj_of(ty: u8) -> u32 {
    match ty {
        STRING => OBJ_STRING,
        LIST | LIST_ZIPLIST | LIST_QUICKLIST | LIST_QUICKLIST_2 => OBJ_LIST,
        HASH | HASH_ZIPLIST | HASH_LISTPACK => OBJ_HASH,
        ZSET_ZIPLIST | ZSET_LISTPACK => OBJ_ZSET,
        _ => OBJ_SET,
    }
}

/// Elements digested together at most (a key with more is digested alone): the pass's
/// buffers stay small enough for the allocator to reuse (a whole batch's texts at once
/// were large allocations, each freshly faulted in: 8 % of verify in the kernel).
const PASS_ELEMENTS: usize = 2048;

/// The digests of keys (name, RDB type, elements), without the expiry mark (`None`: no
/// elements). A string is its one element, mixed in as a list's would be.
pub(super) fn digest_many(
    items: &[(&[u8], u8, &[Elem<'_>])],
    rules: &Rules,
    now_ms: i64,
) -> Vec<Option<Acc>> {
    let mut out = Vec::with_capacity(items.len());
    let mut start = 0;
    while start < items.len() {
        let (mut end, mut n) = (start, 0);
        while end < items.len() && (end == start || n + items[end].2.len() <= PASS_ELEMENTS) {
            n += items[end].2.len();
            end += 1;
        }
        out.extend(digest_pass(&items[start..end], n, rules, now_ms));
        start = end;
    }
    out
}

/// [`digest_many`] of items holding `n` elements in all.
fn digest_pass(
    items: &[(&[u8], u8, &[Elem<'_>])],
    n: usize,
    rules: &Rules,
    now_ms: i64,
) -> Vec<Option<Acc>> {
    // The elements' text, integers printed: one arena for the pass.
    let mut ints: Vec<IntText> = Vec::with_capacity(n);
    for (_, _, elems) in items {
        for e in elems.iter() {
            if let Elem::Int(i) = e {
                ints.push(IntText::new(*i));
            }
        }
    }
    let mut next = ints.iter();
    let mut texts: Vec<&[u8]> = Vec::with_capacity(n);
    for (_, _, elems) in items {
        for e in elems.iter() {
            texts.push(match e {
                Elem::Str(s) => s,
                Elem::Int(_) => next.next().map_or(&[][..], IntText::as_bytes),
            });
        }
    }
    // mix_in(0, name) = SHA1(SHA1(name)), then the type mixed in: every key side by side.
    let names: Vec<&[u8]> = items.iter().map(|(n, _, _)| *n).collect();
    let mut acc = vec![[0u8; 20]; items.len()];
    sha1_batch(&names, &mut acc);
    rehash_batch(&mut acc);
    for (a, (_, ty, _)) in acc.iter_mut().zip(items) {
        xor_raw(a, &KNOWN.obj_type[obj_of(*ty) as usize]);
    }
    rehash_batch(&mut acc);
    let mut lists = Vec::new();
    // Set members and two-part elements of every key, hashed together after the loop;
    // a key too big for that is digested alone, a chunk at a time.
    let mut members: Vec<(usize, &[u8])> = Vec::new();
    let mut two: Vec<(usize, &[u8], &[u8], bool)> = Vec::new();
    let mut scores = String::new();
    let mut zs: Vec<(usize, &[u8], usize)> = Vec::new();
    let mut start = 0;
    for (i, (_, ty, elems)) in items.iter().enumerate() {
        let t = &texts[start..start + elems.len()];
        start += elems.len();
        let a = &mut acc[i];
        let alone = t.len() > TOGETHER_MAX;
        match *ty {
            STRING | LIST | LIST_ZIPLIST | LIST_QUICKLIST | LIST_QUICKLIST_2 => {
                if t.len() <= LOCKSTEP_MAX {
                    lists.push((i, t));
                } else {
                    elements::list_items(a, t.iter().copied());
                }
            }
            HASH | HASH_ZIPLIST | HASH_LISTPACK if alone => elements::hash_fields(
                a,
                rules,
                now_ms,
                t.chunks_exact(2).map(|p| (p[0], p[1], None)),
            ),
            // No field of these encodings has a TTL: no field dropped, none marked.
            HASH | HASH_ZIPLIST | HASH_LISTPACK => {
                two.extend(t.chunks_exact(2).map(|p| (i, p[0], p[1], false)))
            }
            ZSET_ZIPLIST | ZSET_LISTPACK => {
                let members = elems.chunks_exact(2).zip(t.chunks_exact(2));
                let len = elems.len() / 2;
                let longest = t.chunks_exact(2).map(|p| p[0].len()).max().unwrap_or(0);
                // Scores were checked by the view: numbers, not NaN.
                let members = members.map(|(e, t)| (t[0], e[1].as_f64().unwrap_or(0.0)));
                if alone {
                    elements::zset_members(a, rules, *ty, len, longest, members);
                } else {
                    let drop_sign = elements::zset_drops_sign(rules, *ty, len, longest);
                    for (m, score) in members {
                        elements::score_into(rules, drop_sign, score, &mut scores);
                        zs.push((i, m, scores.len()));
                    }
                }
            }
            _ if alone => elements::set_members(a, t.iter().copied()),
            _ => members.extend(t.iter().map(|m| (i, *m))),
        }
    }
    let mut from = 0;
    for (i, m, end) in zs {
        two.push((i, m, &scores.as_bytes()[from..end], false));
        from = end;
    }
    elements::pairs_of(&mut acc, &two);
    elements::set_members_of(&mut acc, &members);
    lockstep(&mut acc, &mut lists);
    items
        .iter()
        .zip(acc)
        .map(|((_, _, e), a)| (!e.is_empty()).then_some(a))
        .collect()
}

/// Mix each list's elements into its digest in order (`acc[i]` for list `(i, items)`), the
/// lists side by side: step `j` mixes element `j` of every list that long.
fn lockstep(acc: &mut [Acc], lists: &mut [(usize, &[&[u8]])]) {
    let all: Vec<&[u8]> = lists.iter().flat_map(|(_, t)| t.iter().copied()).collect();
    let mut hs = vec![[0u8; 20]; all.len()];
    sha1_batch(&all, &mut hs);
    // Each list's first element hash, then the longest first: the lists still going at
    // step j are a prefix.
    let mut at = Vec::with_capacity(lists.len());
    let mut off = 0;
    for (i, t) in lists.iter() {
        at.push((*i, off, t.len()));
        off += t.len();
    }
    at.sort_by_key(|a| std::cmp::Reverse(a.2));
    let mut live = at.len();
    let mut buf = Vec::with_capacity(at.len());
    for j in 0..at.first().map_or(0, |a| a.2) {
        while live > 0 && at[live - 1].2 <= j {
            live -= 1;
        }
        buf.clear();
        for &(i, off, _) in &at[..live] {
            let mut a = acc[i];
            xor_raw(&mut a, &hs[off + j]);
            buf.push(a);
        }
        rehash_batch(&mut buf);
        for (a, &(i, _, _)) in buf.iter().zip(&at[..live]) {
            acc[i] = *a;
        }
    }
}

/// An integer as decimal text, without allocating.
struct IntText {
    buf: [u8; 20],
    start: u8,
}

impl IntText {
    fn new(i: i64) -> Self {
        // Two digits at a time from a table of "00".."99".
        const PAIRS: [[u8; 2]; 100] = {
            let mut t = [[0u8; 2]; 100];
            let mut i = 0;
            while i < 100 {
                t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
                i += 1;
            }
            t
        };
        let mut buf = [0u8; 20];
        let mut n = i.unsigned_abs();
        let mut p = buf.len();
        while n >= 100 {
            p -= 2;
            buf[p..p + 2].copy_from_slice(&PAIRS[(n % 100) as usize]);
            n /= 100;
        }
        if n >= 10 {
            p -= 2;
            buf[p..p + 2].copy_from_slice(&PAIRS[n as usize]);
        } else {
            p -= 1;
            buf[p] = b'0' + n as u8;
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

    /// The digest of a framed key made ready here, or its refusal.
    fn in_place(k: KeyEntry, enc: &[u8], rules: &Rules) -> Option<Option<Acc>> {
        let mut k = Box::new(k);
        let bytes = match prepare(&mut k, 0, enc.to_vec()) {
            Ok(Some(b)) => b,
            Ok(None) => {
                return Some(super::super::value::key_digest(rules, &k, 0).expect("digest"))
            }
            Err(_) => return None,
        };
        let d = collections(
            vec![Col {
                key: k,
                at: 0,
                bytes,
            }],
            rules,
            0,
        );
        if d.failed.is_some() {
            return None;
        }
        match (d.bodies.first(), d.decoded.first()) {
            (Some((_, b)), None) => Some(*b),
            (None, Some(k)) => Some(super::super::value::key_digest(rules, k, 0).expect("digest")),
            _ => panic!("one key in, one out"),
        }
    }

    /// The digest (or the refusal) of a framed value read in place, and by the decoder.
    fn both(ty: u8, enc: &[u8], rules: &Rules) -> (Option<Option<Acc>>, Option<Option<Acc>>) {
        let in_place = in_place(entry(ty, Value::String(Vec::new())), enc, rules);
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
    fn a_batch_digests_each_key_as_it_alone_would() {
        // Lists of every length around the lockstep bound among the other samples (more
        // lists than lanes), and a damaged value in the middle: each key's digest in the
        // batch is its digest alone, and the damage is the failure, the keys before it
        // kept.
        let rules = Rules::for_target("redis-7.0.0".parse().expect("version")).expect("rules");
        let target = Target::for_server("redis-7.0.0".parse().expect("version")).expect("target");
        let mut values: Vec<(u8, Vec<u8>)> = samples()
            .into_iter()
            .filter(|(ty, _)| view::viewed(*ty))
            .collect();
        for n in [1usize, 2, 17, LOCKSTEP_MAX, LOCKSTEP_MAX + 1, 600] {
            let items = (0..n)
                .map(|i| format!("item {i} of {n}").into_bytes())
                .collect();
            let e = entry(0, Value::List(items));
            let rec = KeyRecord {
                source_type: None,
                ..KeyRecord::from(&e)
            };
            let at = (values.len() / 2).min(values.len());
            values.insert(
                at,
                encode_value(&rec, &target, WriteOptions::default()).expect("encode"),
            );
        }
        let alone: Vec<Option<Option<Acc>>> = values
            .iter()
            .map(|(ty, enc)| in_place(entry(*ty, Value::String(Vec::new())), enc, &rules))
            .collect();
        assert!(alone.iter().all(Option::is_some), "every sample is sound");
        let cols = |vals: &[(u8, Vec<u8>)]| -> Vec<Col> {
            vals.iter()
                .enumerate()
                .map(|(i, (ty, enc))| {
                    let mut k = entry(*ty, Value::String(Vec::new()));
                    k.key = format!("k{i}").into_bytes();
                    k.offset = i as u64;
                    Col {
                        key: Box::new(k),
                        at: 0,
                        bytes: enc.clone(),
                    }
                })
                .collect()
        };
        let named: Vec<Option<Option<Acc>>> = values
            .iter()
            .enumerate()
            .map(|(i, (ty, enc))| {
                let mut k = entry(*ty, Value::String(Vec::new()));
                k.key = format!("k{i}").into_bytes();
                in_place(k, enc, &rules)
            })
            .collect();
        let d = collections(cols(&values), &rules, 0);
        assert!(d.failed.is_none());
        let mut got = vec![None; values.len()];
        for (k, b) in &d.bodies {
            got[k.offset as usize] = Some(*b);
        }
        for k in &d.decoded {
            got[k.offset as usize] =
                Some(super::super::value::key_digest(&rules, k, 0).expect("digest"));
        }
        assert_eq!(got, named);
        // A value cut short in the middle of the batch.
        let bad = values.len() / 3;
        let mut damaged = values.clone();
        damaged[bad].1.truncate(1);
        let d = collections(cols(&damaged), &rules, 0);
        let (at, _) = d.failed.expect("the cut value fails");
        assert_eq!(at, bad as u64);
        assert!(d.bodies.len() + d.decoded.len() <= bad);
        for (k, b) in &d.bodies {
            assert!((k.offset as usize) < bad);
            assert_eq!(Some(*b), named[k.offset as usize]);
        }
    }

    #[test]
    fn keys_hashed_together_or_alone_digest_as_decoded() {
        // Sets, hashes and sorted sets just under and over the bound for hashing their
        // elements with the other keys', in one batch: each key's digest is its decoded
        // value's, for a printf and an fpconv target.
        use crate::rdb::types::{HASH_LISTPACK, SET_LISTPACK, ZSET_LISTPACK};
        use crate::rdb::writer::packed::Listpack;
        let scores = ["1.5", "-0", "17", "0.1", "-2e5", "3"];
        let mut values = Vec::new();
        for n in [3, TOGETHER_MAX, TOGETHER_MAX + 1, TOGETHER_MAX + 2, 40] {
            let (mut set, mut hash, mut zset) = (Listpack::new(), Listpack::new(), Listpack::new());
            for i in 0..n {
                set.push(
                    if i % 2 == 0 {
                        format!("s{i}")
                    } else {
                        format!("{i}")
                    }
                    .as_bytes(),
                );
            }
            for i in 0..n / 2 {
                hash.push(format!("f{}", i % 7 + i).as_bytes());
                hash.push(
                    if i % 3 == 0 {
                        format!("{i}")
                    } else {
                        format!("v{i}")
                    }
                    .as_bytes(),
                );
                zset.push(format!("z{i}").as_bytes());
                zset.push(scores[i % scores.len()].as_bytes());
            }
            values.push((SET_LISTPACK, rdb_string(&set.finish())));
            values.push((HASH_LISTPACK, rdb_string(&hash.finish())));
            values.push((ZSET_LISTPACK, rdb_string(&zset.finish())));
        }
        for target in ["redis-7.0.0", "valkey-8.1.0"] {
            let rules = Rules::for_target(target.parse().expect("version")).expect("rules");
            let cols = values
                .iter()
                .enumerate()
                .map(|(i, (ty, enc))| {
                    let mut k = entry(*ty, Value::String(Vec::new()));
                    k.offset = i as u64;
                    Col {
                        key: Box::new(k),
                        at: 0,
                        bytes: enc.clone(),
                    }
                })
                .collect();
            let d = collections(cols, &rules, 0);
            assert!(d.failed.is_none() && d.decoded.is_empty(), "{target}");
            assert_eq!(d.bodies.len(), values.len(), "{target}");
            for (k, body) in &d.bodies {
                let (ty, enc) = &values[k.offset as usize];
                let (_, decoded) = both(*ty, enc, &rules);
                let n = k.offset / 3;
                assert_eq!(Some(*body), decoded, "{target}: type {ty}, value {n}");
            }
        }
    }

    #[test]
    fn integers_print_as_the_server_prints_them() {
        for i in [
            0,
            7,
            -1,
            10,
            -10,
            99,
            100,
            -101,
            123_456_789,
            i64::MAX,
            i64::MIN,
        ] {
            assert_eq!(IntText::new(i).as_bytes(), i.to_string().as_bytes());
        }
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for shift in 0..64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x >> shift) as i64;
            for v in [i, -i, i / 7] {
                assert_eq!(IntText::new(v).as_bytes(), v.to_string().as_bytes());
            }
        }
    }
}
