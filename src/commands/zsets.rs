//! Sorted-set commands in their propagated forms (GEOADD arrives as ZADD, blocking pops
//! as ZPOPMIN/ZPOPMAX): [`parse`] checks and types a command's arguments (the only place
//! that reads its name), then [`Cmd::apply`](Apply::apply) applies the typed command. Also
//! the sorted-set model `zstore` and `restore` share (`ZSet`, `upsert`, `built`, `put`).

use super::error::{invalid, ApplyError};
use super::packed_edit::{self, Found, Item};
use super::parse::{Apply, Parse};
use super::state::StreamState;
use super::value_ops::{load_typed, on_native, prepare, prepare_found, wrongtype, Decoded};
use crate::keyspace::native::{ZSetNative, NATIVE_MIN};
use crate::keyspace::{Entry, Hints, Keyspace, Kind, Native, Packed};
use crate::rdb::types::{ZSET_2, ZSET_LISTPACK};
use crate::rdb::writer::target::thresholds::{ZSET_MAX_LISTPACK_ENTRIES, ZSET_MAX_LISTPACK_VALUE};
use crate::rdb::Value;

pub(super) type Pairs = Vec<(Vec<u8>, f64)>;

/// A sorted set as the master holds it: its pairs, and whether it is still in the compact
/// (listpack) encoding, which matters because the master prints scores into a listpack
/// through an integer fast path that turns -0 into 0 (Redis 7.0+, Valkey).
pub(super) struct ZSet {
    pub(super) hints: Hints,
    pub(super) pairs: Pairs,
    pub(super) listpack: bool,
}

pub(super) fn get_zset(
    ks: &Keyspace,
    db: u64,
    cmd: &str,
    key: &[u8],
) -> Result<Option<ZSet>, ApplyError> {
    as_zset(cmd, key, load_typed(ks, db, key)?)
}

fn as_zset(cmd: &str, key: &[u8], d: Option<Decoded>) -> Result<Option<ZSet>, ApplyError> {
    match d {
        None => Ok(None),
        Some((hints, Value::SortedSet(pairs), ty)) => Ok(Some(ZSet {
            hints,
            pairs,
            listpack: ty != ZSET_2 && ty != crate::rdb::types::ZSET,
        })),
        Some(_) => Err(wrongtype(cmd, key)),
    }
}

/// A new key: compact unless the command's own members already exceed the thresholds
/// (the servers size a new set from the command's element count and longest member).
pub(super) fn new_zset(count: usize, longest: usize) -> ZSet {
    ZSet {
        hints: Hints::default(),
        pairs: Vec::new(),
        listpack: count <= ZSET_MAX_LISTPACK_ENTRIES && longest <= ZSET_MAX_LISTPACK_VALUE,
    }
}

/// Insert or update one member the way the server does: a compact set that would grow past
/// its thresholds is converted first; a score stored compact has the listpack's -0 rule.
pub(super) fn upsert(z: &mut ZSet, st: &StreamState, member: &[u8], score: f64) {
    let exists = z.pairs.iter().any(|(m, _)| m == member);
    if z.listpack
        && !exists
        && (z.pairs.len() + 1 > ZSET_MAX_LISTPACK_ENTRIES || member.len() > ZSET_MAX_LISTPACK_VALUE)
    {
        z.listpack = false;
    }
    let score = if z.listpack && st.listpack_zero_is_positive && score == 0.0 {
        0.0
    } else {
        score
    };
    match z.pairs.iter_mut().find(|(m, _)| m == member) {
        Some((_, s)) => *s = score,
        None => z.pairs.push((member.to_vec(), score)),
    }
}

