//! XCLAIM in its propagated forms (a delivery, a claim, or a pending entry whose stream
//! entry is gone): [`parse`] checks it into a typed [`Claim`], [`apply`] moves the pending
//! entries with the server's rules for each option. A leaf of `stream_groups`.

use super::super::error::{invalid, ApplyError};
use super::super::parse::{upper, Parse};
use super::super::state::{now_ms, StreamState};
use super::super::streams::{parse_id, unpend, with_stream};
use super::lookup::{consumer_index, group_mut};
use crate::keyspace::Keyspace;
use crate::rdb::value::{PendingEntry, StreamId};

const XCLAIM: &str = "XCLAIM";

/// When XCLAIM says the claimed entries were delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::commands) enum Delivery {
    /// IDLE ms: that long before now (our clock, when applied).
    IdleFor(i64),
    /// TIME ms: the master's absolute time.
    At(i64),
}

/// A parsed XCLAIM key group consumer min-idle id… [IDLE ms] [TIME ms] [RETRYCOUNT n]
/// [FORCE] [JUSTID] [LASTID id].
pub(in crate::commands) struct Claim<'a> {
    pub(super) key: &'a [u8],
    pub(super) group: &'a [u8],
    consumer: &'a [u8],
    /// Never negative.
    min_idle: i64,
    ids: Vec<StreamId>,
    delivery: Option<Delivery>,
    retry: Option<i64>,
    force: bool,
    justid: bool,
    last_id: StreamId,
}

/// XCLAIM: the IDs run up to the first argument that is not one; options follow.
pub(super) fn parse(mut p: Parse<'_>) -> Result<Claim<'_>, ApplyError> {
    let name = p.name();
    let (key, group, consumer) = (p.next()?, p.next()?, p.next()?);
    let min_idle = p.next_i64()?.max(0);
    let rest = p.rest();
    let mut ids = Vec::new();
    for a in rest {
        match parse_id(name, a) {
            Ok(id) => ids.push(id),
            Err(_) => break,
        }
    }
    let mut p = Parse::new(name, rest.get(ids.len()..).unwrap_or(&[]));
    let (mut force, mut justid) = (false, false);
    let mut delivery = None;
    let mut retry = None;
    let mut last_id = StreamId::default();
    const OPTIONS: [&str; 6] = ["FORCE", "JUSTID", "IDLE", "TIME", "RETRYCOUNT", "LASTID"];
    while !p.is_done() {
        match p.eat_any(&OPTIONS) {
            Some(0) => force = true,
            Some(1) => justid = true,
            Some(k) => {
                if p.is_done() {
                    let o = OPTIONS.get(k).copied().unwrap_or_default();
                    return Err(p.error(format!("unknown option {o}")));
                }
                match k {
                    2 => delivery = Some(Delivery::IdleFor(p.next_i64()?)),
                    3 => delivery = Some(Delivery::At(p.next_i64()?)),
                    4 => retry = Some(p.next_i64()?),
                    _ => last_id = parse_id(name, p.next()?)?,
                }
            }
            None => {
                let o = upper(p.next()?);
                return Err(p.error(format!("unknown option {o}")));
            }
        }
    }
    Ok(Claim {
        key,
        group,
        consumer,
        min_idle,
        ids,
        delivery,
        retry,
        force,
        justid,
        last_id,
    })
}

/// XCLAIM, with the server's rules for each option.
pub(super) fn apply(ks: &mut Keyspace, st: &StreamState, c: Claim<'_>) -> Result<(), ApplyError> {
    let cmd = XCLAIM;
    let Claim {
        key,
        group,
        consumer,
        min_idle,
        ids,
        delivery,
        retry,
        force,
        justid,
        last_id,
    } = c;
    let now = now_ms();
    let delivery = delivery.map(|d| match d {
        Delivery::IdleFor(ms) => now.saturating_sub(ms),
        Delivery::At(ms) => ms,
    });
    let found = with_stream(ks, st.db, cmd, key, false, |sn| {
        let exists: Vec<bool> = ids.iter().map(|id| sn.log.contains(*id)).collect();
        let g = group_mut(&mut sn.head, cmd, key, group)?;
        if last_id > g.last_id {
            g.last_id = last_id;
        }
        // A negative time is bogus; the server then uses its own clock. A time ahead of ours
        // is the master's clock being ahead: kept, so the pending list says what the master's.
        let delivery = delivery.filter(|&t| t >= 0).unwrap_or(now);
        let ci = consumer_index(g, consumer, now);
        g.consumers[ci].seen_time_ms = now;
        for (id, exists) in ids.into_iter().zip(exists) {
            let pos = g.pending.binary_search_by(|p| p.id.cmp(&id));
            if !exists && st.claim_deleted_entries {
                // 6.2: FORCE creates nothing for a missing entry, an existing pending entry is
                // claimed as usual.
                if pos.is_err() {
                    continue;
                }
            } else if !exists {
                // The entry is gone: the pending entry is dropped (propagated as such).
                if pos.is_ok() {
                    unpend(g, id);
                }
                continue;
            }
            let pi = match pos {
                Ok(pi) => {
                    if min_idle > 0 && now.saturating_sub(g.pending[pi].delivery_time_ms) < min_idle
                    {
                        continue;
                    }
                    pi
                }
                Err(pi) if force => {
                    g.pending.insert(
                        pi,
                        PendingEntry {
                            id,
                            delivery_time_ms: now,
                            delivery_count: 1,
                        },
                    );
                    pi
                }
                Err(_) => continue,
            };
            // Move ownership to `consumer`.
            let owner = g
                .consumers
                .iter()
                .position(|c| c.pending.binary_search(&id).is_ok());
            if owner != Some(ci) {
                if let Some(o) = owner {
                    if let Ok(j) = g.consumers[o].pending.binary_search(&id) {
                        g.consumers[o].pending.remove(j);
                    }
                }
                let c = &mut g.consumers[ci];
                if let Err(j) = c.pending.binary_search(&id) {
                    c.pending.insert(j, id);
                }
            }
            let p = &mut g.pending[pi];
            p.delivery_time_ms = delivery;
            match retry {
                Some(n) if n >= 0 => p.delivery_count = n as u64,
                _ if !justid => p.delivery_count += 1,
                _ => {}
            }
            g.consumers[ci].active_time_ms = Some(now);
        }
        Ok(())
    })?;
    found.ok_or_else(|| invalid(cmd, "no such stream: our data differs"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_then_options() {
        let a: Vec<Vec<u8>> = [
            "k",
            "g",
            "c",
            "-5",
            "1-0",
            "2",
            "TIME",
            "5",
            "RETRYCOUNT",
            "1",
            "force",
            "JUSTID",
            "LASTID",
            "2-0",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        let c = parse(Parse::new(XCLAIM, &a)).map_err(|e| e.to_string());
        let c = c.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.ids.len(), 2);
        assert_eq!(c.min_idle, 0);
        assert_eq!(c.delivery, Some(Delivery::At(5)));
        assert_eq!(c.retry, Some(1));
        assert!(c.force && c.justid);
        assert_eq!(c.last_id, StreamId { ms: 2, seq: 0 });
    }
}
