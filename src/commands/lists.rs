//! List commands in their propagated forms (blocking pops arrive as LPOP/RPOP/LMOVE):
//! [`parse`] checks and types a command's arguments (the only place that reads its name),
//! then [`Cmd::apply`](Apply::apply) applies the typed command to the keyspace.

use super::error::{invalid, ApplyError};
use super::packed_edit::{self, Found, Item};
use super::parse::{upper, Apply, Parse};
use super::state::StreamState;
use super::value_ops::{load_typed, on_native, prepare, prepare_found, store, wrongtype, Decoded};
use crate::keyspace::native::{ChunkList, NATIVE_MIN};
use crate::keyspace::{Entry, Hints, Keyspace, Kind, Native, Packed};
use crate::rdb::types::LIST_QUICKLIST_2;
use crate::rdb::Value;

/// A key's hints and its elements.
type Loaded = (Hints, Vec<Vec<u8>>);

fn get_list(ks: &Keyspace, db: u64, cmd: &str, key: &[u8]) -> Result<Option<Loaded>, ApplyError> {
    as_list(cmd, key, load_typed(ks, db, key)?)
}

fn as_list(cmd: &str, key: &[u8], d: Option<Decoded>) -> Result<Option<Loaded>, ApplyError> {
    match d {
        None => Ok(None),
        Some((h, Value::List(l), _)) => Ok(Some((h, l))),
        Some(_) => Err(wrongtype(cmd, key)),
    }
}

fn put(
    ks: &mut Keyspace,
    db: u64,
    key: &[u8],
    h: &Hints,
    l: Vec<Vec<u8>>,
) -> Result<(), ApplyError> {
    store(ks, db, key, h, &Value::List(l))
}

/// LPUSH/RPUSH (`front`: LPUSH) and their X forms (`only_if_exists`).
fn push(
    ks: &mut Keyspace,
    db: u64,
    cmd: &str,
    key: &[u8],
    vals: &[Vec<u8>],
    front: bool,
    only_if_exists: bool,
) -> Result<(), ApplyError> {
    let found = match packed_edit::find(ks, db, key, &[LIST_QUICKLIST_2]) {
        Found::Packed(p) => {
            if push_one_node(ks, db, &p, vals, front) {
                return Ok(());
            }
            Some(Entry::Packed(p))
        }
        Found::Other(e) => e,
    };
    let found = prepare_found(
        ks,
        db,
        cmd,
        key,
        Kind::List,
        vals.len(),
        !only_if_exists,
        found,
    )?;
    if let Some(r) = found.run(|| {
        on_list(ks, db, cmd, key, |l| {
            for v in vals {
                if front {
                    l.push_front(v);
                } else {
                    l.push_back(v);
                }
            }
            Ok(())
        })
    }) {
        return r;
    }
    let existing = as_list(cmd, key, found.packed())?;
    if only_if_exists && existing.is_none() {
        return Ok(());
    }
    let (h, mut l) = existing.unwrap_or_default();
    if front {
        for v in vals {
            l.insert(0, v.clone());
        }
    } else {
        l.extend(vals.iter().cloned());
    }
    put(ks, db, key, &h, l)
}

/// A push onto a list held as one listpack node, in place; `false` (nothing stored) when
/// the result would be held otherwise (more nodes, or native).
fn push_one_node(ks: &mut Keyspace, db: u64, p: &Packed, vals: &[Vec<u8>], front: bool) -> bool {
    let Some(mut it) = packed_edit::one_node(p.payload()).and_then(packed_edit::items) else {
        return false;
    };
    if it.len() + vals.len() >= NATIVE_MIN {
        return false;
    }
    if front {
        let mut new: Vec<Item> = vals.iter().rev().map(|v| Item::new(v)).collect();
        new.extend(it);
        it = new;
    } else {
        it.extend(vals.iter().map(|v| Item::new(v)));
    }
    if !packed_edit::fits_one_node(&it) {
        return false;
    }
    packed_edit::store_one_node(ks, db, p, &it);
    true
}