/// A set built whole, as a server loading it or a *STORE command builds it: compact when
/// small enough, where -0 is stored as 0 (Redis 7.0+, Valkey); plain otherwise.
pub(super) fn built(hints: Hints, pairs: Pairs, st: &StreamState) -> ZSet {
    let longest = pairs.iter().map(|(m, _)| m.len()).max().unwrap_or(0);
    let listpack = pairs.len() <= ZSET_MAX_LISTPACK_ENTRIES && longest <= ZSET_MAX_LISTPACK_VALUE;
    let pairs = if listpack && st.listpack_zero_is_positive {
        pairs
            .into_iter()
            .map(|(m, s)| (m, if s == 0.0 { 0.0 } else { s }))
            .collect()
    } else {
        pairs
    };
    ZSet {
        hints,
        pairs,
        listpack,
    }
}

pub(super) fn put(ks: &mut Keyspace, db: u64, key: &[u8], z: ZSet) -> Result<(), ApplyError> {
    if z.pairs.is_empty() {
        ks.remove(db, key);
        return Ok(());
    }
    // Stored plain once the master's is plain: it never goes back to compact.
    let source = if z.listpack { None } else { Some(ZSET_2) };
    ks.set_with(db, key, &z.hints, &Value::SortedSet(z.pairs), source)?;
    Ok(())
}

pub(super) fn score(cmd: &str, a: &[u8]) -> Result<f64, ApplyError> {
    crate::rdb::parse_double(a)
        .filter(|d| !d.is_nan())
        .ok_or_else(|| {
            invalid(
                cmd,
                format!("not a valid score: {:?}", String::from_utf8_lossy(a)),
            )
        })
}

/// ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...], its scores
/// (`parsed`) checked.
fn zadd(
    ks: &mut Keyspace,
    st: &StreamState,
    key: &[u8],
    flags: &ZaddFlags,
    parsed: &[(f64, &[u8])],
) -> Result<(), ApplyError> {
    let cmd = "ZADD";
    let db = st.db;
    let xx = flags.xx;
    let longest = parsed.iter().map(|p| p.1.len()).max().unwrap_or(0);
    let first = parsed.first().map_or(0, |p| p.1.len());
    let count = parsed.len();
    use super::state::ZaddHint;
    // What the command's own members decide (see ZaddHint): the encoding of a new set,
    // and whether an existing compact one is converted before anything is inserted.
    let (new_plain, convert_first) = match st.zadd_hint {
        ZaddHint::FirstMember => (first > ZSET_MAX_LISTPACK_VALUE, false),
        ZaddHint::Count => {
            let many = count > ZSET_MAX_LISTPACK_ENTRIES;
            (many || first > ZSET_MAX_LISTPACK_VALUE, many)
        }
        ZaddHint::CountAndLongest => {
            let big = count > ZSET_MAX_LISTPACK_ENTRIES || longest > ZSET_MAX_LISTPACK_VALUE;
            (big, big)
        }
    };
    // A new set the master creates as a skiplist is native from the start when it is big.
    let create = !xx && new_plain;
    let found = match packed_edit::find(ks, db, key, &[ZSET_LISTPACK]) {
        Found::Packed(p) => {
            if !convert_first && zadd_listpack(ks, st, cmd, &p, flags, parsed)? {
                return Ok(());
            }
            Some(Entry::Packed(p))
        }
        Found::Other(e) => e,
    };
    let found = prepare_found(ks, db, cmd, key, Kind::ZSet, parsed.len(), create, found)?;
    if let Some(r) = found.run(|| {
        on_zset(ks, db, cmd, key, |z| {
            for &(s, m) in parsed {
                if let Some(n) = zadd_one(cmd, flags, z.score(m), s)? {
                    z.set(m, n);
                }
            }
            Ok(())
        })
    }) {
        return r;
    }
    let mut z = match as_zset(cmd, key, found.packed())? {
        Some(mut z) => {
            z.listpack &= !convert_first;
            z
        }
        None if xx => return Ok(()),
        None => ZSet {
            hints: Hints::default(),
            pairs: Vec::new(),
            listpack: !new_plain,
        },
    };
    for (i, &(s, m)) in parsed.iter().enumerate() {
        let cur = z.pairs.iter().find(|(x, _)| x == m).map(|(_, c)| *c);
        if let Some(new) = zadd_one(cmd, flags, cur, s)? {
            upsert(&mut z, st, m, new);
        }
        let rest = &parsed[i + 1..];
        if !z.listpack && !rest.is_empty() && z.pairs.len() + rest.len() >= NATIVE_MIN {
            // The master holds a skiplist now: go on natively, without a scan per member.
            let mut n = ZSetNative::default();
            for (m, s) in &z.pairs {
                n.set(m, *s);
            }
            for &(s, m) in rest {
                if let Some(v) = zadd_one(cmd, flags, n.score(m), s)? {
                    n.set(m, v);
                }
            }
            ks.put(db, Entry::native(key, z.hints, Native::ZSet(n)));
            return Ok(());
        }
    }
    put(ks, db, key, z)
}

