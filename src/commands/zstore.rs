//! Sorted-set commands that compute a range or a combination: ZUNIONSTORE, ZINTERSTORE,
//! ZDIFFSTORE (WEIGHTS, AGGREGATE SUM|MIN|MAX|COUNT), ZRANGESTORE and ZREMRANGEBYRANK|
//! SCORE|LEX, all propagated as typed (their ranges: `zrange`). [`parse`] checks and types their arguments (numkeys,
//! weights, bounds, options: the only place that reads the name), then
//! [`Cmd::apply`](Apply::apply) computes and stores.
//!
//! Floating-point results must equal the master's to the last bit, so the arithmetic
//! follows the server step by step: sources ordered by size (stable among equals) for
//! union and intersection, each score multiplied by its weight (a NaN product turned into 0
//! where the server does), sums folded in that source order with a NaN sum turned into 0. The destination loses its
//! TTL, is deleted when the result is empty, and is compact (listpack) when the result is
//! small: there -0 is stored as 0 on Redis 7.0+ and Valkey, as in `zsets`.

use std::collections::HashMap;

use super::error::{arg_i64, invalid, ApplyError};
use super::parse::{upper, Apply, Parse};
use super::state::StreamState;
use super::value_ops::{load, wrongtype};
use super::zrange::{
    in_score_range, lex_bound, rank_range, score_bound, select, sorted, Selection,
};
use super::zsets::{built, get_zset, new_zset, put, upsert, Pairs, ZSet};
use crate::keyspace::{Hints, Keyspace, Kind, Native};
use crate::rdb::Value;

