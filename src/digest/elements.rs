//! One collection's part of `DEBUG DIGEST` from its elements, a chunk at a time: what
//! [`super::value`] computes for a decoded value, for collections the keyspace holds
//! natively and never decodes whole.
//!
//! Owns the per-element rules (lists mixed in order, sets and hashes xored, sorted-set
//! scores as text, the -0 rule, field-TTL marks). A leaf: it never sees a whole value and
//! never decides whether a key is kept (the caller does, with [`field_alive`]). The
//! elements of a chunk are hashed side by side ([`super::sha1x`]); only the chains that
//! are ordered (a list's elements, one element's parts) stay one after the other. Each
//! thread remembers the digest of short first parts it has seen (hash field names, zset
//! members) in a fixed-size table; a hit is an exact byte match, never a guess.

use super::mix::{mix_hash, mix_in, xor_raw, Acc, KNOWN};
use super::sha1x::{rehash_batch, sha1_batch};
use super::target::{Rules, ZSET_MAX_LISTPACK_ENTRIES, ZSET_MAX_LISTPACK_VALUE};
use crate::rdb::types::{ZSET, ZSET_2};
use crate::rdb::value::EntryRef;

pub use super::mix::EXPIRE_MARK;

/// The server's object type numbers (`OBJ_*`), mixed in as a big-endian u32.
pub const OBJ_STRING: u32 = 0;
pub const OBJ_LIST: u32 = 1;
pub const OBJ_SET: u32 = 2;
pub const OBJ_ZSET: u32 = 3;
pub const OBJ_HASH: u32 = 4;
pub const OBJ_STREAM: u32 = 6;
pub const OBJ_ARRAY: u32 = 7;

/// Elements hashed together: their independent hashes go through [`sha1_batch`] and
/// [`rehash_batch`] side by side, on the stack.
const CHUNK: usize = 32;

pub fn obj_type(acc: &mut Acc, t: u32) {
    match KNOWN.obj_type.get(t as usize) {
        Some(h) => mix_hash(acc, h),
        None => mix_in(acc, &t.to_be_bytes()),
    }
}

/// Feed `items` to `f` up to `C` at a time, without allocating.
fn chunked<T: Copy + Default, const C: usize>(
    items: impl IntoIterator<Item = T>,
    mut f: impl FnMut(&[T]),
) {
    let mut buf = [T::default(); C];
    let mut n = 0;
    for it in items {
        buf[n] = it;
        n += 1;
        if n == C {
            f(&buf);
            n = 0;
        }
    }
    if n > 0 {
        f(&buf[..n]);
    }
}

/// A key's digest: its name, then `object` (type and contents), then the expiry mark.
pub fn key(name: &[u8], expire_ms: Option<i64>, object: impl FnOnce(&mut Acc)) -> Acc {
    let mut acc = [0u8; 20];
    mix_in(&mut acc, name);
    object(&mut acc);
    if expire_ms.is_some() {
        xor_raw(&mut acc, &KNOWN.expire_mark);
    }
    acc
}

/// A field whose TTL has not passed at `now_ms` (or that has none).
pub fn field_alive(expire_ms: Option<u64>, now_ms: i64) -> bool {
    expire_ms.is_none_or(|t| t as i64 >= now_ms)
}

/// Mix in each part in order: the parts' hashes are independent, only the mixing is a
/// chain.
fn mix_all<'a>(acc: &mut Acc, parts: impl IntoIterator<Item = &'a [u8]>) {
    chunked::<_, CHUNK>(parts, |c| {
        let mut hs = [[0u8; 20]; CHUNK];
        sha1_batch(c, &mut hs[..c.len()]);
        for h in &hs[..c.len()] {
            mix_hash(acc, h);
        }
    });
}

pub fn list<'a>(acc: &mut Acc, items: impl IntoIterator<Item = &'a [u8]>) {
    obj_type(acc, OBJ_LIST);
    list_items(acc, items);
}

/// [`list`] after the type.
pub fn list_items<'a>(acc: &mut Acc, items: impl IntoIterator<Item = &'a [u8]>) {
    mix_all(acc, items);
}