/// ZADD on a sorted set held as a listpack, entry by entry: a changed member is moved to
/// its place by a binary search, the other entries are copied as stored. `Ok(false)`
/// (nothing stored) when the master would convert the set, which the general path does.
fn zadd_listpack(
    ks: &mut Keyspace,
    st: &StreamState,
    cmd: &str,
    p: &Packed,
    flags: &ZaddFlags,
    parsed: &[(f64, &[u8])],
) -> Result<bool, ApplyError> {
    if parsed
        .iter()
        .any(|(_, m)| m.len() > ZSET_MAX_LISTPACK_VALUE)
    {
        return Ok(false);
    }
    let Some(it) = packed_edit::blob(p.payload()).and_then(packed_edit::items) else {
        return Ok(false);
    };
    if it.len() % 2 != 0 {
        return Ok(false);
    }
    // (member, score entry, the score when this command set it)
    let mut pairs: Vec<(Item, Item, Option<f64>)> = Vec::with_capacity(it.len() / 2 + parsed.len());
    let mut entries = it.into_iter();
    while let (Some(m), Some(s)) = (entries.next(), entries.next()) {
        pairs.push((m, s, None));
    }
    let score_of =
        |p: &(Item, Item, Option<f64>)| p.2.or_else(|| p.1.elem.and_then(|e| e.as_f64()));
    for &(s, member) in parsed {
        let j = pairs.iter().position(|(m, _, _)| m.is(member));
        let cur = match j {
            Some(j) => match score_of(&pairs[j]) {
                Some(c) => Some(c),
                None => return Ok(false),
            },
            None => None,
        };
        let Some(new) = zadd_one(cmd, flags, cur, s)? else {
            continue;
        };
        if j.is_none() && pairs.len() + 1 > ZSET_MAX_LISTPACK_ENTRIES {
            return Ok(false);
        }
        let new = if st.listpack_zero_is_positive && new == 0.0 {
            0.0
        } else {
            new
        };
        if let Some(j) = j {
            pairs.remove(j);
        }
        // The servers' order: by score, then member bytes (-0 and 0 compare equal).
        let mut bad = false;
        let at = pairs.partition_point(|p| {
            let Some(sc) = score_of(p) else {
                bad = true;
                return false;
            };
            match sc.partial_cmp(&new).unwrap_or(std::cmp::Ordering::Equal) {
                std::cmp::Ordering::Less => true,
                std::cmp::Ordering::Greater => false,
                std::cmp::Ordering::Equal => match p.0.elem {
                    Some(crate::rdb::packed::Elem::Str(b)) => b < member,
                    Some(e) => e.to_bytes().as_slice() < member,
                    None => false,
                },
            }
        });
        if bad {
            return Ok(false);
        }
        pairs.insert(
            at,
            (
                Item::new(member),
                Item::encoded(crate::dtoa::score_text(new, st.score_text).as_bytes()),
                Some(new),
            ),
        );
    }
    let flat: Vec<Item> = pairs.into_iter().flat_map(|(m, s, _)| [m, s]).collect();
    packed_edit::store(ks, st.db, p, ZSET_LISTPACK, &packed_edit::listpack(&flat));
    Ok(true)
}