/// A source of a set operation: a sorted set, or a set whose members score 1.
fn source(ks: &Keyspace, db: u64, cmd: &str, key: &[u8]) -> Result<Pairs, ApplyError> {
    match load(ks, db, key)? {
        None => Ok(Vec::new()),
        Some((_, Value::SortedSet(p))) => Ok(p),
        Some((_, Value::Set(m))) => Ok(m.into_iter().map(|x| (x, 1.0)).collect()),
        Some(_) => Err(wrongtype(cmd, key)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Aggregate {
    Sum,
    Min,
    Max,
    Count,
}

fn aggregate(target: &mut f64, val: f64, agg: Aggregate) {
    match agg {
        Aggregate::Sum | Aggregate::Count => {
            *target += val;
            if target.is_nan() {
                *target = 0.0;
            }
        }
        Aggregate::Min => {
            if val < *target {
                *target = val
            }
        }
        Aggregate::Max => {
            if val > *target {
                *target = val
            }
        }
    }
}

/// A score times its weight (COUNT: the weight), NaN kept: the server turns it into 0 for
/// union members and an intersection's first source only; an intersection's later sources
/// aggregate the NaN itself (a SUM then restarts from 0, MIN/MAX ignore it).
fn weighted_raw(score: f64, weight: f64, agg: Aggregate) -> f64 {
    if agg == Aggregate::Count {
        weight
    } else {
        weight * score
    }
}

fn weighted(score: f64, weight: f64, agg: Aggregate) -> f64 {
    let s = weighted_raw(score, weight, agg);
    if s.is_nan() {
        0.0
    } else {
        s
    }
}

/// Store a computed result the way the server does: built plain, converted to compact when
/// small enough (where the listpack's -0 rule applies), deleted when empty.
fn store_result(
    ks: &mut Keyspace,
    st: &StreamState,
    dest: &[u8],
    pairs: Pairs,
) -> Result<(), ApplyError> {
    put(ks, st.db, dest, built(Hints::default(), pairs, st))
}

/// ZUNIONSTORE / ZINTERSTORE / ZDIFFSTORE dest numkeys key… [WEIGHTS w…] [AGGREGATE a],
/// one weight per key.
fn zsetop_store(
    ks: &mut Keyspace,
    st: &StreamState,
    op: &SetOpStore<'_>,
) -> Result<(), ApplyError> {
    let cmd = op.name;
    let (keys, agg) = (op.keys, op.agg);
    let weights = op.weights.iter().copied();
    let n = keys.len();
    let mut srcs = Vec::with_capacity(n);
    for (k, w) in keys.iter().zip(weights) {
        srcs.push((source(ks, st.db, cmd, k)?, w, k.as_slice()));
    }
    let result: Pairs = match op.op {
        ZSetOp::Diff => {
            let (first, others) = srcs
                .split_first()
                .map_or((None, &[][..]), |(f, o)| (Some(f), o));
            let mut out = Vec::new();
            if let Some((first, _, _)) = first {
                for (m, s) in first {
                    if !others.iter().any(|(o, _, _)| o.iter().any(|(x, _)| x == m)) {
                        out.push((m.clone(), *s));
                    }
                }
            }
            out
        }
        ZSetOp::Inter => {
            // The smallest source drives; a key named twice is the same object.
            srcs.sort_by_key(|(p, _, _)| p.len());
            let lookups: Vec<HashMap<&[u8], f64>> = srcs
                .iter()
                .map(|(p, _, _)| p.iter().map(|(m, s)| (m.as_slice(), *s)).collect())
                .collect();
            let mut out = Vec::new();
            if let Some(((first, w0, k0), rest)) = srcs.split_first() {
                'member: for (m, s) in first {
                    let mut acc = weighted(*s, *w0, agg);
                    for (j, (_, w, k)) in rest.iter().enumerate() {
                        let v = if k == k0 {
                            *s
                        } else {
                            match lookups[j + 1].get(m.as_slice()) {
                                Some(v) => *v,
                                None => continue 'member,
                            }
                        };
                        aggregate(&mut acc, weighted_raw(v, *w, agg), agg);
                    }
                    out.push((m.clone(), acc));
                }
            }
            out
        }
        ZSetOp::Union => {
            srcs.sort_by_key(|(p, _, _)| p.len());
            let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
            let mut out: Pairs = Vec::new();
            for (p, w, _) in &srcs {
                for (m, s) in p {
                    let v = weighted(*s, *w, agg);
                    match index.get(m) {
                        Some(&at) => aggregate(&mut out[at].1, v, agg),
                        None => {
                            index.insert(m.clone(), out.len());
                            out.push((m.clone(), v));
                        }
                    }
                }
            }
            out
        }
    };
    store_result(ks, st, op.dest, result)
}

/// A lex range over a plain (skiplist) set whose scores differ is decided by the master's
/// random skiplist levels: no replica can know it.
fn check_lex(cmd: &str, z: &ZSet, sel: &Selection<'_>) -> Result<(), ApplyError> {
    let mixed = z.pairs.windows(2).any(|w| w[0].1 != w[1].1);
    if matches!(sel, Selection::Lex(..)) && !z.listpack && mixed {
        return Err(invalid(
            cmd,
            "lex range over a skiplist-encoded set with differing scores: the master's \
             result depends on its random skiplist levels",
        ));
    }
    Ok(())
}

/// ZRANGESTORE dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count].
fn zrangestore(
    ks: &mut Keyspace,
    st: &StreamState,
    dest: &[u8],
    src: &[u8],
    sel: &Selection<'_>,
    rev: bool,
    limit: Option<(i64, i64)>,
) -> Result<(), ApplyError> {
    let cmd = "ZRANGESTORE";
    let p = match get_zset(ks, st.db, cmd, src)? {
        Some(z) => {
            check_lex(cmd, &z, sel)?;
            sorted(z.pairs)
        }
        None => Vec::new(),
    };
    let picked = select(&p, sel, rev, limit);
    // The server starts compact unless a rank range already counts more than the
    // threshold, then adds in emission order, converting on the way (-0 stored compact
    // becomes 0 and stays so after the conversion).
    let by_rank = matches!(sel, Selection::Rank(..));
    let mut z = new_zset(if by_rank { picked.len() } else { 0 }, 0);
    for &i in &picked {
        upsert(&mut z, st, &p[i].0, p[i].1);
    }
    put(ks, st.db, dest, z)
}

/// ZREMRANGEBYRANK|BYSCORE|BYLEX key a b (`cmd`: which, for errors).
fn zremrange(
    ks: &mut Keyspace,
    st: &StreamState,
    cmd: &str,
    key: &[u8],
    sel: &Selection<'_>,
) -> Result<(), ApplyError> {
    // A native set: seek and remove, O(k log n) (plus a walk of leaf sizes for ranks).
    let native = match sel {
        Selection::Lex(..) => None,
        _ => super::value_ops::on_native(ks, st.db, cmd, key, Kind::ZSet, |n| {
            if let Native::ZSet(z) = n {
                let gone: Vec<Box<[u8]>> = match sel {
                    Selection::Rank(a, b) => match rank_range(*a, *b, z.len()) {
                        Some((s, e)) => z
                            .order()
                            .range_by_rank(s, e)
                            .into_iter()
                            .map(|p| p.1)
                            .collect(),
                        None => Vec::new(),
                    },
                    Selection::Score(min, max) => z
                        .order()
                        .iter_from(min.0, b"")
                        .take_while(|(s, _)| if max.1 { *s < max.0 } else { *s <= max.0 })
                        .filter(|(s, _)| in_score_range(*s, *min, *max))
                        .map(|(_, m)| m.into())
                        .collect(),
                    Selection::Lex(..) => Vec::new(),
                };
                for m in &gone {
                    z.remove(m);
                }
            }
            Ok(())
        }),
    };
    if let Some(r) = native {
        return r;
    }
    let Some(mut z) = get_zset(ks, st.db, cmd, key)? else {
        return Ok(());
    };
    check_lex(cmd, &z, sel)?;
    let p = sorted(std::mem::take(&mut z.pairs));
    let mut gone = vec![false; p.len()];
    for i in select(&p, sel, false, None) {
        gone[i] = true;
    }
    z.pairs = p
        .into_iter()
        .zip(gone)
        .filter(|(_, g)| !g)
        .map(|(x, _)| x)
        .collect();
    put(ks, st.db, key, z)
}

// ---------------------------------------------------------------- parse and apply

/// Which combination ZUNIONSTORE / ZINTERSTORE / ZDIFFSTORE stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ZSetOp {
    Union,
    Inter,
    Diff,
}

/// ZUNIONSTORE / ZINTERSTORE / ZDIFFSTORE, parsed.
pub(super) struct SetOpStore<'a> {
    name: &'static str,
    op: ZSetOp,
    dest: &'a [u8],
    keys: &'a [Vec<u8>],
    /// One per key (1 unless WEIGHTS).
    weights: Vec<f64>,
    agg: Aggregate,
}