/// Entries in ID order: the ID as `ms.seq`, then each field and value. Consumer groups,
/// the PEL and the stream's metadata are not part of the digest.
pub fn stream<'a>(acc: &mut Acc, entries: impl IntoIterator<Item = EntryRef<'a>>) {
    obj_type(acc, OBJ_STREAM);
    for e in entries {
        let id = format!("{}.{}", e.id.ms, e.id.seq);
        let fields = e.fields.iter().flat_map(|(f, v)| [&f[..], &v[..]]);
        mix_all(acc, std::iter::once(id.as_bytes()).chain(fields));
    }
}

pub fn set<'a>(acc: &mut Acc, members: impl IntoIterator<Item = &'a [u8]>) {
    obj_type(acc, OBJ_SET);
    set_members(acc, members);
}

/// [`set`] after the type.
pub fn set_members<'a>(acc: &mut Acc, members: impl IntoIterator<Item = &'a [u8]>) {
    chunked::<_, CHUNK>(members, |c| {
        let mut hs = [[0u8; 20]; CHUNK];
        sha1_batch(c, &mut hs[..c.len()]);
        for h in &hs[..c.len()] {
            xor_raw(acc, h);
        }
    });
}

/// Short first parts (hash field names, which repeat across keys) whose element digest
/// after `mix_in(first)`, `SHA1(SHA1(first))`, is remembered per thread: a direct-mapped
/// table of [`SEEN_SLOTS`] entries, compared byte for byte, so a hit is exact.
const SEEN_SLOTS: usize = 1024;
const SEEN_MAX: usize = 32;

#[derive(Clone, Copy)]
struct Seen {
    len: u8,
    bytes: [u8; SEEN_MAX],
    ele: Acc,
}

thread_local! {
    static SEEN: std::cell::RefCell<Box<[Seen]>> = std::cell::RefCell::new(
        vec![Seen { len: u8::MAX, bytes: [0; SEEN_MAX], ele: [0; 20] }; SEEN_SLOTS].into_boxed_slice()
    );
}

fn seen_slot(part: &[u8]) -> usize {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x5ee7).hash_one(part) as usize % SEEN_SLOTS
}

/// Elements made of two parts (member and score, field and value): each gets a fresh
/// digest, `mix_in(a)`, `mix_in(b)`, xored with the field-TTL mark's hash when `marked`,
/// and is xored into `acc` — all the elements of a chunk side by side.
fn pairs(acc: &mut Acc, c: &[(&[u8], &[u8], bool)]) {
    let mut ele = [[0u8; 20]; CHUNK];
    let ele = &mut ele[..c.len()];
    pair_digests(c, ele);
    for e in ele.iter() {
        xor_raw(acc, e);
    }
}

/// Elements hashed together when they come from many keys ([`pairs_of`],
/// [`set_members_of`]): enough to fill the wide SHA-1 lanes several times over.
const WIDE_CHUNK: usize = 128;

/// Two-part elements of many keys, `(i, a, b, marked)`: each element's digest (as
/// [`pairs`] computes it) xored into `accs[i]`, the elements of every key side by side.
pub fn pairs_of(accs: &mut [Acc], items: &[(usize, &[u8], &[u8], bool)]) {
    let mut parts: [(&[u8], &[u8], bool); WIDE_CHUNK] = [(&[], &[], false); WIDE_CHUNK];
    let mut ele = [[0u8; 20]; WIDE_CHUNK];
    for c in items.chunks(WIDE_CHUNK) {
        for (p, &(_, a, b, marked)) in parts.iter_mut().zip(c) {
            *p = (a, b, marked);
        }
        pair_digests(&parts[..c.len()], &mut ele[..c.len()]);
        for ((i, ..), e) in c.iter().zip(&ele) {
            xor_raw(&mut accs[*i], e);
        }
    }
}

