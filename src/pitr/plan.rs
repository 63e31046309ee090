//! Which history, which exact offset and which snapshot a point-in-time restore starts
//! from, decided from the object listing and a few segment headers.
//!
//! Owns the rules of SPEC §6's "restore to a point": a *run* is a stretch of a history's
//! segments with no missing offset; a point is restorable when a snapshot of the same
//! history lies in the same run at or before it. `--at` becomes an exact offset through
//! the segments' (time, offset) samples; `--offset` is taken as given (the replay rounds
//! it down to a command boundary). It must never pick a base across a gap, and never
//! answer a point it cannot restore with anything but an error naming the nearest ones.

use chrono::{DateTime, Utc};

use super::{PitrError, Target};
use crate::archive::segment::{self, parse_key, KeyInfo, Segment};
use crate::archive::{snapshot_in_history, ArchiveListing};
use crate::storage::{Manifest, Storage};

/// An unbroken stretch of one history's segments.
#[derive(Debug, Clone)]
pub(super) struct Run {
    pub history: String,
    pub first: i64,
    pub end: i64,
    /// Unix seconds of the first and last byte (from the names).
    pub t_first: i64,
    pub t_last: i64,
    /// The segments, in offset order, with their keys.
    pub segs: Vec<(KeyInfo, String)>,
}

/// Where a restore starts and ends.
#[derive(Debug, Clone)]
pub struct Plan {
    pub history: String,
    /// The offset asked for (`--offset`) or resolved (`--at`).
    pub offset: i64,
    /// The snapshot the replay starts from.
    pub base: Manifest,
    /// The segment keys covering `[base offset, offset)`, in order.
    pub segments: Vec<String>,
    /// How `--at` was resolved, for the user.
    pub note: Option<String>,
    /// The time asked for (`--at`), unix ms.
    pub at_ms: Option<i64>,
}

pub(super) fn runs(listing: &ArchiveListing) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for h in &listing.histories {
        for key in &h.keys {
            let Some(k) = parse_key(key) else { continue };
            match out
                .last_mut()
                .filter(|r| r.history == k.history && k.first <= r.end)
            {
                Some(r) => {
                    r.end = r.end.max(k.end);
                    r.t_last = r.t_last.max(k.t1);
                    r.segs.push((k, key.clone()));
                }
                None => out.push(Run {
                    history: k.history.clone(),
                    first: k.first,
                    end: k.end,
                    t_first: k.t0,
                    t_last: k.t1,
                    segs: vec![(k, key.clone())],
                }),
            }
        }
    }
    out
}

/// The newest snapshot of the run at or before `offset`.
fn base_for<'a>(run: &Run, snapshots: &'a [Manifest], offset: i64) -> Option<&'a Manifest> {
    snapshots
        .iter()
        .filter(|m| snapshot_in_history(m, &run.history))
        .filter(|m| {
            let o = m.source.offset as i64;
            o >= run.first && o <= run.end && o <= offset
        })
        .max_by_key(|m| (m.source.offset, m.created_at))
}

/// The first restorable offset of a run (its oldest snapshot's), if any.
fn restorable_from(run: &Run, snapshots: &[Manifest]) -> Option<i64> {
    snapshots
        .iter()
        .filter(|m| snapshot_in_history(m, &run.history))
        .map(|m| m.source.offset as i64)
        .filter(|o| *o >= run.first && *o <= run.end)
        .min()
}

fn time_text(unix_s: i64) -> String {
    DateTime::<Utc>::from_timestamp(unix_s, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| unix_s.to_string())
}

/// Every restorable range, for error messages: "history H offsets a..b (time .. time)".
fn restorable_ranges(runs: &[Run], snapshots: &[Manifest]) -> Vec<String> {
    runs.iter()
        .filter_map(|r| {
            let from = restorable_from(r, snapshots)?;
            Some(format!(
                "history {} offsets {from}..{} ({} .. {})",
                r.history,
                r.end,
                time_text(r.t_first),
                time_text(r.t_last)
            ))
        })
        .collect()
}

fn nearest(runs: &[Run], snapshots: &[Manifest]) -> String {
    let all = restorable_ranges(runs, snapshots);
    if all.is_empty() {
        "no point is restorable: no snapshot lies inside the archived stream".into()
    } else {
        format!("restorable: {}", all.join("; "))
    }
}