/// A command of this family, parsed: typed arguments, checked before anything changes.
pub(super) enum Cmd<'a> {
    /// ZUNIONSTORE / ZINTERSTORE / ZDIFFSTORE dest numkeys key… [WEIGHTS w…] [AGGREGATE a].
    SetOp(SetOpStore<'a>),
    /// ZRANGESTORE dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count]: the bounds
    /// in `sel` are min first, whatever REV.
    RangeStore {
        dest: &'a [u8],
        src: &'a [u8],
        sel: Selection<'a>,
        rev: bool,
        limit: Option<(i64, i64)>,
    },
    /// ZREMRANGEBYRANK|BYSCORE|BYLEX key a b.
    RemRange {
        name: &'static str,
        key: &'a [u8],
        sel: Selection<'a>,
    },
}

pub(super) fn parse<'a>(mut p: Parse<'a>) -> Result<Cmd<'a>, ApplyError> {
    let name = p.name();
    let cmd = match name {
        "ZUNIONSTORE" | "ZINTERSTORE" | "ZDIFFSTORE" => {
            let op = match name {
                "ZUNIONSTORE" => ZSetOp::Union,
                "ZINTERSTORE" => ZSetOp::Inter,
                _ => ZSetOp::Diff,
            };
            Cmd::SetOp(parse_setop(p, op)?)
        }
        "ZRANGESTORE" => {
            let (dest, src, a, b) = (p.next()?, p.next()?, p.next()?, p.next()?);
            #[derive(PartialEq)]
            enum By {
                Rank,
                Score,
                Lex,
            }
            let (mut by, mut rev, mut limit) = (By::Rank, false, None);
            while !p.is_done() {
                if p.eat("BYSCORE") {
                    by = By::Score;
                } else if p.eat("BYLEX") {
                    by = By::Lex;
                } else if p.eat("REV") {
                    rev = true;
                } else if p.remaining() > 2 && p.eat("LIMIT") {
                    limit = Some((p.next_i64()?, p.next_i64()?));
                } else {
                    let o = p.next()?;
                    return Err(p.error(format!("unknown option {}", upper(o))));
                }
            }
            // With REV the bounds come max first.
            let (lo, hi) = if rev && by != By::Rank {
                (b, a)
            } else {
                (a, b)
            };
            let sel = match by {
                By::Rank => Selection::Rank(arg_i64(name, lo)?, arg_i64(name, hi)?),
                By::Score => Selection::Score(score_bound(name, lo)?, score_bound(name, hi)?),
                By::Lex => Selection::Lex(lex_bound(name, lo)?, lex_bound(name, hi)?),
            };
            Cmd::RangeStore {
                dest,
                src,
                sel,
                rev,
                limit,
            }
        }
        "ZREMRANGEBYRANK" | "ZREMRANGEBYSCORE" | "ZREMRANGEBYLEX" => {
            let (key, a, b) = (p.next()?, p.next()?, p.next()?);
            p.finish()?;
            let sel = match name {
                "ZREMRANGEBYRANK" => Selection::Rank(arg_i64(name, a)?, arg_i64(name, b)?),
                "ZREMRANGEBYSCORE" => {
                    Selection::Score(score_bound(name, a)?, score_bound(name, b)?)
                }
                _ => Selection::Lex(lex_bound(name, a)?, lex_bound(name, b)?),
            };
            Cmd::RemRange { name, key, sel }
        }
        _ => return Err(ApplyError::Unknown(name.to_string())),
    };
    Ok(cmd)
}