/// Set members of many keys, `(i, member)`: `SHA1(member)` xored into `accs[i]`.
pub fn set_members_of(accs: &mut [Acc], members: &[(usize, &[u8])]) {
    let mut msgs: [&[u8]; WIDE_CHUNK] = [&[]; WIDE_CHUNK];
    let mut hs = [[0u8; 20]; WIDE_CHUNK];
    for c in members.chunks(WIDE_CHUNK) {
        for (m, (_, b)) in msgs.iter_mut().zip(c) {
            *m = b;
        }
        sha1_batch(&msgs[..c.len()], &mut hs[..c.len()]);
        for ((i, _), h) in c.iter().zip(&hs) {
            xor_raw(&mut accs[*i], h);
        }
    }
}

/// The digest of each two-part element of `c` (at most [`WIDE_CHUNK`]) into `out`.
fn pair_digests(c: &[(&[u8], &[u8], bool)], out: &mut [Acc]) {
    let n = c.len();
    let ele = out;
    // Which first parts must be hashed (not remembered), as indexes into `c`.
    let mut miss = [0usize; WIDE_CHUNK];
    let mut nm = 0;
    SEEN.with_borrow(|seen| {
        for (i, (a, _, _)) in c.iter().enumerate() {
            if a.len() <= SEEN_MAX {
                let e = &seen[seen_slot(a)];
                if usize::from(e.len) == a.len() && e.bytes[..a.len()] == **a {
                    ele[i] = e.ele;
                    continue;
                }
            }
            miss[nm] = i;
            nm += 1;
        }
    });
    let mut msgs: [&[u8]; 2 * WIDE_CHUNK] = [&[]; 2 * WIDE_CHUNK];
    for (m, &i) in msgs.iter_mut().zip(&miss[..nm]) {
        *m = c[i].0;
    }
    for (m, (_, b, _)) in msgs[nm..].iter_mut().zip(c) {
        *m = b;
    }
    let mut hs = [[0u8; 20]; 2 * WIDE_CHUNK];
    sha1_batch(&msgs[..nm + n], &mut hs[..nm + n]);
    let (first, second) = hs.split_at_mut(nm);
    // mix_in(0, a) = SHA1(SHA1(a)) for the parts not remembered; remember them.
    rehash_batch(first);
    SEEN.with_borrow_mut(|seen| {
        for (h, &i) in first.iter().zip(&miss[..nm]) {
            ele[i] = *h;
            let a = c[i].0;
            if a.len() <= SEEN_MAX {
                let e = &mut seen[seen_slot(a)];
                e.len = a.len() as u8;
                e.bytes[..a.len()].copy_from_slice(a);
                e.ele = *h;
            }
        }
    });
    for (e, h) in ele.iter_mut().zip(&second[..n]) {
        xor_raw(e, h);
    }
    rehash_batch(ele);
    for (e, (_, _, marked)) in ele.iter_mut().zip(c) {
        if *marked {
            xor_raw(e, &KNOWN.field_ttl_mark);
        }
    }
    // xor_in(acc, ele) hashes the element's digest first.
    rehash_batch(ele);
}

/// Each member and its score are mixed into a fresh element digest, xored into the key's.
/// `len` and `longest` (member bytes) decide whether a server loading the file rebuilds
/// the set compact, where Redis 7.0+ and Valkey store -0 as 0.
pub fn zset<'a>(
    acc: &mut Acc,
    rules: &Rules,
    rdb_type: u8,
    len: usize,
    longest: usize,
    members: impl IntoIterator<Item = (&'a [u8], f64)>,
) {
    obj_type(acc, OBJ_ZSET);
    zset_members(acc, rules, rdb_type, len, longest, members);
}

/// [`zset`] after the type.
pub fn zset_members<'a>(
    acc: &mut Acc,
    rules: &Rules,
    rdb_type: u8,
    len: usize,
    longest: usize,
    members: impl IntoIterator<Item = (&'a [u8], f64)>,
) {
    let drop_sign = zset_drops_sign(rules, rdb_type, len, longest);
    // A chunk's scores printed one after another into one buffer, kept across chunks.
    let mut text = String::with_capacity(len.min(CHUNK) * 24);
    let mut ends = [0usize; CHUNK];
    chunked::<_, CHUNK>(members, |c| {
        text.clear();
        for (end, &(_, score)) in ends.iter_mut().zip(c) {
            score_into(rules, drop_sign, score, &mut text);
            *end = text.len();
        }
        let mut p: [(&[u8], &[u8], bool); CHUNK] = [(&[], &[], false); CHUNK];
        let mut start = 0;
        for (i, (m, _)) in c.iter().enumerate() {
            p[i] = (m, &text.as_bytes()[start..ends[i]], false);
            start = ends[i];
        }
        pairs(acc, &p[..c.len()]);
    });
}

