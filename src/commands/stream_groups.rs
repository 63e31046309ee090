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
//!
//! [`parse`] checks a command into a typed [`Cmd`] (subcommand forms, IDs, options), so a
//! malformed one fails before anything changes; its [`Apply`] changes the stream through
//! `streams::with_stream`, with the version rules the stream's state holds. XCLAIM's parse
//! and apply live in the leaf `claim`, the group and consumer lookups in the leaf `lookup`.

mod claim;
mod lookup;

use super::error::{invalid, ApplyError};
use super::parse::{upper, Apply, Parse};
use super::state::{now_ms, StreamState};
use super::streams::{delete_entries, parse_id, parse_ids, unpend, with_stream, DeleteRefs};
use crate::keyspace::Keyspace;
use crate::rdb::value::{ConsumerGroup, Stream, StreamId};
use claim::Claim;
use lookup::{consumer_index, group_index, group_mut};

/// The server's marker for an unknown `entries_read`.
const ENTRIES_READ_INVALID: i64 = -1;

/// A group position argument: an ID, or `$` (the stream's last ID, when applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GroupId {
    Last,
    Id(StreamId),
}

impl GroupId {
    fn parse(cmd: &str, a: &[u8]) -> Result<GroupId, ApplyError> {
        if a == b"$" {
            Ok(GroupId::Last)
        } else {
            parse_id(cmd, a).map(GroupId::Id)
        }
    }

    fn resolve(self, s: &Stream) -> StreamId {
        match self {
            GroupId::Last => s.last_id,
            GroupId::Id(id) => id,
        }
    }
}

