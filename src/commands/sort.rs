//! SORT … STORE, propagated as typed: the master sorts (numbers, or bytes with ALPHA: a
//! STORE compares binary, never by locale), optionally BY a pattern and GET patterns, and
//! stores the result as a list (no TTL), or deletes the destination when it is empty.
//!
//! Ties follow the server: numeric ties compare the elements' bytes; ALPHA BY ties keep
//! the input order (a stable sort; the server's qsort is glibc's merge sort there). A
//! sorted set sorted by SORT is converted to a skiplist on the master, for good, even when
//! nothing is stored; with STORE we see it and mark ours plain too (the -0 rule depends on
//! it). A SORT without STORE is never propagated, so that conversion is invisible to every
//! replica (the servers' own included).
//!
//! [`parse`] checks and types SORT's options (the only place that reads them), then
//! [`Cmd::apply`](Apply::apply) sorts and stores.

use std::cmp::Ordering;

use super::error::{arg_i64, invalid, ApplyError};
use super::parse::{Apply, Parse};
use super::state::StreamState;
use super::value_ops::{load, store, wrongtype};
use super::zsets::{get_zset, put as put_zset};
use crate::keyspace::{Hints, Keyspace};
use crate::rdb::Value;

/// Resolve a BY/GET pattern for `elem`: `#` is the element, `prefix*suffix` a string key,
/// `prefix*suffix->field` a hash field. None when missing or of another type.
fn by_pattern(ks: &Keyspace, db: u64, pattern: &[u8], elem: &[u8]) -> Option<Vec<u8>> {
    if pattern == b"#" {
        return Some(elem.to_vec());
    }
    let star = pattern.iter().position(|&b| b == b'*')?;
    let rest = &pattern[star + 1..];
    let (suffix, field) = match rest.windows(2).position(|w| w == b"->") {
        Some(i) if i + 2 < rest.len() => (&rest[..i], Some(&rest[i + 2..])),
        _ => (rest, None),
    };
    let mut key = pattern[..star].to_vec();
    key.extend_from_slice(elem);
    key.extend_from_slice(suffix);
    match (load(ks, db, &key).ok()??.1, field) {
        (Value::String(s), None) => Some(s),
        (Value::Hash(fields), Some(f)) => {
            fields.into_iter().find(|h| h.field == f).map(|h| h.value)
        }
        _ => None,
    }
}

/// The server's `string2d`: a whole-string double, no spaces, no NaN.
fn string2d(s: &[u8]) -> Option<f64> {
    let t = std::str::from_utf8(s).ok()?;
    if t.is_empty()
        || t.starts_with(|c: char| c.is_whitespace())
        || t.ends_with(|c: char| c.is_whitespace())
    {
        return None;
    }
    t.parse::<f64>().ok().filter(|d| !d.is_nan())
}

