//! List commands in their propagated forms (blocking pops arrive as LPOP/RPOP/LMOVE).

use super::error::{arg_i64, invalid, ApplyError};
use super::packed_edit::{self, Found, Item};
use super::parse::{Apply, Parse};
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

pub fn push(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, vals @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    if vals.is_empty() {
        return Err(invalid(cmd, "wrong number of arguments"));
    }
    let only_if_exists = cmd.ends_with('X');
    let found = match packed_edit::find(ks, db, key, &[LIST_QUICKLIST_2]) {
        Found::Packed(p) => {
            if push_one_node(ks, db, &p, vals, cmd.starts_with('L')) {
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
                if cmd.starts_with('L') {
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
    if cmd.starts_with('L') {
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

/// LPOP/RPOP key [count].
pub fn pop(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let (key, count) = match args {
        [k] => (k, 1),
        [k, c] => (k, arg_i64(cmd, c)?.max(0) as usize),
        _ => return Err(invalid(cmd, "wrong number of arguments")),
    };
    let found = prepare(ks, db, cmd, key, Kind::List, 0, false)?;
    if let Some(r) = found.run(|| {
        on_list(ks, db, cmd, key, |l| {
            for _ in 0..count.min(l.len()) {
                if cmd == "LPOP" {
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
    if cmd == "LPOP" {
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

pub fn lset(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, idx, v] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let idx = arg_i64(cmd, idx)?;
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
    l[i] = v.clone();
    put(ks, db, key, &h, l)
}

pub fn ltrim(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, start, stop] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let (start, stop) = (arg_i64(cmd, start)?, arg_i64(cmd, stop)?);
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

pub fn lrem(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, count, v] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let Some((h, mut l)) = get_list(ks, db, cmd, key)? else {
        return Ok(());
    };
    let count = arg_i64(cmd, count)?;
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
            if removed < limit && &l[i] == v {
                keep[i] = false;
                removed += 1;
            }
        }
        let mut it = keep.into_iter();
        l.retain(|_| it.next().unwrap_or(true));
    }
    put(ks, db, key, &h, l)
}

pub fn linsert(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, wh, pivot, v] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let Some((h, mut l)) = get_list(ks, db, cmd, key)? else {
        return Ok(());
    };
    let after = match String::from_utf8_lossy(wh).to_ascii_uppercase().as_str() {
        "BEFORE" => false,
        "AFTER" => true,
        o => return Err(invalid(cmd, format!("unknown position {o}"))),
    };
    if let Some(i) = l.iter().position(|x| x == pivot) {
        l.insert(if after { i + 1 } else { i }, v.clone());
        put(ks, db, key, &h, l)?;
    }
    Ok(())
}

/// LMOVE src dst LEFT|RIGHT LEFT|RIGHT, and RPOPLPUSH src dst.
pub fn lmove(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let (src, dst, from_left, to_left) = match (cmd, args) {
        ("RPOPLPUSH", [s, d]) => (s, d, false, true),
        ("LMOVE", [s, d, f, t]) => {
            let side = |x: &[u8]| match String::from_utf8_lossy(x).to_ascii_uppercase().as_str() {
                "LEFT" => Ok(true),
                "RIGHT" => Ok(false),
                o => Err(invalid(cmd, format!("unknown side {o}"))),
            };
            (s, d, side(f)?, side(t)?)
        }
        _ => return Err(invalid(cmd, "wrong number of arguments")),
    };
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
    push(ks, db, push_cmd, &[dst.clone(), v])
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

// ---------------------------------------------------------------- parsed form
// Transitional: the name and raw arguments, applied by the functions above. Each family
// moves to typed variants (see parse.rs).

/// A command of this family, parsed.
pub(super) struct Cmd<'a> {
    name: &'static str,
    args: &'a [Vec<u8>],
}

pub(super) fn parse(mut p: Parse<'_>) -> Result<Cmd<'_>, ApplyError> {
    Ok(Cmd {
        name: p.name(),
        args: p.rest(),
    })
}

impl Apply for Cmd<'_> {
    fn apply(self, ks: &mut Keyspace, st: &mut StreamState) -> Result<(), ApplyError> {
        let (name, args) = (self.name, self.args);
        match name {
            "LPUSH" | "RPUSH" | "LPUSHX" | "RPUSHX" => push(ks, st.db, name, args),
            "LPOP" | "RPOP" => pop(ks, st.db, name, args),
            "LSET" => lset(ks, st.db, name, args),
            "LTRIM" => ltrim(ks, st.db, name, args),
            "LREM" => lrem(ks, st.db, name, args),
            "LINSERT" => linsert(ks, st.db, name, args),
            "LMOVE" | "RPOPLPUSH" => lmove(ks, st.db, name, args),
            _ => Err(ApplyError::Unknown(name.to_string())),
        }
    }
}