/// Whether a sorted set's `-0` scores are digested as `0`: a skiplist-layout set small
/// enough is turned into a listpack after load, and from 7.0 on the server stores integral
/// scores there as integers, so -0 becomes 0. `len` members, the longest `longest` bytes.
pub fn zset_drops_sign(rules: &Rules, rdb_type: u8, len: usize, longest: usize) -> bool {
    let rebuilt_as_listpack = !rules.as_held
        && matches!(rdb_type, ZSET | ZSET_2)
        && len <= ZSET_MAX_LISTPACK_ENTRIES
        && longest <= ZSET_MAX_LISTPACK_VALUE;
    rebuilt_as_listpack && rules.listpack_drops_negative_zero
}

/// A score's text in the digest, appended to `out` (`drop_sign` from [`zset_drops_sign`]).
pub fn score_into(rules: &Rules, drop_sign: bool, score: f64, out: &mut String) {
    let score = if drop_sign && score == 0.0 {
        0.0
    } else {
        score
    };
    rules.score_format.format_into(score, out);
}

/// Fields as (field, value, TTL); expired ones are skipped where the server drops them.
pub fn hash<'a>(
    acc: &mut Acc,
    rules: &Rules,
    now_ms: i64,
    fields: impl IntoIterator<Item = (&'a [u8], &'a [u8], Option<u64>)>,
) {
    obj_type(acc, OBJ_HASH);
    hash_fields(acc, rules, now_ms, fields);
}

/// [`hash`] after the type.
pub fn hash_fields<'a>(
    acc: &mut Acc,
    rules: &Rules,
    now_ms: i64,
    fields: impl IntoIterator<Item = (&'a [u8], &'a [u8], Option<u64>)>,
) {
    let kept = fields
        .into_iter()
        .filter(|(_, _, ttl)| !rules.drops_expired_fields || field_alive(*ttl, now_ms))
        .map(|(f, v, ttl)| (f, v, rules.hash_field_ttl_marker && ttl.is_some()));
    chunked::<_, CHUNK>(kept, |c| pairs(acc, c));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::mix::xor_in;

    #[test]
    fn hash_elements_match_the_definition_with_remembered_fields() {
        let rules = Rules::for_target("redis-7.4.0".parse().expect("version")).expect("rules");
        let fields: Vec<(Vec<u8>, Vec<u8>, Option<u64>)> = (0..100u32)
            .map(|i| {
                let f = format!("f{}", i % 7).into_bytes();
                let f = if i % 5 == 0 {
                    [&f[..], &[b'x'; 40]].concat()
                } else {
                    f
                };
                (
                    f,
                    format!("value {i}").into_bytes(),
                    (i % 3 == 0).then_some(1u64 << 62),
                )
            })
            .collect();
        let mut want = [0u8; 20];
        mix_in(&mut want, &OBJ_HASH.to_be_bytes());
        for (f, v, ttl) in &fields {
            let mut ele = [0u8; 20];
            mix_in(&mut ele, f);
            mix_in(&mut ele, v);
            if ttl.is_some() {
                xor_in(&mut ele, super::super::mix::FIELD_TTL_MARK);
            }
            xor_in(&mut want, &ele);
        }
        // Twice: the first pass fills the remembered fields, the second hits them.
        for pass in 0..2 {
            let mut got = [0u8; 20];
            hash(
                &mut got,
                &rules,
                0,
                fields.iter().map(|(f, v, t)| (&f[..], &v[..], *t)),
            );
            assert_eq!(got, want, "pass {pass}");
        }
    }
}
