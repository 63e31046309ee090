//! One collection's part of `DEBUG DIGEST` from its elements, one at a time: what
//! [`super::value`] computes for a decoded value, for collections the keyspace holds
//! natively and never decodes whole.
//!
//! Owns the per-element rules (lists mixed in order, sets and hashes xored, sorted-set
//! scores as text, the -0 rule, field-TTL marks). A leaf: it never sees a whole value and
//! never decides whether a key is kept (the caller does, with [`field_alive`]).

use super::mix::{mix_in, xor_in, Acc};
use super::target::{Rules, ZSET_MAX_LISTPACK_ENTRIES, ZSET_MAX_LISTPACK_VALUE};
use crate::rdb::types::{ZSET, ZSET_2};
use crate::rdb::value::EntryRef;

/// The server's object type numbers (`OBJ_*`), mixed in as a big-endian u32.
pub const OBJ_STRING: u32 = 0;
pub const OBJ_LIST: u32 = 1;
pub const OBJ_SET: u32 = 2;
pub const OBJ_ZSET: u32 = 3;
pub const OBJ_HASH: u32 = 4;
pub const OBJ_STREAM: u32 = 6;
pub const OBJ_ARRAY: u32 = 7;

pub const EXPIRE_MARK: &[u8] = b"!!expire!!";
const FIELD_TTL_MARK: &[u8] = b"!!hexpire!!";

pub fn obj_type(acc: &mut Acc, t: u32) {
    mix_in(acc, &t.to_be_bytes());
}

/// A key's digest: its name, then `object` (type and contents), then the expiry mark.
pub fn key(name: &[u8], expire_ms: Option<i64>, object: impl FnOnce(&mut Acc)) -> Acc {
    let mut acc = [0u8; 20];
    mix_in(&mut acc, name);
    object(&mut acc);
    if expire_ms.is_some() {
        xor_in(&mut acc, EXPIRE_MARK);
    }
    acc
}

/// A field whose TTL has not passed at `now_ms` (or that has none).
pub fn field_alive(expire_ms: Option<u64>, now_ms: i64) -> bool {
    expire_ms.is_none_or(|t| t as i64 >= now_ms)
}

pub fn list<'a>(acc: &mut Acc, items: impl IntoIterator<Item = &'a [u8]>) {
    obj_type(acc, OBJ_LIST);
    for it in items {
        mix_in(acc, it);
    }
}

/// Entries in ID order: the ID as `ms.seq`, then each field and value. Consumer groups,
/// the PEL and the stream's metadata are not part of the digest.
pub fn stream<'a>(acc: &mut Acc, entries: impl IntoIterator<Item = EntryRef<'a>>) {
    obj_type(acc, OBJ_STREAM);
    for e in entries {
        mix_in(acc, format!("{}.{}", e.id.ms, e.id.seq).as_bytes());
        for (f, v) in &e.fields {
            mix_in(acc, f);
            mix_in(acc, v);
        }
    }
}

pub fn set<'a>(acc: &mut Acc, members: impl IntoIterator<Item = &'a [u8]>) {
    obj_type(acc, OBJ_SET);
    for m in members {
        xor_in(acc, m);
    }
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
    // A skiplist-layout zset small enough is turned into a listpack after load; from 7.0
    // on the server stores integral scores there as integers, so -0 becomes 0.
    let rebuilt_as_listpack = !rules.as_held
        && matches!(rdb_type, ZSET | ZSET_2)
        && len <= ZSET_MAX_LISTPACK_ENTRIES
        && longest <= ZSET_MAX_LISTPACK_VALUE;
    let drop_sign = rebuilt_as_listpack && rules.listpack_drops_negative_zero;
    for (member, score) in members {
        let score = if drop_sign && score == 0.0 {
            0.0
        } else {
            score
        };
        let mut ele = [0u8; 20];
        mix_in(&mut ele, member);
        mix_in(&mut ele, rules.score_format.format(score).as_bytes());
        xor_in(acc, &ele);
    }
}

/// Fields as (field, value, TTL); expired ones are skipped where the server drops them.
pub fn hash<'a>(
    acc: &mut Acc,
    rules: &Rules,
    now_ms: i64,
    fields: impl IntoIterator<Item = (&'a [u8], &'a [u8], Option<u64>)>,
) {
    obj_type(acc, OBJ_HASH);
    for (field, value, ttl) in fields {
        if rules.drops_expired_fields && !field_alive(ttl, now_ms) {
            continue;
        }
        let mut ele = [0u8; 20];
        mix_in(&mut ele, field);
        mix_in(&mut ele, value);
        if rules.hash_field_ttl_marker && ttl.is_some() {
            xor_in(&mut ele, FIELD_TTL_MARK);
        }
        xor_in(acc, &ele);
    }
}