/// LPOP/RPOP key [count] (`front`: LPOP).
fn pop(
    ks: &mut Keyspace,
    db: u64,
    cmd: &str,
    key: &[u8],
    count: usize,
    front: bool,
) -> Result<(), ApplyError> {
    let found = prepare(ks, db, cmd, key, Kind::List, 0, false)?;
    if let Some(r) = found.run(|| {
        on_list(ks, db, cmd, key, |l| {
            for _ in 0..count.min(l.len()) {
                if front {
                    l.pop_front();
                } else {
                    l.pop_back();
                }
            }
            Ok(())
        })
    }) {
        return r;
    }
    let Some((h, mut l)) = as_list(cmd, key, found.packed())? else {
        return Ok(());
    };
    let n = count.min(l.len());
    if front {
        l.drain(..n);
    } else {
        l.truncate(l.len() - n);
    }
    put(ks, db, key, &h, l)
}

/// Run `f` on a native list (`None`: the key is absent or packed).
fn on_list<R>(
    ks: &mut Keyspace,
    db: u64,
    cmd: &str,
    key: &[u8],
    f: impl FnOnce(&mut ChunkList) -> Result<R, ApplyError>,
) -> Option<Result<R, ApplyError>> {
    on_native(ks, db, cmd, key, Kind::List, |n| match n {
        Native::List(l) => f(l),
        _ => Err(wrongtype(cmd, key)),
    })
}

fn index(len: usize, i: i64) -> Option<usize> {
    let i = if i < 0 { len as i64 + i } else { i };
    (0..len as i64).contains(&i).then_some(i as usize)
}

fn lset(ks: &mut Keyspace, db: u64, key: &[u8], idx: i64, v: &[u8]) -> Result<(), ApplyError> {
    let cmd = "LSET";
    let found = prepare(ks, db, cmd, key, Kind::List, 0, false)?;
    if let Some(r) = found.run(|| {
        on_list(ks, db, cmd, key, |l| {
            let i = index(l.len(), idx)
                .ok_or_else(|| invalid(cmd, "index out of range: our data differs"))?;
            l.set(i, v);
            Ok(())
        })
    }) {
        return r;
    }
    let Some((h, mut l)) = as_list(cmd, key, found.packed())? else {
        return Err(invalid(
            cmd,
            "no such key: our data differs from the master's",
        ));
    };
    let i =
        index(l.len(), idx).ok_or_else(|| invalid(cmd, "index out of range: our data differs"))?;
    l[i] = v.to_vec();
    put(ks, db, key, &h, l)
}

fn ltrim(ks: &mut Keyspace, db: u64, key: &[u8], start: i64, stop: i64) -> Result<(), ApplyError> {
    let cmd = "LTRIM";
    let found = match packed_edit::find(ks, db, key, &[LIST_QUICKLIST_2]) {
        Found::Packed(p) => {
            if let Some(it) = packed_edit::one_node(p.payload()).and_then(packed_edit::items) {
                let (from, to) = trim_range(it.len(), start, stop);
                if from == to {
                    ks.remove(db, key);
                    return Ok(());
                }
                if packed_edit::fits_one_node(&it[from..to]) {
                    packed_edit::store_one_node(ks, db, &p, &it[from..to]);
                    return Ok(());
                }
            }
            Some(Entry::Packed(p))
        }
        Found::Other(e) => e,
    };
    let found = prepare_found(ks, db, cmd, key, Kind::List, 0, false, found)?;
    if let Some(r) = found.run(|| {
        on_list(ks, db, cmd, key, |l| {
            let (from, to) = trim_range(l.len(), start, stop);
            // Only the trimmed ends are touched: O(removed), not O(length).
            let tail = l.len() - to;
            for _ in 0..from {
                l.pop_front();
            }
            for _ in 0..tail {
                l.pop_back();
            }
            Ok(())
        })
    }) {
        return r;
    }
    let Some((h, l)) = as_list(cmd, key, found.packed())? else {
        return Ok(());
    };
    let (from, to) = trim_range(l.len(), start, stop);
    put(ks, db, key, &h, l[from..to].to_vec())
}

/// The half-open range LTRIM keeps (empty when it keeps nothing).
fn trim_range(len: usize, start: i64, stop: i64) -> (usize, usize) {
    let len = len as i64;
    let mut s = start;
    let mut e = stop;
    if s < 0 {
        s += len;
    }
    if e < 0 {
        e += len;
    }
    s = s.max(0);
    if s > e || s >= len {
        (0, 0)
    } else {
        (s as usize, e.min(len - 1) as usize + 1)
    }
}

