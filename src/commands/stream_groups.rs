//! Stream consumer groups in their propagated forms.
//!
//! Masters never send XREADGROUP or XAUTOCLAIM: they send what those did, as
//! `XCLAIM key group consumer 0 id TIME ms RETRYCOUNT n FORCE JUSTID LASTID id` (a delivery,
//! a claim, or a pending entry whose stream entry is gone), `XGROUP SETID … ENTRIESREAD n`
//! (the group's position) and `XGROUP CREATECONSUMER` (a NOACK reader). XGROUP, XACK and
//! Redis 8.2's XACKDEL arrive as typed.
//!
//! Groups, consumers and pending lists are kept sorted (by name, by ID) as the server's
//! radix trees are, so a snapshot lists them in the server's order. Times a replica takes
//! from its own clock (a consumer's seen/active time) come from ours; delivery times come
//! from the master's TIME argument, unclamped, so the pending list holds the master's
//! values. None of these times is part of `DEBUG DIGEST`.

use super::error::{arg_i64, invalid, ApplyError};
use super::parse::{Apply, Parse};
use super::state::{now_ms, StreamState};
use super::streams::{delete_entries, parse_id, unpend, with_stream, DeleteRefs};
use crate::keyspace::Keyspace;
use crate::rdb::value::{Consumer, ConsumerGroup, PendingEntry, Stream, StreamId};

/// The server's marker for an unknown `entries_read`.
const ENTRIES_READ_INVALID: i64 = -1;

fn upper(a: &[u8]) -> String {
    String::from_utf8_lossy(a).to_ascii_uppercase()
}

fn group_index(s: &Stream, name: &[u8]) -> Result<usize, usize> {
    s.groups.binary_search_by(|g| g.name.as_slice().cmp(name))
}

fn group_mut<'a>(
    s: &'a mut Stream,
    cmd: &str,
    key: &[u8],
    name: &[u8],
) -> Result<&'a mut ConsumerGroup, ApplyError> {
    match group_index(s, name) {
        Ok(i) => Ok(&mut s.groups[i]),
        Err(_) => Err(invalid(
            cmd,
            format!(
                "no group {} on key {}: our data differs",
                crate::rdb::error::escape_key(name),
                crate::rdb::error::escape_key(key)
            ),
        )),
    }
}

/// The consumer's index, creating it (as the server does on first use) when missing.
fn consumer_index(g: &mut ConsumerGroup, name: &[u8], now: i64) -> usize {
    match g
        .consumers
        .binary_search_by(|c| c.name.as_slice().cmp(name))
    {
        Ok(i) => i,
        Err(i) => {
            g.consumers.insert(
                i,
                Consumer {
                    name: name.to_vec(),
                    seen_time_ms: now,
                    active_time_ms: Some(-1),
                    pending: Vec::new(),
                },
            );
            i
        }
    }
}

/// An ID argument that may be `$` (the stream's last ID).
fn id_or_last(cmd: &str, a: &[u8], s: &Stream) -> Result<StreamId, ApplyError> {
    if a == b"$" {
        Ok(s.last_id)
    } else {
        parse_id(cmd, a)
    }
}

fn entries_read_arg(cmd: &str, opts: &[Vec<u8>]) -> Result<(bool, i64), ApplyError> {
    let mut mkstream = false;
    let mut read = ENTRIES_READ_INVALID;
    let mut i = 0;
    while i < opts.len() {
        match upper(&opts[i]).as_str() {
            "MKSTREAM" => {
                mkstream = true;
                i += 1;
            }
            "ENTRIESREAD" if i + 1 < opts.len() => {
                read = arg_i64(cmd, &opts[i + 1])?;
                i += 2;
            }
            o => return Err(invalid(cmd, format!("unknown option {o}"))),
        }
    }
    Ok((mkstream, read))
}

/// Redis 8.2+ cap a given read counter at the stream's entries_added, except the counter an
/// XREADGROUP sends after its XCLAIMs (the master computed it and does not cap it; a Redis
/// 8.2 replica does, and then holds a smaller counter than its master: measured).
fn clamp_read(st: &StreamState, s: &Stream, read: i64, key: &[u8], group: &[u8]) -> i64 {
    if st
        .claimed_in_multi
        .as_ref()
        .is_some_and(|(db, k, g)| *db == st.db && k == key && g == group)
    {
        return read;
    }
    let added = s.entries_added.unwrap_or(s.length);
    if st.clamp_entries_read && read != ENTRIES_READ_INVALID && read as u64 > added {
        added as i64
    } else {
        read
    }
}

