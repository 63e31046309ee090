//! Set commands in their propagated forms (SPOP arrives as SREM or DEL).

use super::value_ops::{load_typed, on_native, prepare, store, wrongtype, Decoded};
use super::{invalid, ApplyError};
use crate::keyspace::native::Member;
use crate::keyspace::{Hints, Keyspace, Kind, Native};
use crate::rdb::Value;

/// A key's hints and its elements.
type Loaded = (Hints, Vec<Vec<u8>>);

fn get_set(ks: &Keyspace, db: u64, cmd: &str, key: &[u8]) -> Result<Option<Loaded>, ApplyError> {
    as_set(cmd, key, load_typed(ks, db, key)?)
}

fn as_set(cmd: &str, key: &[u8], d: Option<Decoded>) -> Result<Option<Loaded>, ApplyError> {
    match d {
        None => Ok(None),
        Some((h, Value::Set(m), _)) => Ok(Some((h, m))),
        Some(_) => Err(wrongtype(cmd, key)),
    }
}

pub fn sadd(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, members @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let found = prepare(ks, db, cmd, key, Kind::Set, members.len(), true)?;
    if let Some(r) = found.run(|| {
        on_native(ks, db, cmd, key, Kind::Set, |n| {
            if let Native::Set(s) = n {
                for x in members {
                    if !s.contains(x) {
                        s.insert(Member(x.as_slice().into()));
                    }
                }
            }
            Ok(())
        })
    }) {
        return r;
    }
    // Packed: fewer than NATIVE_MIN members in all, so the scans stay small.
    let (h, mut m) = as_set(cmd, key, found.packed())?.unwrap_or_default();
    for x in members {
        if !m.contains(x) {
            m.push(x.clone());
        }
    }
    store(ks, db, key, &h, &Value::Set(m))
}

/// Whether `member` is in the set at `key` (absent key: false).
fn is_member(
    ks: &Keyspace,
    db: u64,
    cmd: &str,
    key: &[u8],
    member: &[u8],
) -> Result<bool, ApplyError> {
    if let Some(crate::keyspace::Entry::Native(n)) = ks.entry(db, key) {
        return match &n.value {
            Native::Set(s) => Ok(s.contains(member)),
            _ => Err(wrongtype(cmd, key)),
        };
    }
    Ok(get_set(ks, db, cmd, key)?.is_some_and(|(_, m)| m.iter().any(|x| x == member)))
}

pub fn srem(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, members @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let found = prepare(ks, db, cmd, key, Kind::Set, 0, false)?;
    if let Some(r) = found.run(|| {
        on_native(ks, db, cmd, key, Kind::Set, |n| {
            if let Native::Set(s) = n {
                for x in members {
                    s.remove(x);
                }
            }
            Ok(())
        })
    }) {
        return r;
    }
    let Some((h, mut m)) = as_set(cmd, key, found.packed())? else {
        return Ok(());
    };
    let gone: std::collections::HashSet<&[u8]> = members.iter().map(|x| x.as_slice()).collect();
    m.retain(|x| !gone.contains(x.as_slice()));
    store(ks, db, key, &h, &Value::Set(m))
}

pub fn smove(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [src, dst, member] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    if ks.entry(db, src).is_none() {
        return Ok(());
    }
    // Both types are checked before anything moves, as the server does.
    let present = is_member(ks, db, cmd, src, member)?;
    is_member(ks, db, cmd, dst, member)?;
    if !present || src == dst {
        return Ok(());
    }
    let one = [src.clone(), member.clone()];
    srem(ks, db, cmd, &one)?;
    sadd(ks, db, cmd, &[dst.clone(), member.clone()])
}

/// SINTERSTORE / SUNIONSTORE / SDIFFSTORE dest key…: the destination is replaced (no
/// TTL), or deleted when the result is empty; a missing source reads as empty.
pub fn setop_store(
    ks: &mut Keyspace,
    db: u64,
    cmd: &str,
    args: &[Vec<u8>],
) -> Result<(), ApplyError> {
    let [dest, keys @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    if keys.is_empty() {
        return Err(invalid(cmd, "wrong number of arguments"));
    }
    let mut sources = Vec::with_capacity(keys.len());
    for k in keys {
        sources.push(get_set(ks, db, cmd, k)?.map(|(_, m)| m).unwrap_or_default());
    }
    let Some((first, rest)) = sources.split_first() else {
        return Err(invalid(cmd, "no source keys"));
    };
    // Each source indexed once: membership is O(1), never a scan per member.
    let rest: Vec<std::collections::HashSet<&[u8]>> = rest
        .iter()
        .map(|s| s.iter().map(|x| x.as_slice()).collect())
        .collect();
    let contains = |s: &std::collections::HashSet<&[u8]>, x: &Vec<u8>| s.contains(x.as_slice());
    let result: Vec<Vec<u8>> = match cmd {
        "SINTERSTORE" => first
            .iter()
            .filter(|x| rest.iter().all(|s| contains(s, x)))
            .cloned()
            .collect(),
        "SDIFFSTORE" => first
            .iter()
            .filter(|x| !rest.iter().any(|s| contains(s, x)))
            .cloned()
            .collect(),
        _ => {
            let mut seen = std::collections::HashSet::new();
            sources
                .iter()
                .flatten()
                .filter(|x| seen.insert(x.as_slice()))
                .cloned()
                .collect()
        }
    };
    store(ks, db, dest, &Hints::default(), &Value::Set(result))
}