/// ZADD's options (CH changes only the reply).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ZaddFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    incr: bool,
}

/// The new score ZADD gives a member whose score is `cur` (`None`: absent), or `None`
/// when it leaves the member as it is.
fn zadd_one(cmd: &str, f: &ZaddFlags, cur: Option<f64>, s: f64) -> Result<Option<f64>, ApplyError> {
    Ok(match cur {
        Some(_) if f.nx => None,
        None if f.xx => None,
        Some(c) => {
            let new = if f.incr { c + s } else { s };
            if new.is_nan() {
                return Err(invalid(cmd, "NaN result: our data differs"));
            }
            // Numerically equal (0 and -0 included): the server leaves the score as is.
            if (f.gt && new <= c) || (f.lt && new >= c) || new == c {
                None
            } else {
                Some(new)
            }
        }
        None => Some(s),
    })
}

/// Run `f` on a native sorted set (`None`: the key is absent or packed).
fn on_zset<R>(
    ks: &mut Keyspace,
    db: u64,
    cmd: &str,
    key: &[u8],
    f: impl FnOnce(&mut ZSetNative) -> Result<R, ApplyError>,
) -> Option<Result<R, ApplyError>> {
    on_native(ks, db, cmd, key, Kind::ZSet, |n| match n {
        Native::ZSet(z) => f(z),
        _ => Err(wrongtype(cmd, key)),
    })
}

/// ZINCRBY key increment member.
fn zincrby(
    ks: &mut Keyspace,
    st: &StreamState,
    key: &[u8],
    by: f64,
    member: &[u8],
) -> Result<(), ApplyError> {
    let cmd = "ZINCRBY";
    let db = st.db;
    let found = prepare(ks, db, cmd, key, Kind::ZSet, 0, false)?;
    if let Some(r) = found.run(|| {
        on_zset(ks, db, cmd, key, |z| {
            let cur = z.score(member);
            let n = cur.map_or(by, |c| c + by);
            if n.is_nan() {
                return Err(invalid(cmd, "NaN result: our data differs"));
            }
            if cur != Some(n) {
                z.set(member, n);
            }
            Ok(())
        })
    }) {
        return r;
    }
    let mut z = match as_zset(cmd, key, found.packed())? {
        Some(z) => z,
        None => new_zset(1, member.len()),
    };
    let cur = z.pairs.iter().find(|(x, _)| x == member).map(|(_, c)| *c);
    let n = cur.map_or(by, |c| c + by);
    if n.is_nan() {
        return Err(invalid(cmd, "NaN result: our data differs"));
    }
    if cur == Some(n) {
        return Ok(());
    }
    upsert(&mut z, st, member, n);
    put(ks, db, key, z)
}

/// ZREM key member…
fn zrem(
    ks: &mut Keyspace,
    st: &StreamState,
    key: &[u8],
    members: &[Vec<u8>],
) -> Result<(), ApplyError> {
    let cmd = "ZREM";
    let db = st.db;
    let found = prepare(ks, db, cmd, key, Kind::ZSet, 0, false)?;
    if let Some(r) = found.run(|| {
        on_zset(ks, db, cmd, key, |z| {
            for m in members {
                z.remove(m);
            }
            Ok(())
        })
    }) {
        return r;
    }
    let Some(mut z) = as_zset(cmd, key, found.packed())? else {
        return Ok(());
    };
    let gone: std::collections::HashSet<&[u8]> = members.iter().map(|x| x.as_slice()).collect();
    z.pairs.retain(|(m, _)| !gone.contains(m.as_slice()));
    put(ks, db, key, z)
}

