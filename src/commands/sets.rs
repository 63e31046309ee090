//! Set commands in their propagated forms (SPOP arrives as SREM or DEL): [`parse`] checks
//! and types a command's arguments (the only place that reads its name), then
//! [`Cmd::apply`](Apply::apply) applies the typed command to the keyspace.

use super::error::{invalid, ApplyError};
use super::packed_edit::{self, Found, Item};
use super::parse::{Apply, Parse};
use super::state::StreamState;
use super::value_ops::{load_typed, on_native, prepare, prepare_found, store, wrongtype, Decoded};
use crate::keyspace::native::{Member, Thin, NATIVE_MIN};
use crate::keyspace::{Entry, Hints, Keyspace, Kind, Native, Packed};
use crate::rdb::packed::Elem;
use crate::rdb::types::{SET_INTSET, SET_LISTPACK};
use crate::rdb::writer::packed::{canonical_int, intset};
use crate::rdb::writer::target::thresholds::{
    SET_MAX_INTSET_ENTRIES, SET_MAX_LISTPACK_ENTRIES, SET_MAX_LISTPACK_VALUE,
};
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

/// SADD key member… (and SMOVE's addition, named `cmd`).
fn sadd(
    ks: &mut Keyspace,
    db: u64,
    cmd: &str,
    key: &[u8],
    members: &[Vec<u8>],
) -> Result<(), ApplyError> {
    let found = match packed_edit::find(ks, db, key, &[SET_LISTPACK, SET_INTSET]) {
        Found::Packed(p) => {
            if sadd_packed(ks, db, &p, members) {
                return Ok(());
            }
            Some(Entry::Packed(p))
        }
        Found::Other(e) => e,
    };
    let found = prepare_found(ks, db, cmd, key, Kind::Set, members.len(), true, found)?;
    if let Some(r) = found.run(|| {
        on_native(ks, db, cmd, key, Kind::Set, |n| {
            if let Native::Set(s) = n {
                for x in members {
                    if !s.contains(x) {
                        s.insert(Member(Thin::new(x.as_slice())));
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

/// SADD on a set held as an intset or a listpack, in place; `false` (nothing stored) when
/// the result would be held otherwise (another encoding, or native), as the general path
/// decides.
fn sadd_packed(ks: &mut Keyspace, db: u64, p: &Packed, members: &[Vec<u8>]) -> bool {
    let Some(blob) = packed_edit::blob(p.payload()) else {
        return false;
    };
    if p.rdb_type() == SET_INTSET {
        let Ok(mut v) = crate::rdb::packed::intset(blob) else {
            return false;
        };
        if v.len() + members.len() >= NATIVE_MIN {
            return false;
        }
        for m in members {
            let Some(x) = canonical_int(m) else {
                return false;
            };
            if let Err(i) = v.binary_search(&x) {
                v.insert(i, x);
            }
        }
        if v.len() > SET_MAX_INTSET_ENTRIES {
            return false;
        }
        packed_edit::store(ks, db, p, SET_INTSET, &intset(&v));
        return true;
    }
    if members.iter().any(|m| m.len() > SET_MAX_LISTPACK_VALUE) {
        return false;
    }
    let Some(mut it) = packed_edit::items(blob) else {
        return false;
    };
    if it.len() + members.len() >= NATIVE_MIN {
        return false;
    }
    for m in members {
        if !it.iter().any(|x| x.is(m)) {
            it.push(Item::new(m));
        }
    }
    // All integers: the general path stores an intset.
    if it.len() > SET_MAX_LISTPACK_ENTRIES
        || it.iter().all(|x| matches!(x.elem, Some(Elem::Int(_))))
    {
        return false;
    }
    packed_edit::store(ks, db, p, SET_LISTPACK, &packed_edit::listpack(&it));
    true
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

/// SREM key member… (and SMOVE's removal, named `cmd`).
fn srem(
    ks: &mut Keyspace,
    db: u64,
    cmd: &str,
    key: &[u8],
    members: &[Vec<u8>],
) -> Result<(), ApplyError> {
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

/// SMOVE src dst member.
fn smove(
    ks: &mut Keyspace,
    db: u64,
    src: &[u8],
    dst: &[u8],
    member: &[u8],
) -> Result<(), ApplyError> {
    let cmd = "SMOVE";
    if ks.entry(db, src).is_none() {
        return Ok(());
    }
    // Both types are checked before anything moves, as the server does.
    let present = is_member(ks, db, cmd, src, member)?;
    is_member(ks, db, cmd, dst, member)?;
    if !present || src == dst {
        return Ok(());
    }
    let one = [member.to_vec()];
    srem(ks, db, cmd, src, &one)?;
    sadd(ks, db, cmd, dst, &one)
}

/// SINTERSTORE / SUNIONSTORE / SDIFFSTORE dest key…: the destination is replaced (no
/// TTL), or deleted when the result is empty; a missing source reads as empty.
fn setop_store(
    ks: &mut Keyspace,
    db: u64,
    op: SetOp,
    dest: &[u8],
    keys: &[Vec<u8>],
) -> Result<(), ApplyError> {
    let cmd = op.name();
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
    let result: Vec<Vec<u8>> = match op {
        SetOp::Inter => first
            .iter()
            .filter(|x| rest.iter().all(|s| contains(s, x)))
            .cloned()
            .collect(),
        SetOp::Diff => first
            .iter()
            .filter(|x| !rest.iter().any(|s| contains(s, x)))
            .cloned()
            .collect(),
        SetOp::Union => {
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

// ---------------------------------------------------------------- parse and apply

/// Which combination SINTERSTORE / SUNIONSTORE / SDIFFSTORE stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SetOp {
    Inter,
    Union,
    Diff,
}

impl SetOp {
    /// The command's name, for errors.
    fn name(self) -> &'static str {
        match self {
            SetOp::Inter => "SINTERSTORE",
            SetOp::Union => "SUNIONSTORE",
            SetOp::Diff => "SDIFFSTORE",
        }
    }
}

/// A command of this family, parsed: typed arguments, checked before anything changes.
pub(super) enum Cmd<'a> {
    /// SADD key member… (no member: nothing changes).
    Add {
        key: &'a [u8],
        members: &'a [Vec<u8>],
    },
    /// SREM key member…
    Rem {
        key: &'a [u8],
        members: &'a [Vec<u8>],
    },
    /// SMOVE src dst member.
    Move {
        src: &'a [u8],
        dst: &'a [u8],
        member: &'a [u8],
    },
    /// SINTERSTORE / SUNIONSTORE / SDIFFSTORE dest key…
    Store {
        op: SetOp,
        dest: &'a [u8],
        keys: &'a [Vec<u8>],
    },
}

pub(super) fn parse<'a>(mut p: Parse<'a>) -> Result<Cmd<'a>, ApplyError> {
    let name = p.name();
    let cmd = match name {
        "SADD" => Cmd::Add {
            key: p.next()?,
            members: p.rest(),
        },
        "SREM" => Cmd::Rem {
            key: p.next()?,
            members: p.rest(),
        },
        "SMOVE" => Cmd::Move {
            src: p.next()?,
            dst: p.next()?,
            member: p.next()?,
        },
        "SINTERSTORE" | "SUNIONSTORE" | "SDIFFSTORE" => {
            let op = match name {
                "SINTERSTORE" => SetOp::Inter,
                "SUNIONSTORE" => SetOp::Union,
                _ => SetOp::Diff,
            };
            let dest = p.next()?;
            let keys = p.rest();
            if keys.is_empty() {
                return Err(p.error("wrong number of arguments"));
            }
            Cmd::Store { op, dest, keys }
        }
        _ => return Err(ApplyError::Unknown(name.to_string())),
    };
    p.finish()?;
    Ok(cmd)
}

impl Apply for Cmd<'_> {
    fn apply(self, ks: &mut Keyspace, st: &mut StreamState) -> Result<(), ApplyError> {
        let db = st.db;
        match self {
            Cmd::Add { key, members } => sadd(ks, db, "SADD", key, members),
            Cmd::Rem { key, members } => srem(ks, db, "SREM", key, members),
            Cmd::Move { src, dst, member } => smove(ks, db, src, dst, member),
            Cmd::Store { op, dest, keys } => setop_store(ks, db, op, dest, keys),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &str) -> Vec<Vec<u8>> {
        a.split(' ').map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn parse_types_and_checks_arity() {
        for bad in ["SADD", "SMOVE a b", "SMOVE a b m x", "SUNIONSTORE d"] {
            assert!(super::super::parse(&argv(bad)).is_err(), "{bad}");
        }
        let a = argv("d k1 k2");
        let c = parse(Parse::new("SDIFFSTORE", &a));
        assert!(
            matches!(c, Ok(Cmd::Store { op: SetOp::Diff, dest: b"d", keys }) if keys.len() == 2)
        );
        // SADD/SREM with no member are accepted (nothing changes), as before.
        let (mut ks, mut st) = (Keyspace::new(), StreamState::default());
        super::super::apply(&mut ks, &mut st, &argv("SADD k")).unwrap();
        super::super::apply(&mut ks, &mut st, &argv("SADD k 3 1 2")).unwrap();
        super::super::apply(&mut ks, &mut st, &argv("SMOVE k j 2")).unwrap();
        super::super::apply(&mut ks, &mut st, &argv("SINTERSTORE i k j")).unwrap();
        assert!(ks.entry(0, b"i").is_none());
        assert!(ks.entry(0, b"j").is_some());
    }
}