fn lrem(ks: &mut Keyspace, db: u64, key: &[u8], count: i64, v: &[u8]) -> Result<(), ApplyError> {
    let Some((h, mut l)) = get_list(ks, db, "LREM", key)? else {
        return Ok(());
    };
    let limit = if count == 0 {
        usize::MAX
    } else {
        count.unsigned_abs() as usize
    };
    let mut removed = 0;
    if count >= 0 {
        l.retain(|x| {
            if removed < limit && x == v {
                removed += 1;
                false
            } else {
                true
            }
        });
    } else {
        let mut keep = vec![true; l.len()];
        for i in (0..l.len()).rev() {
            if removed < limit && l[i] == v {
                keep[i] = false;
                removed += 1;
            }
        }
        let mut it = keep.into_iter();
        l.retain(|_| it.next().unwrap_or(true));
    }
    put(ks, db, key, &h, l)
}

/// LINSERT key BEFORE|AFTER pivot element.
fn linsert(
    ks: &mut Keyspace,
    db: u64,
    key: &[u8],
    after: bool,
    pivot: &[u8],
    v: &[u8],
) -> Result<(), ApplyError> {
    let Some((h, mut l)) = get_list(ks, db, "LINSERT", key)? else {
        return Ok(());
    };
    if let Some(i) = l.iter().position(|x| x == pivot) {
        l.insert(if after { i + 1 } else { i }, v.to_vec());
        put(ks, db, key, &h, l)?;
    }
    Ok(())
}

/// LMOVE src dst LEFT|RIGHT LEFT|RIGHT, and RPOPLPUSH src dst (`true`: LEFT).
fn lmove(
    ks: &mut Keyspace,
    db: u64,
    cmd: &str,
    src: &[u8],
    dst: &[u8],
    from_left: bool,
    to_left: bool,
) -> Result<(), ApplyError> {
    let Some(len) = list_len(ks, db, cmd, src)? else {
        return Ok(());
    };
    // The destination's type is checked before anything moves, as the server does.
    if src != dst {
        list_len(ks, db, cmd, dst)?;
    }
    if len == 0 || (src == dst && len == 1) {
        return Ok(());
    }
    let Some(v) = pop_one(ks, db, cmd, src, from_left)? else {
        return Ok(());
    };
    let push_cmd = if to_left { "LPUSH" } else { "RPUSH" };
    let one = std::slice::from_ref(&v);
    push(ks, db, push_cmd, dst, one, to_left, false)
}

/// The length of the list at `key` (`None`: absent); another type is [`wrongtype`].
fn list_len(ks: &Keyspace, db: u64, cmd: &str, key: &[u8]) -> Result<Option<usize>, ApplyError> {
    match ks.entry(db, key) {
        None => Ok(None),
        Some(crate::keyspace::Entry::Native(n)) => match &n.value {
            Native::List(l) => Ok(Some(l.len())),
            _ => Err(wrongtype(cmd, key)),
        },
        Some(_) => Ok(get_list(ks, db, cmd, key)?.map(|(_, l)| l.len())),
    }
}

/// Pop one element from either end of the list at `key`.
fn pop_one(
    ks: &mut Keyspace,
    db: u64,
    cmd: &str,
    key: &[u8],
    left: bool,
) -> Result<Option<Vec<u8>>, ApplyError> {
    let found = prepare(ks, db, cmd, key, Kind::List, 0, false)?;
    if let Some(r) = found.run(|| {
        on_list(ks, db, cmd, key, |l| {
            Ok(if left { l.pop_front() } else { l.pop_back() })
        })
    }) {
        return r;
    }
    let Some((h, mut l)) = as_list(cmd, key, found.packed())? else {
        return Ok(None);
    };
    let v = if left {
        (!l.is_empty()).then(|| l.remove(0))
    } else {
        l.pop()
    };
    put(ks, db, key, &h, l)?;
    Ok(v)
}

// ---------------------------------------------------------------- parse and apply