/// ZPOPMIN/ZPOPMAX key [count] (`min`: ZPOPMIN).
fn zpop(
    ks: &mut Keyspace,
    st: &StreamState,
    cmd: &str,
    key: &[u8],
    count: usize,
    min: bool,
) -> Result<(), ApplyError> {
    let db = st.db;
    let found = prepare(ks, db, cmd, key, Kind::ZSet, 0, false)?;
    if let Some(r) = found.run(|| {
        on_zset(ks, db, cmd, key, |z| {
            for _ in 0..count {
                if z.pop(min).is_none() {
                    break;
                }
            }
            Ok(())
        })
    }) {
        return r;
    }
    let Some(mut z) = as_zset(cmd, key, found.packed())? else {
        return Ok(());
    };
    z.pairs.sort_by(|a, b| {
        a.1.partial_cmp(&b.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.0.cmp(&b.0))
    });
    let n = count.min(z.pairs.len());
    if min {
        z.pairs.drain(..n);
    } else {
        let keep = z.pairs.len() - n;
        z.pairs.truncate(keep);
    }
    put(ks, db, key, z)
}

// ---------------------------------------------------------------- parse and apply

/// A command of this family, parsed: typed arguments, checked before anything changes.
pub(super) enum Cmd<'a> {
    /// ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member…, every score checked.
    Add {
        key: &'a [u8],
        flags: ZaddFlags,
        pairs: Vec<(f64, &'a [u8])>,
    },
    /// ZINCRBY key increment member.
    IncrBy {
        key: &'a [u8],
        by: f64,
        member: &'a [u8],
    },
    /// ZREM key member…
    Rem {
        key: &'a [u8],
        members: &'a [Vec<u8>],
    },
    /// ZPOPMIN/ZPOPMAX key [count] (a negative count pops nothing).
    Pop {
        name: &'static str,
        key: &'a [u8],
        count: usize,
        min: bool,
    },
}

pub(super) fn parse<'a>(mut p: Parse<'a>) -> Result<Cmd<'a>, ApplyError> {
    let name = p.name();
    let cmd = match name {
        "ZADD" => {
            let key = p.next()?;
            let mut flags = ZaddFlags::default();
            while let Some(i) = p.eat_any(&["NX", "XX", "GT", "LT", "CH", "INCR"]) {
                match i {
                    0 => flags.nx = true,
                    1 => flags.xx = true,
                    2 => flags.gt = true,
                    3 => flags.lt = true,
                    5 => flags.incr = true,
                    _ => {}
                }
            }
            // Every score is checked before anything changes, as the server does.
            let rest = p.pairs()?;
            let mut pairs = Vec::with_capacity(rest.len() / 2);
            for sm in rest.chunks_exact(2) {
                pairs.push((score(name, &sm[0])?, sm[1].as_slice()));
            }
            Cmd::Add { key, flags, pairs }
        }
        "ZINCRBY" => {
            let (key, by, member) = (p.next()?, p.next()?, p.next()?);
            p.finish()?;
            Cmd::IncrBy {
                key,
                by: score(name, by)?,
                member,
            }
        }
        "ZREM" => Cmd::Rem {
            key: p.next()?,
            members: p.rest(),
        },
        "ZPOPMIN" | "ZPOPMAX" => {
            let key = p.next()?;
            let count = p.optional_count()?;
            Cmd::Pop {
                name,
                key,
                count,
                min: name == "ZPOPMIN",
            }
        }
        _ => return Err(ApplyError::Unknown(name.to_string())),
    };
    p.finish()?;
    Ok(cmd)
}

impl Apply for Cmd<'_> {
    fn apply(self, ks: &mut Keyspace, st: &mut StreamState) -> Result<(), ApplyError> {
        match self {
            Cmd::Add { key, flags, pairs } => zadd(ks, st, key, &flags, &pairs),
            Cmd::IncrBy { key, by, member } => zincrby(ks, st, key, by, member),
            Cmd::Rem { key, members } => zrem(ks, st, key, members),
            Cmd::Pop {
                name,
                key,
                count,
                min,
            } => zpop(ks, st, name, key, count, min),
        }
    }
}

#[cfg(test)]
#[path = "zsets_tests.rs"]
mod tests;
