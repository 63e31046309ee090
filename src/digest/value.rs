//! One key's contribution to `DEBUG DIGEST`, as a given server version computes it.
//!
//! Owns the per-type rules (docs/digest.md): which parts are mixed in order, which are
//! xored, how numbers become text, and what the server drops on load (expired keys,
//! expired hash fields on Valkey 9, empty collections) so that they contribute nothing.
//! It never guesses at a module value: the server asks the module, so that is an error.

use crate::dtoa;
use crate::rdb::value::{ArrayElem, HashField, SparseArray};
use crate::rdb::{KeyEntry, Value};

use super::error::DigestError;
use super::mix::{mix_hash, mix_in, xor_raw, Acc, KNOWN};
use super::target::Rules;

use super::elements::{self, OBJ_ARRAY, OBJ_STRING};

/// Holes in a sparse array each cost a digest step; past this many we refuse.
const MAX_ARRAY_HOLES: u64 = 100_000_000;

/// Whether a master loading the file keeps this key: the key's expiry has not passed
/// and, after the target's own load-time filtering, the collection is not empty.
pub fn kept(rules: &Rules, entry: &KeyEntry, now_ms: i64) -> bool {
    if matches!(entry.expire_ms, Some(t) if t < now_ms) {
        return false;
    }
    match &entry.value {
        Value::Hash(fields) if rules.drops_expired_fields => {
            fields.iter().any(|f| field_alive(f, now_ms))
        }
        v => !v.is_empty_collection(),
    }
}

fn field_alive(f: &HashField, now_ms: i64) -> bool {
    elements::field_alive(f.expire_ms, now_ms)
}

/// The key's full digest (key name, then the value), or `None` when the server drops it.
pub fn key_digest(
    rules: &Rules,
    entry: &KeyEntry,
    now_ms: i64,
) -> Result<Option<Acc>, DigestError> {
    if !kept(rules, entry, now_ms) {
        return Ok(None);
    }
    let mut acc = [0u8; 20];
    mix_in(&mut acc, &entry.key);
    object_digest(&mut acc, rules, entry, now_ms)?;
    Ok(Some(acc))
}

/// What `DEBUG DIGEST-VALUE key` answers for this key: the value and its expiry mark,
/// without the key name. `None` when the server would not have the key.
pub fn value_digest(
    rules: &Rules,
    entry: &KeyEntry,
    now_ms: i64,
) -> Result<Option<Acc>, DigestError> {
    if !kept(rules, entry, now_ms) {
        return Ok(None);
    }
    let mut acc = [0u8; 20];
    object_digest(&mut acc, rules, entry, now_ms)?;
    Ok(Some(acc))
}

fn object_digest(
    acc: &mut Acc,
    rules: &Rules,
    entry: &KeyEntry,
    now_ms: i64,
) -> Result<(), DigestError> {
    body(acc, rules, entry, now_ms)?;
    if entry.expire_ms.is_some() {
        xor_raw(acc, &KNOWN.expire_mark);
    }
    Ok(())
}

/// The object's type and contents mixed into `acc` (what follows the key name, before the
/// expiry mark).
pub(super) fn body(
    acc: &mut Acc,
    rules: &Rules,
    entry: &KeyEntry,
    now_ms: i64,
) -> Result<(), DigestError> {
    let obj_type = elements::obj_type;
    match &entry.value {
        Value::String(s) => {
            obj_type(acc, OBJ_STRING);
            mix_in(acc, s);
        }
        Value::List(items) => elements::list(acc, items.iter().map(|x| &x[..])),
        Value::Set(members) => elements::set(acc, members.iter().map(|x| &x[..])),
        Value::SortedSet(members) => elements::zset(
            acc,
            rules,
            entry.rdb_type,
            members.len(),
            members.iter().map(|(m, _)| m.len()).max().unwrap_or(0),
            members.iter().map(|(m, s)| (&m[..], *s)),
        ),
        Value::Hash(fields) => elements::hash(
            acc,
            rules,
            now_ms,
            fields
                .iter()
                .map(|f| (&f.field[..], &f.value[..], f.expire_ms)),
        ),
        Value::Stream(s) => elements::stream(acc, s.entries.iter().map(|e| e.view())),
        Value::Array(a) => {
            obj_type(acc, OBJ_ARRAY);
            array(acc, a).map_err(|m| DigestError::cannot_load(&entry.key, m))?;
        }
        Value::Module(m) => {
            return Err(DigestError::Module {
                key: entry.key.escape_ascii().to_string(),
                module: m.name_and_version().0,
            })
        }
        Value::Gcra(_) => {
            return Err(DigestError::cannot_load(
                &entry.key,
                format!(
                    "{} cannot load a GCRA value (release builds leave GCRA out)",
                    rules.target
                ),
            ))
        }
    }
    Ok(())
}

/// Every index from 0 to the highest present one, a hole as `(null)` (Redis 8.8+).
fn array(acc: &mut Acc, a: &SparseArray) -> Result<(), String> {
    let len = a.elems.last().map_or(0, |(i, _)| i + 1);
    if len - a.elems.len() as u64 > MAX_ARRAY_HOLES {
        return Err(format!(
            "sparse array of length {len} with {} elements: too many holes to digest",
            a.elems.len()
        ));
    }
    let mut next = 0u64;
    for (idx, el) in &a.elems {
        while next < *idx {
            mix_hash(acc, &KNOWN.array_hole);
            next += 1;
        }
        match el {
            ArrayElem::Str(s) => mix_in(acc, s),
            ArrayElem::Int(i) => mix_in(acc, i.to_string().as_bytes()),
            ArrayElem::Float(d) => mix_in(acc, array_float(*d).as_bytes()),
        }
        next = idx + 1;
    }
    Ok(())
}

/// An array float as Redis 8.8+ prints it: `d2string`, then `.0` when that looks integral.
fn array_float(d: f64) -> String {
    let mut s = dtoa::score_text(d, dtoa::ScoreText::Fpconv);
    if d.is_finite() && !s.contains(['.', 'e', 'E']) {
        s.push_str(".0");
    }
    s
}