/// A command of this family, parsed: typed arguments, checked before anything changes.
pub(super) enum Cmd<'a> {
    /// LPUSH/RPUSH/LPUSHX/RPUSHX key element…
    Push {
        name: &'static str,
        key: &'a [u8],
        values: &'a [Vec<u8>],
        front: bool,
        only_if_exists: bool,
    },
    /// LPOP/RPOP key [count] (a negative count pops nothing).
    Pop {
        name: &'static str,
        key: &'a [u8],
        count: usize,
        front: bool,
    },
    /// LSET key index element.
    Set {
        key: &'a [u8],
        index: i64,
        value: &'a [u8],
    },
    /// LTRIM key start stop.
    Trim {
        key: &'a [u8],
        start: i64,
        stop: i64,
    },
    /// LREM key count element.
    Rem {
        key: &'a [u8],
        count: i64,
        value: &'a [u8],
    },
    /// LINSERT key BEFORE|AFTER pivot element.
    Insert {
        key: &'a [u8],
        after: bool,
        pivot: &'a [u8],
        value: &'a [u8],
    },
    /// LMOVE src dst LEFT|RIGHT LEFT|RIGHT, and RPOPLPUSH src dst (`true`: LEFT).
    Move {
        name: &'static str,
        src: &'a [u8],
        dst: &'a [u8],
        from_left: bool,
        to_left: bool,
    },
}

/// Which of `keywords` (any case) `a` is.
fn keyword(a: &[u8], keywords: &[&str]) -> Option<usize> {
    keywords
        .iter()
        .position(|k| a.eq_ignore_ascii_case(k.as_bytes()))
}

pub(super) fn parse<'a>(mut p: Parse<'a>) -> Result<Cmd<'a>, ApplyError> {
    let name = p.name();
    let cmd = match name {
        "LPUSH" | "RPUSH" | "LPUSHX" | "RPUSHX" => {
            let key = p.next()?;
            let values = p.rest();
            if values.is_empty() {
                return Err(p.error("wrong number of arguments"));
            }
            Cmd::Push {
                name,
                key,
                values,
                front: matches!(name, "LPUSH" | "LPUSHX"),
                only_if_exists: matches!(name, "LPUSHX" | "RPUSHX"),
            }
        }
        "LPOP" | "RPOP" => {
            let key = p.next()?;
            let count = p.optional_count()?;
            Cmd::Pop {
                name,
                key,
                count,
                front: name == "LPOP",
            }
        }
        "LSET" => Cmd::Set {
            key: p.next()?,
            index: p.next_i64()?,
            value: p.next()?,
        },
        "LTRIM" => Cmd::Trim {
            key: p.next()?,
            start: p.next_i64()?,
            stop: p.next_i64()?,
        },
        "LREM" => Cmd::Rem {
            key: p.next()?,
            count: p.next_i64()?,
            value: p.next()?,
        },
        "LINSERT" => {
            let (key, wh, pivot, value) = (p.next()?, p.next()?, p.next()?, p.next()?);
            p.finish()?;
            let after = match keyword(wh, &["BEFORE", "AFTER"]) {
                Some(i) => i == 1,
                None => return Err(p.error(format!("unknown position {}", upper(wh)))),
            };
            Cmd::Insert {
                key,
                after,
                pivot,
                value,
            }
        }
        "RPOPLPUSH" => Cmd::Move {
            name,
            src: p.next()?,
            dst: p.next()?,
            from_left: false,
            to_left: true,
        },
        "LMOVE" => {
            let (src, dst, f, t) = (p.next()?, p.next()?, p.next()?, p.next()?);
            p.finish()?;
            let side = |x: &[u8]| match keyword(x, &["LEFT", "RIGHT"]) {
                Some(i) => Ok(i == 0),
                None => Err(p.error(format!("unknown side {}", upper(x)))),
            };
            Cmd::Move {
                name,
                src,
                dst,
                from_left: side(f)?,
                to_left: side(t)?,
            }
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
            Cmd::Push {
                name,
                key,
                values,
                front,
                only_if_exists,
            } => push(ks, db, name, key, values, front, only_if_exists),
            Cmd::Pop {
                name,
                key,
                count,
                front,
            } => pop(ks, db, name, key, count, front),
            Cmd::Set { key, index, value } => lset(ks, db, key, index, value),
            Cmd::Trim { key, start, stop } => ltrim(ks, db, key, start, stop),
            Cmd::Rem { key, count, value } => lrem(ks, db, key, count, value),
            Cmd::Insert {
                key,
                after,
                pivot,
                value,
            } => linsert(ks, db, key, after, pivot, value),
            Cmd::Move {
                name,
                src,
                dst,
                from_left,
                to_left,
            } => lmove(ks, db, name, src, dst, from_left, to_left),
        }
    }
}

#[cfg(test)]
#[path = "lists_tests.rs"]
mod tests;