/// Decide the plan for `target` (in `history` if given).
pub(super) fn plan(
    storage: &dyn Storage,
    listing: &ArchiveListing,
    snapshots: &[Manifest],
    target: Target,
    history: Option<&str>,
) -> Result<Plan, PitrError> {
    let runs: Vec<Run> = runs(listing)
        .into_iter()
        .filter(|r| history.is_none_or(|h| r.history == h))
        .collect();
    if runs.is_empty() {
        return Err(match history {
            Some(h) => PitrError::NoHistory(h.to_string()),
            None => PitrError::NoArchive,
        });
    }
    let (run, offset, note) = match target {
        Target::Offset(n) => {
            // The newest history whose run holds the offset with a snapshot before it.
            let run = runs
                .iter()
                .rev()
                .find(|r| r.first <= n && n <= r.end && base_for(r, snapshots, n).is_some())
                .ok_or_else(|| PitrError::Unrestorable {
                    wanted: format!("offset {n}"),
                    nearest: nearest(&runs, snapshots),
                })?;
            (run, n, None)
        }
        Target::At(t) => {
            let unrestorable = |why: String| PitrError::Unrestorable {
                wanted: format!("time {} ({why})", ms_text(t)),
                nearest: nearest(&runs, snapshots),
            };
            let run = runs
                .iter()
                .filter(|r| r.t_first * 1000 <= t)
                .max_by_key(|r| r.t_first)
                .ok_or_else(|| unrestorable("before the first archived command".into()))?;
            if t >= (run.t_last + 1) * 1000 {
                return Err(unrestorable(format!(
                    "after the newest archived command of history {} (applied at {}); \
                     what came next is not archived yet, or lost in a gap",
                    run.history,
                    time_text(run.t_last)
                )));
            }
            let (offset, note) =
                resolve_time(storage, run, t)?.map_err(|why| PitrError::Unrestorable {
                    wanted: format!("time {} ({why})", ms_text(t)),
                    nearest: nearest(&runs, snapshots),
                })?;
            (run, offset, Some(note))
        }
    };
    let base = base_for(run, snapshots, offset).ok_or_else(|| PitrError::Unrestorable {
        wanted: format!(
            "offset {offset} of history {} (no snapshot of the history before it)",
            run.history
        ),
        nearest: nearest(&runs, snapshots),
    })?;
    let from = base.source.offset as i64;
    let segments = run
        .segs
        .iter()
        .filter(|(k, _)| k.end > from && k.first < offset)
        .map(|(_, key)| key.clone())
        .collect();
    Ok(Plan {
        history: run.history.clone(),
        offset,
        base: base.clone(),
        segments,
        note,
        at_ms: match target {
            Target::At(t) => Some(t),
            Target::Offset(_) => None,
        },
    })
}

pub(super) fn ms_text(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

pub(super) fn fetch_segment(storage: &dyn Storage, key: &str) -> Result<Segment, PitrError> {
    let data = storage
        .get_object(key, segment::OBJECT_LIMIT)?
        .ok_or_else(|| PitrError::Missing(key.to_string()))?;
    Ok(segment::decode(&data, key)?)
}

/// What the samples say about a time: the exact offset and how it was found, or why the
/// archive cannot tell.
type Resolved = Result<(i64, String), String>;

/// The exact offset of the state at unix ms `t` inside `run`: every command applied at or
/// before `t`, as far as the samples tell (see [`Header::sample_ms`]). Not known when `t`
/// is before the run's first command (unless the run starts its history) or after its
/// last one (nothing says what came next: more writes not yet archived, or a gap).
///
/// [`Header::sample_ms`]: crate::archive::segment::Header::sample_ms
fn resolve_time(storage: &dyn Storage, run: &Run, t: i64) -> Result<Resolved, PitrError> {
    let t_s = t.div_euclid(1000);
    // The last segment that may hold a sample at or before t, then earlier ones until one
    // does (several segments can start within one second).
    let Some(mut k) = run.segs.iter().rposition(|(key, _)| key.t0 <= t_s) else {
        return Ok(Err(format!(
            "before the first archived command of history {}",
            run.history
        )));
    };
    loop {
        let seg = fetch_segment(storage, &run.segs[k].1)?;
        let h = &seg.header;
        let found = h.samples.iter().rposition(|(at, _)| *at <= t);
        if let Some(i) = found {
            let (at, o) = h.samples[i];
            let next = h.samples.get(i + 1).map_or(h.end_offset, |s| s.1);
            if t >= at + h.sample_ms - 1 {
                if next == run.end {
                    return Ok(Err(format!(
                        "after the newest archived command of history {} (applied before {}); \
                         what came next is not archived yet, or lost in a gap",
                        run.history,
                        ms_text(at + h.sample_ms)
                    )));
                }
                return Ok(Ok((
                    next,
                    format!(
                        "offset {next}: every command applied at or before {} (the archive samples every {} ms)",
                        ms_text(t),
                        h.sample_ms
                    ),
                )));
            }
            // Commands after the one at `o` may have been applied after t: only that one
            // is known to be in.
            let within = (o - h.first_offset) as usize;
            return Ok(Ok(match super::replay::unit_end(&seg.bytes[within..]) {
                Some(len) => {
                    let p = o + len as i64;
                    (p, format!(
                        "offset {p}: the command applied at {} and everything before it; commands applied up to {} ms later are not known to precede {} and are left out",
                        ms_text(at), h.sample_ms, ms_text(t)
                    ))
                }
                None => (
                    o,
                    format!(
                        "offset {o}: everything applied before {} (resolution {} ms)",
                        ms_text(at),
                        h.sample_ms
                    ),
                ),
            }));
        }
        if k == 0 {
            // Before the run's first command: the state at its start is known only when
            // nothing precedes it in the history (the full sync's data).
            let starts_history = run
                .history
                .rsplit_once('-')
                .and_then(|(_, s)| s.parse::<i64>().ok())
                == Some(run.first);
            return Ok(if starts_history {
                Ok((
                    run.first,
                    format!(
                        "offset {}: the start of history {}, before its first archived command",
                        run.first, run.history
                    ),
                ))
            } else {
                Err(format!(
                    "before the first archived command of history {} after a gap",
                    run.history
                ))
            });
        }
        k -= 1;
    }
}