/// SORT key … STORE dest, its options parsed.
fn sort(ks: &mut Keyspace, st: &StreamState, s: SortStore<'_>) -> Result<(), ApplyError> {
    let cmd = "SORT";
    let db = st.db;
    let SortStore {
        key,
        dest,
        desc,
        mut alpha,
        mut dontsort,
        limit: (limit_start, limit_count),
        mut by,
        gets,
    } = s;
    enum Src {
        List(Vec<Vec<u8>>),
        Set(Vec<Vec<u8>>),
        ZSet(Vec<(Vec<u8>, f64)>),
    }
    let src = match load(ks, db, key)? {
        None => Src::List(Vec::new()),
        Some((_, Value::List(l))) => Src::List(l),
        Some((_, Value::Set(s))) => Src::Set(s),
        Some((_, Value::SortedSet(_))) => {
            // The master converts the sorted set to a skiplist for good.
            let mut z = get_zset(ks, db, cmd, key)?.ok_or_else(|| invalid(cmd, "vanished"))?;
            let pairs = z.pairs.clone();
            if z.listpack {
                z.listpack = false;
                put_zset(ks, db, key, z)?;
            }
            Src::ZSet(pairs)
        }
        Some(_) => return Err(wrongtype(cmd, key)),
    };
    if dontsort && matches!(src, Src::Set(_)) {
        // A set has no order of its own: with STORE the server sorts it by its bytes.
        dontsort = false;
        alpha = true;
        by = None;
    }
    let len = match &src {
        Src::List(v) | Src::Set(v) => v.len(),
        Src::ZSet(v) => v.len(),
    } as i64;
    let mut start = limit_start.max(0).min(len);
    let limit_count = limit_count.max(-1).min(len);
    let mut end = if limit_count < 0 {
        len - 1
    } else {
        start + limit_count - 1
    };
    if start >= len {
        start = len - 1;
        end = len - 2;
    }
    if end >= len {
        end = len - 1;
    }
    let is_list = matches!(src, Src::List(_));
    let mut elems: Vec<Vec<u8>> = match src {
        Src::List(v) | Src::Set(v) => v,
        Src::ZSet(mut v) => {
            v.sort_by(|a, b| {
                a.1.partial_cmp(&b.1)
                    .unwrap_or(Ordering::Equal)
                    .then_with(|| a.0.cmp(&b.0))
            });
            v.into_iter().map(|(m, _)| m).collect()
        }
    };
    if dontsort {
        // Lists and sorted sets keep their order (reversed with DESC).
        if desc {
            elems.reverse();
        }
    } else {
        let keys: Vec<Option<Vec<u8>>> = match by {
            Some(p) => elems.iter().map(|e| by_pattern(ks, db, p, e)).collect(),
            None => elems.iter().map(|e| Some(e.clone())).collect(),
        };
        let mut idx: Vec<usize> = (0..elems.len()).collect();
        if alpha && by.is_some() && !(is_list && start == 0 && end == len - 1) {
            // Ties between different elements keep the order the server read them in,
            // through its qsort (pqsort with LIMIT, which is not stable): a set's or sorted
            // set's internal order, which no replica knows.
            let mut seen = std::collections::HashMap::new();
            for (i, k) in keys.iter().enumerate() {
                if let Some(&j) = seen.get(k) {
                    if elems[i] != elems[j] {
                        return Err(invalid(
                            cmd,
                            format!(
                                "ALPHA BY ties between different elements of a {} ({start}..={end} of {len}): \
                                 the order is the master's internal one",
                                if is_list { "list" } else { "set or sorted set" }
                            ),
                        ));
                    }
                }
                seen.insert(k.clone(), i);
            }
        }
        if alpha {
            let by_pattern = by.is_some();
            idx.sort_by(|&a, &b| {
                let c = if by_pattern {
                    match (&keys[a], &keys[b]) {
                        (None, None) => Ordering::Equal,
                        (None, Some(_)) => Ordering::Less,
                        (Some(_), None) => Ordering::Greater,
                        (Some(x), Some(y)) => x.cmp(y),
                    }
                } else {
                    elems[a].cmp(&elems[b])
                };
                if desc {
                    c.reverse()
                } else {
                    c
                }
            });
        } else {
            let mut scores = Vec::with_capacity(elems.len());
            for k in &keys {
                scores.push(match k {
                    None => 0.0,
                    Some(v) => string2d(v).ok_or_else(|| {
                        invalid(
                            cmd,
                            "a score the master converted cannot be: our data differs",
                        )
                    })?,
                });
            }
            idx.sort_by(|&a, &b| {
                let c = scores[a]
                    .partial_cmp(&scores[b])
                    .unwrap_or(Ordering::Equal)
                    .then_with(|| elems[a].cmp(&elems[b]));
                if desc {
                    c.reverse()
                } else {
                    c
                }
            });
        }
        elems = idx
            .into_iter()
            .map(|i| std::mem::take(&mut elems[i]))
            .collect();
    }
    let mut out: Vec<Vec<u8>> = Vec::new();
    if end >= start && start >= 0 {
        for e in &elems[start as usize..=end as usize] {
            if gets.is_empty() {
                out.push(e.clone());
            } else {
                for g in &gets {
                    out.push(by_pattern(ks, db, g, e).unwrap_or_default());
                }
            }
        }
    }
    if out.is_empty() {
        ks.remove(db, dest);
        return Ok(());
    }
    store(ks, db, dest, &Hints::default(), &Value::List(out))
}

// ---------------------------------------------------------------- parse and apply