/// `[MKSTREAM] [ENTRIESREAD n]…` after XGROUP CREATE's or SETID's ID, to the end: whether
/// MKSTREAM was given, and the read counter (the server's invalid marker when absent).
fn entries_read_arg(p: &mut Parse<'_>) -> Result<(bool, i64), ApplyError> {
    let mut mkstream = false;
    let mut read = ENTRIES_READ_INVALID;
    while !p.is_done() {
        if p.eat("MKSTREAM") {
            mkstream = true;
        } else if p.remaining() >= 2 && p.eat("ENTRIESREAD") {
            read = p.next_i64()?;
        } else {
            let o = upper(p.next()?);
            return Err(p.error(format!("unknown option {o}")));
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

/// What an XGROUP command does to its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GroupOp<'a> {
    /// CREATE id [MKSTREAM] [ENTRIESREAD n].
    Create {
        id: GroupId,
        mkstream: bool,
        read: i64,
    },
    /// SETID id [ENTRIESREAD n].
    SetId {
        id: GroupId,
        read: i64,
    },
    Destroy,
    CreateConsumer(&'a [u8]),
    DelConsumer(&'a [u8]),
}

impl GroupOp<'_> {
    /// The subcommand, for errors.
    fn name(&self) -> &'static str {
        match self {
            GroupOp::Create { .. } => "CREATE",
            GroupOp::SetId { .. } => "SETID",
            GroupOp::Destroy => "DESTROY",
            GroupOp::CreateConsumer(_) => "CREATECONSUMER",
            GroupOp::DelConsumer(_) => "DELCONSUMER",
        }
    }
}

/// A command of this family, parsed.
pub(super) enum Cmd<'a> {
    Group {
        key: &'a [u8],
        group: &'a [u8],
        op: GroupOp<'a>,
    },
    Ack {
        key: &'a [u8],
        group: &'a [u8],
        ids: Vec<StreamId>,
    },
    /// XACKDEL key group [KEEPREF|DELREF|ACKED] IDS n id… (Redis 8.2+).
    AckDel {
        key: &'a [u8],
        group: &'a [u8],
        refs: DeleteRefs,
        ids: Vec<StreamId>,
    },
    Claim(Claim<'a>),
}

const XGROUP: &str = "XGROUP";
const XACK: &str = "XACK";
const XACKDEL: &str = "XACKDEL";
const XCLAIM: &str = "XCLAIM";

pub(super) fn parse(mut p: Parse<'_>) -> Result<Cmd<'_>, ApplyError> {
    let name = p.name();
    Ok(match name {
        XGROUP => parse_xgroup(p)?,
        XACK => Cmd::Ack {
            key: p.next()?,
            group: p.next()?,
            ids: parse_ids(name, p.rest())?,
        },
        XACKDEL => {
            let (key, group) = (p.next()?, p.next()?);
            let (refs, ids) = DeleteRefs::parse_with_ids(&mut p)?;
            Cmd::AckDel {
                key,
                group,
                refs,
                ids,
            }
        }
        XCLAIM => Cmd::Claim(claim::parse(p)?),
        _ => return Err(ApplyError::Unknown(name.to_string())),
    })
}

/// XGROUP CREATE|SETID|DESTROY|CREATECONSUMER|DELCONSUMER key group …
fn parse_xgroup(mut p: Parse<'_>) -> Result<Cmd<'_>, ApplyError> {
    let name = p.name();
    let (sub, key, group) = (p.next()?, p.next()?, p.next()?);
    let sub = upper(sub);
    let unsupported = |p: &Parse<'_>| p.error(format!("unsupported form of XGROUP {sub}"));
    let op = match sub.as_str() {
        "CREATE" | "SETID" => {
            if p.is_done() {
                return Err(unsupported(&p));
            }
            let id = GroupId::parse(name, p.next()?)?;
            let (mkstream, read) = entries_read_arg(&mut p)?;
            if sub == "CREATE" {
                GroupOp::Create { id, mkstream, read }
            } else if mkstream {
                return Err(p.error("MKSTREAM with SETID"));
            } else {
                GroupOp::SetId { id, read }
            }
        }
        "DESTROY" if p.is_done() => GroupOp::Destroy,
        "CREATECONSUMER" | "DELCONSUMER" if p.remaining() == 1 => {
            let consumer = p.next()?;
            if sub == "CREATECONSUMER" {
                GroupOp::CreateConsumer(consumer)
            } else {
                GroupOp::DelConsumer(consumer)
            }
        }
        _ => return Err(unsupported(&p)),
    };
    Ok(Cmd::Group { key, group, op })
}

impl Apply for Cmd<'_> {
    fn apply(self, ks: &mut Keyspace, st: &mut StreamState) -> Result<(), ApplyError> {
        match self {
            Cmd::Group { key, group, op } => xgroup(ks, st, key, group, op),
            Cmd::Ack { key, group, ids } => xack(ks, st.db, key, group, ids),
            Cmd::AckDel {
                key,
                group,
                refs,
                ids,
            } => xackdel(ks, st.db, key, group, refs, ids),
            Cmd::Claim(c) => {
                if st.in_multi {
                    st.claimed_in_multi = Some((st.db, c.key.to_vec(), c.group.to_vec()));
                }
                claim::apply(ks, st, c)
            }
        }
    }
}

/// XGROUP CREATE|SETID|DESTROY|CREATECONSUMER|DELCONSUMER.
fn xgroup(
    ks: &mut Keyspace,
    st: &StreamState,
    key: &[u8],
    group: &[u8],
    op: GroupOp<'_>,
) -> Result<(), ApplyError> {
    let cmd = XGROUP;
    let db = st.db;
    let create = matches!(op, GroupOp::Create { mkstream: true, .. });
    let now = now_ms();
    let found = with_stream(ks, db, cmd, key, create, |sn| {
        let s = &mut sn.head;
        match op {
            GroupOp::Create { id, read, .. } => {
                let id = id.resolve(s);
                let read = clamp_read(st, s, read, key, group);
                let Err(i) = group_index(s, group) else {
                    return Err(invalid(cmd, "group exists already: our data differs"));
                };
                s.groups.insert(
                    i,
                    ConsumerGroup {
                        name: group.to_vec(),
                        last_id: id,
                        entries_read: Some(read),
                        pending: Vec::new(),
                        consumers: Vec::new(),
                        unowned: None,
                    },
                );
            }
            GroupOp::SetId { id, read } => {
                let id = id.resolve(s);
                let read = clamp_read(st, s, read, key, group);
                let g = group_mut(s, cmd, key, group)?;
                g.last_id = id;
                g.entries_read = Some(read);
            }
            GroupOp::Destroy => {
                if let Ok(i) = group_index(s, group) {
                    s.groups.remove(i);
                }
            }
            GroupOp::CreateConsumer(consumer) => {
                let g = group_mut(s, cmd, key, group)?;
                consumer_index(g, consumer, now);
            }
            GroupOp::DelConsumer(consumer) => {
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
        }
        Ok(())
    })?;
    found.ok_or_else(|| {
        invalid(
            cmd,
            format!(
                "{} on missing key {}: our data differs",
                op.name(),
                crate::rdb::error::escape_key(key)
            ),
        )
    })
}

/// XACK key group id…
fn xack(
    ks: &mut Keyspace,
    db: u64,
    key: &[u8],
    group: &[u8],
    ids: Vec<StreamId>,
) -> Result<(), ApplyError> {
    with_stream(ks, db, XACK, key, false, |s| {
        if let Ok(gi) = group_index(&s.head, group) {
            for id in ids {
                unpend(&mut s.head.groups[gi], id);
            }
        }
        Ok(())
    })?;
    Ok(())
}

/// XACKDEL: acknowledge, then delete each acknowledged entry as the policy allows.
fn xackdel(
    ks: &mut Keyspace,
    db: u64,
    key: &[u8],
    group: &[u8],
    refs: DeleteRefs,
    ids: Vec<StreamId>,
) -> Result<(), ApplyError> {
    with_stream(ks, db, XACKDEL, key, false, |s| {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<Vec<u8>> {
        a.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    fn parsed(name: &'static str, a: &[&str]) -> Result<(), String> {
        let a = argv(a);
        parse(Parse::new(name, &a))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn malformed_commands_fail_in_parse() {
        let ok = |a: &[&str]| parsed(XGROUP, a).is_ok();
        assert!(ok(&[
            "CREATE",
            "k",
            "g",
            "$",
            "MKSTREAM",
            "ENTRIESREAD",
            "3"
        ]));
        assert!(ok(&["create", "k", "g", "0"]));
        assert!(!ok(&["CREATE", "k", "g"]));
        assert!(!ok(&["CREATE", "k", "g", "0", "ENTRIESREAD"]));
        assert!(!ok(&["SETID", "k", "g", "0", "MKSTREAM"]));
        assert!(ok(&["SETID", "k", "g", "$", "ENTRIESREAD", "-1"]));
        assert!(!ok(&["DESTROY", "k", "g", "x"]));
        assert!(ok(&["DESTROY", "k", "g"]));
        assert!(ok(&["CREATECONSUMER", "k", "g", "c"]));
        assert!(!ok(&["DELCONSUMER", "k", "g"]));
        assert!(!ok(&["HELP", "k", "g"]));
        assert!(!ok(&["CREATE", "k"]));
        assert!(parsed(XACK, &["k", "g"]).is_ok());
        assert!(parsed(XACK, &["k", "g", "x"]).is_err());
        assert!(parsed(XACKDEL, &["k", "g", "DELREF", "IDS", "1", "1-0"]).is_ok());
        assert!(parsed(XACKDEL, &["k", "g", "IDS", "-1"]).is_err());
        assert!(parsed(XCLAIM, &["k", "g", "c", "0"]).is_ok());
        assert!(parsed(XCLAIM, &["k", "g", "c", "x", "1-0"]).is_err());
        assert!(parsed(XCLAIM, &["k", "g", "c", "0", "1-0", "IDLE"]).is_err());
        assert!(parsed(XCLAIM, &["k", "g", "c", "0", "1-0", "FORCE", "2-0"]).is_err());
        let a = argv(&[
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
        ]);
        assert!(parse(Parse::new(XCLAIM, &a)).is_ok());
    }

    #[test]
    fn xclaim_in_multi_is_remembered() {
        let mut ks = Keyspace::default();
        let mut st = StreamState {
            in_multi: true,
            ..StreamState::default()
        };
        let a = argv(&["k", "g", "c", "0", "1-0"]);
        let r = parse(Parse::new(XCLAIM, &a)).and_then(|c| c.apply(&mut ks, &mut st));
        // The stream is missing here (drift), but the claim is remembered first, as before.
        assert!(r.is_err());
        assert_eq!(st.claimed_in_multi, Some((0, b"k".to_vec(), b"g".to_vec())));
    }
}
