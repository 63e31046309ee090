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
    // Each list's first element hash, then the longest first (a counting sort: lengths
    // are short), so the lists still going at step j are a prefix.
    let longest = lists.iter().map(|(_, t)| t.len()).max().unwrap_or(0);
    let mut first = vec![0usize; longest + 1];
    for (_, t) in lists.iter() {
        first[t.len()] += 1;
    }
    let mut pos = 0;
    for f in first.iter_mut().rev() {
        let n = *f;
        *f = pos;
        pos += n;
    }
    let mut at = vec![(0usize, 0usize, 0usize); lists.len()];
    let mut off = 0;
    for (i, t) in lists.iter() {
        let slot = &mut first[t.len()];
        at[*slot] = (*i, off, t.len());
        *slot += 1;
        off += t.len();
    }
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
        let mut buf = [0u8; 20];
        // At most 19 digits (|i64::MIN| < 10^19): room for the sign before them.
        let mut p = crate::dtoa::decimal(i.unsigned_abs(), &mut buf);
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
#[path = "framed_tests.rs"]
mod tests;