/// SORT key [BY pattern] [LIMIT offset count] [GET pattern…] [ASC|DESC] [ALPHA] STORE dest.
pub(super) struct SortStore<'a> {
    key: &'a [u8],
    dest: &'a [u8],
    desc: bool,
    alpha: bool,
    /// BY a pattern without `*`: the elements are not sorted.
    dontsort: bool,
    /// LIMIT offset count (default `(0, -1)`: everything).
    limit: (i64, i64),
    by: Option<&'a [u8]>,
    gets: Vec<&'a [u8]>,
}

/// A command of this family, parsed: typed arguments, checked before anything changes.
pub(super) enum Cmd<'a> {
    /// SORT … STORE dest.
    Store(SortStore<'a>),
    /// A SORT without STORE: it writes nothing (and is never propagated).
    NoStore,
}

pub(super) fn parse<'a>(mut p: Parse<'a>) -> Result<Cmd<'a>, ApplyError> {
    let name = p.name();
    if name != "SORT" {
        return Err(ApplyError::Unknown(name.to_string()));
    }
    let key = p.next()?;
    let (mut desc, mut alpha, mut dontsort) = (false, false, false);
    let (mut limit_start, mut limit_count) = (0i64, -1i64);
    let mut by: Option<&[u8]> = None;
    let mut gets: Vec<&[u8]> = Vec::new();
    let mut dest: Option<&[u8]> = None;
    const OPTIONS: [&str; 7] = ["ASC", "DESC", "ALPHA", "LIMIT", "STORE", "BY", "GET"];
    while !p.is_done() {
        let Some(i) = p.eat_any(&OPTIONS) else {
            let o = p.next()?;
            return Err(p.error(format!(
                "unknown option {}",
                String::from_utf8_lossy(o).to_ascii_uppercase()
            )));
        };
        let o = OPTIONS[i];
        match i {
            0 => desc = false,
            1 => desc = true,
            2 => alpha = true,
            3 => {
                limit_start = arg_i64(name, p.next_or(format!("{o} needs a value"))?)?;
                limit_count = arg_i64(name, p.next_or(format!("{o} needs a value"))?)?;
            }
            4 => dest = Some(p.next_or(format!("{o} needs a value"))?),
            5 => {
                let pattern = p.next_or(format!("{o} needs a value"))?;
                dontsort = !pattern.contains(&b'*');
                by = Some(pattern);
            }
            _ => gets.push(p.next_or(format!("{o} needs a value"))?),
        }
    }
    let Some(dest) = dest else {
        return Ok(Cmd::NoStore);
    };
    Ok(Cmd::Store(SortStore {
        key,
        dest,
        desc,
        alpha,
        dontsort,
        limit: (limit_start, limit_count),
        by,
        gets,
    }))
}

impl Apply for Cmd<'_> {
    fn apply(self, ks: &mut Keyspace, st: &mut StreamState) -> Result<(), ApplyError> {
        match self {
            Cmd::Store(s) => sort(ks, st, s),
            // A SORT without STORE writes nothing and is never propagated.
            Cmd::NoStore => Ok(()),
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
    fn options_are_parsed_before_anything_is_read() {
        for (bad, msg) in [
            ("SORT k LIMIT 0", "LIMIT needs a value"),
            ("SORT k LIMIT x 1", "not an integer"),
            ("SORT k STORE", "STORE needs a value"),
            ("SORT k SIDEWAYS", "unknown option SIDEWAYS"),
        ] {
            let e = super::super::parse(&argv(bad)).err().map(|e| e.to_string());
            assert!(
                e.as_deref().is_some_and(|e| e.contains(msg)),
                "{bad}: {e:?}"
            );
        }
        let a = argv("k desc BY nosort GET # alpha");
        assert!(matches!(parse(Parse::new("SORT", &a)), Ok(Cmd::NoStore)));
        let a = argv("k by w_* limit 1 -1 store d get # get h_*->f");
        let Ok(Cmd::Store(s)) = parse(Parse::new("SORT", &a)) else {
            panic!("not a SORT STORE");
        };
        assert_eq!(
            (s.dest, s.limit, s.dontsort, s.gets.len()),
            (&b"d"[..], (1, -1), false, 2)
        );
    }
}