/// XGROUP CREATE|SETID|DESTROY|CREATECONSUMER|DELCONSUMER.
pub fn xgroup(ks: &mut Keyspace, st: &StreamState, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let cmd = "XGROUP";
    let db = st.db;
    let [sub, key, group, rest @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let sub = upper(sub);
    let create = sub == "CREATE" && rest.len() > 1 && entries_read_arg(cmd, &rest[1..])?.0;
    let now = now_ms();
    let found = with_stream(ks, db, cmd, key, create, |sn| {
        let s = &mut sn.head;
        match (sub.as_str(), rest) {
            ("CREATE", [id, opts @ ..]) => {
                let id = id_or_last(cmd, id, s)?;
                let (_, read) = entries_read_arg(cmd, opts)?;
                let read = clamp_read(st, s, read, key, group);
                let Err(i) = group_index(s, group) else {
                    return Err(invalid(cmd, "group exists already: our data differs"));
                };
                s.groups.insert(
                    i,
                    ConsumerGroup {
                        name: group.clone(),
                        last_id: id,
                        entries_read: Some(read),
                        pending: Vec::new(),
                        consumers: Vec::new(),
                        unowned: None,
                    },
                );
            }
            ("SETID", [id, opts @ ..]) => {
                let id = id_or_last(cmd, id, s)?;
                let (mk, read) = entries_read_arg(cmd, opts)?;
                if mk {
                    return Err(invalid(cmd, "MKSTREAM with SETID"));
                }
                let read = clamp_read(st, s, read, key, group);
                let g = group_mut(s, cmd, key, group)?;
                g.last_id = id;
                g.entries_read = Some(read);
            }
            ("DESTROY", []) => {
                if let Ok(i) = group_index(s, group) {
                    s.groups.remove(i);
                }
            }
            ("CREATECONSUMER", [consumer]) => {
                let g = group_mut(s, cmd, key, group)?;
                consumer_index(g, consumer, now);
            }
            ("DELCONSUMER", [consumer]) => {
                let g = group_mut(s, cmd, key, group)?;
                if let Ok(i) = g
                    .consumers
                    .binary_search_by(|c| c.name.as_slice().cmp(consumer))
                {
                    let c = g.consumers.remove(i);
                    g.pending
                        .retain(|p| c.pending.binary_search(&p.id).is_err());
                }
            }
            _ => return Err(invalid(cmd, format!("unsupported form of XGROUP {sub}"))),
        }
        Ok(())
    })?;
    found.ok_or_else(|| {
        invalid(
            cmd,
            format!(
                "{sub} on missing key {}: our data differs",
                crate::rdb::error::escape_key(key)
            ),
        )
    })
}

/// XACK key group id…
pub fn xack(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, group, ids @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let ids = ids
        .iter()
        .map(|a| parse_id(cmd, a))
        .collect::<Result<Vec<_>, _>>()?;
    with_stream(ks, db, cmd, key, false, |s| {
        if let Ok(gi) = group_index(&s.head, group) {
            for id in ids {
                unpend(&mut s.head.groups[gi], id);
            }
        }
        Ok(())
    })?;
    Ok(())
}

/// XACKDEL key group [KEEPREF|DELREF|ACKED] IDS n id… (Redis 8.2+): acknowledge, then
/// delete each acknowledged entry as the policy allows.
pub fn xackdel(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, group, rest @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let (refs, ids) = DeleteRefs::parse_with_ids(cmd, rest)?;
    with_stream(ks, db, cmd, key, false, |s| {
        let Ok(gi) = group_index(&s.head, group) else {
            return Ok(());
        };
        let mut acked = Vec::new();
        for id in ids {
            if unpend(&mut s.head.groups[gi], id) {
                acked.push(id);
            }
        }
        delete_entries(s, &acked, refs);
        Ok(())
    })?;
    Ok(())
}

/// XCLAIM key group consumer min-idle id… [IDLE ms] [TIME ms] [RETRYCOUNT n] [FORCE]
/// [JUSTID] [LASTID id], with the server's rules for each option.
pub fn xclaim(
    ks: &mut Keyspace,
    st: &StreamState,
    cmd: &str,
    args: &[Vec<u8>],
) -> Result<(), ApplyError> {
    let db = st.db;
    let [key, group, consumer, min_idle, rest @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let min_idle = arg_i64(cmd, min_idle)?.max(0);
    let mut ids = Vec::new();
    let mut i = 0;
    while let Some(a) = rest.get(i) {
        match parse_id(cmd, a) {
            Ok(id) => ids.push(id),
            Err(_) => break,
        }
        i += 1;
    }
    let now = now_ms();
    let (mut force, mut justid) = (false, false);
    let mut delivery: Option<i64> = None;
    let mut retry: Option<i64> = None;
    let mut last_id = StreamId::default();
    while i < rest.len() {
        let opt = upper(&rest[i]);
        let val = rest.get(i + 1);
        match (opt.as_str(), val) {
            ("FORCE", _) => force = true,
            ("JUSTID", _) => justid = true,
            ("IDLE", Some(v)) => {
                delivery = Some(now.saturating_sub(arg_i64(cmd, v)?));
                i += 1;
            }
            ("TIME", Some(v)) => {
                delivery = Some(arg_i64(cmd, v)?);
                i += 1;
            }
            ("RETRYCOUNT", Some(v)) => {
                retry = Some(arg_i64(cmd, v)?);
                i += 1;
            }
            ("LASTID", Some(v)) => {
                last_id = parse_id(cmd, v)?;
                i += 1;
            }
            (o, _) => return Err(invalid(cmd, format!("unknown option {o}"))),
        }
        i += 1;
    }
    let found = with_stream(ks, db, cmd, key, false, |sn| {
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
            "XGROUP" => xgroup(ks, st, args),
            "XACK" => xack(ks, st.db, name, args),
            "XACKDEL" => xackdel(ks, st.db, name, args),
            "XCLAIM" => {
                if st.in_multi && args.len() > 1 {
                    st.claimed_in_multi = Some((st.db, args[0].clone(), args[1].clone()));
                }
                xclaim(ks, st, name, args)
            }
            _ => Err(ApplyError::Unknown(name.to_string())),
        }
    }
}
