//! Ranges over a sorted set's pairs, as ZRANGESTORE and ZREMRANGEBY* select them: score
//! and lex bounds parsed from their arguments, ranks clamped as ZRANGE does, and the walk a
//! compact set gives a lex range. A leaf under `zstore`: it reads pairs and never changes a
//! key.

use super::error::{invalid, ApplyError};
use super::zsets::{score, Pairs};

/// Pairs in the set's order: score, then member bytes.
pub(super) fn sorted(mut p: Pairs) -> Pairs {
    p.sort_by(|a, b| {
        a.1.partial_cmp(&b.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.0.cmp(&b.0))
    });
    p
}

/// A score bound: value and whether it is exclusive (`(1.5`).
pub(super) fn score_bound(cmd: &str, a: &[u8]) -> Result<(f64, bool), ApplyError> {
    match a.strip_prefix(b"(") {
        Some(rest) => Ok((score(cmd, rest)?, true)),
        None => Ok((score(cmd, a)?, false)),
    }
}

/// A lex bound: `-`, `+`, `[x` or `(x`.
#[derive(Debug, Clone, Copy)]
pub(super) enum Lex<'a> {
    Min,
    Max,
    Incl(&'a [u8]),
    Excl(&'a [u8]),
}

pub(super) fn lex_bound<'a>(cmd: &str, a: &'a [u8]) -> Result<Lex<'a>, ApplyError> {
    match a.split_first() {
        Some((b'-', [])) => Ok(Lex::Min),
        Some((b'+', [])) => Ok(Lex::Max),
        Some((b'[', r)) => Ok(Lex::Incl(r)),
        Some((b'(', r)) => Ok(Lex::Excl(r)),
        _ => Err(invalid(cmd, "bad lex range")),
    }
}

pub(super) fn above_min(m: &[u8], b: &Lex<'_>) -> bool {
    match *b {
        Lex::Min => true,
        Lex::Max => false,
        Lex::Incl(x) => m >= x,
        Lex::Excl(x) => m > x,
    }
}

pub(super) fn below_max(m: &[u8], b: &Lex<'_>) -> bool {
    match *b {
        Lex::Min => false,
        Lex::Max => true,
        Lex::Incl(x) => m <= x,
        Lex::Excl(x) => m < x,
    }
}

/// Ranks `start..=end` (negative from the end) of a set of `len`, clamped as ZRANGE does.
pub(super) fn rank_range(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let end = if end < 0 { len + end } else { end.min(len - 1) };
    (start <= end && start < len && end >= 0).then_some((start as usize, end as usize))
}

/// The selection ZRANGESTORE and ZREMRANGEBY* share, in emission order.
pub(super) enum Selection<'a> {
    Rank(i64, i64),
    Score((f64, bool), (f64, bool)),
    Lex(Lex<'a>, Lex<'a>),
}

pub(super) fn in_score_range(
    s: f64,
    (min, min_ex): (f64, bool),
    (max, max_ex): (f64, bool),
) -> bool {
    (if min_ex { s > min } else { s >= min }) && (if max_ex { s < max } else { s <= max })
}

/// A lex range over a set, as the server walks a compact set: from the head to the first
/// member at or above `min` (nothing if that one is above `max`), then on while members
/// stay at or below `max` (REV: the mirror image from the tail). On members of one score
/// this is the lexicographic range; on mixed scores it is what a listpack gives.
pub(super) fn lex_walk(p: &Pairs, min: &Lex<'_>, max: &Lex<'_>, rev: bool) -> Vec<usize> {
    let empty_range = match (min, max) {
        (Lex::Max, _) | (_, Lex::Min) => true,
        (Lex::Incl(a) | Lex::Excl(a), Lex::Incl(b) | Lex::Excl(b)) => {
            a > b || (a == b && (matches!(min, Lex::Excl(_)) || matches!(max, Lex::Excl(_))))
        }
        _ => false,
    };
    let (Some(first), Some(last)) = (p.first(), p.last()) else {
        return Vec::new();
    };
    if empty_range || !above_min(&last.0, min) || !below_max(&first.0, max) {
        return Vec::new();
    }
    let mut out = Vec::new();
    if rev {
        let Some(start) = (0..p.len()).rev().find(|&i| below_max(&p[i].0, max)) else {
            return out;
        };
        for i in (0..=start).rev() {
            if !above_min(&p[i].0, min) {
                break;
            }
            out.push(i);
        }
    } else {
        let Some(start) = (0..p.len()).find(|&i| above_min(&p[i].0, min)) else {
            return out;
        };
        for (i, (m, _)) in p.iter().enumerate().skip(start) {
            if !below_max(m, max) {
                break;
            }
            out.push(i);
        }
    }
    out
}

pub(super) fn select(
    p: &Pairs,
    sel: &Selection<'_>,
    rev: bool,
    limit: Option<(i64, i64)>,
) -> Vec<usize> {
    let mut picked: Vec<usize> = match sel {
        Selection::Rank(a, b) => match rank_range(*a, *b, p.len()) {
            Some((s, e)) if rev => (s..=e).map(|r| p.len() - 1 - r).collect(),
            Some((s, e)) => (s..=e).collect(),
            None => Vec::new(),
        },
        Selection::Score(min, max) => {
            let mut v: Vec<usize> = (0..p.len())
                .filter(|&i| in_score_range(p[i].1, *min, *max))
                .collect();
            if rev {
                v.reverse();
            }
            v
        }
        Selection::Lex(min, max) => lex_walk(p, min, max, rev),
    };
    if let Some((offset, count)) = limit {
        if offset < 0 {
            picked.clear();
        } else {
            picked.drain(..(offset as usize).min(picked.len()));
            if count >= 0 {
                picked.truncate(count as usize);
            }
        }
    }
    picked
}