/// dest numkeys key… [WEIGHTS w…] [AGGREGATE SUM|MIN|MAX|COUNT], in any order, repeated.
fn parse_setop<'a>(mut p: Parse<'a>, op: ZSetOp) -> Result<SetOpStore<'a>, ApplyError> {
    let name = p.name();
    let (dest, numkeys) = (p.next()?, p.next()?);
    let rest = p.rest();
    let n = usize::try_from(arg_i64(name, numkeys)?)
        .ok()
        .filter(|&n| n >= 1 && n <= rest.len())
        .ok_or_else(|| invalid(name, "bad number of keys"))?;
    let (keys, opts) = rest.split_at(n);
    let mut p = Parse::new(name, opts);
    let mut weights = vec![1.0f64; n];
    let mut agg = Aggregate::Sum;
    while !p.is_done() {
        if p.remaining() > n && p.eat("WEIGHTS") {
            for w in weights.iter_mut() {
                *w = crate::rdb::parse_double(p.next()?)
                    .filter(|d| !d.is_nan())
                    .ok_or_else(|| invalid(name, "weight is not a float"))?;
            }
        } else if p.remaining() > 1 && p.eat("AGGREGATE") {
            agg = match p.eat_any(&["SUM", "MIN", "MAX", "COUNT"]) {
                Some(0) => Aggregate::Sum,
                Some(1) => Aggregate::Min,
                Some(2) => Aggregate::Max,
                Some(_) => Aggregate::Count,
                None => {
                    let o = p.next()?;
                    return Err(p.error(format!("unknown AGGREGATE {}", upper(o))));
                }
            };
        } else {
            let o = p.next()?;
            return Err(p.error(format!("unknown option {}", upper(o))));
        }
    }
    Ok(SetOpStore {
        name,
        op,
        dest,
        keys,
        weights,
        agg,
    })
}

impl Apply for Cmd<'_> {
    fn apply(self, ks: &mut Keyspace, st: &mut StreamState) -> Result<(), ApplyError> {
        match self {
            Cmd::SetOp(op) => zsetop_store(ks, st, &op),
            Cmd::RangeStore {
                dest,
                src,
                sel,
                rev,
                limit,
            } => zrangestore(ks, st, dest, src, &sel, rev, limit),
            Cmd::RemRange { name, key, sel } => zremrange(ks, st, name, key, &sel),
        }
    }
}
