//! Stream commands in their propagated forms: XADD with a concrete ID and exact trimming
//! (masters rewrite `*` and `~`), XDEL, Redis 8.2's XDELEX, XTRIM, XSETID. Consumer groups
//! live in `stream_groups`.
//!
//! The stream metadata moves as on the server: every XADD counts into `entries_added`, XDEL
//! raises `max_deleted_id`, the first ID follows the first live entry. Redis 8.2's deletion
//! policies decide what a deletion does to consumer groups: KEEPREF (the default) leaves
//! pending entries alone, DELREF removes them from every group, ACKED deletes only entries
//! no group still references (pending somewhere, or not yet delivered to some group).
//!
//! [`parse`] checks a command into a typed [`Cmd`] (IDs, trimming thresholds, policies,
//! options), so a malformed one fails before anything changes; its [`Apply`] changes the
//! stream through [`with_stream`].

use super::error::{arg_i64, invalid, ApplyError};
use super::parse::{Apply, Parse};
use super::state::StreamState;
use super::value_ops::{load, on_native, store, wrongtype};
use crate::keyspace::native::{Kind, Native, StreamNative};
use crate::keyspace::{Entry, Hints, Keyspace};
use crate::rdb::value::{ConsumerGroup, Stream, StreamId};
use crate::rdb::Value;

fn get_stream(
    ks: &Keyspace,
    db: u64,
    cmd: &str,
    key: &[u8],
) -> Result<Option<(Hints, Box<Stream>)>, ApplyError> {
    match load(ks, db, key)? {
        None => Ok(None),
        Some((h, Value::Stream(s))) => Ok(Some((h, s))),
        Some(_) => Err(wrongtype(cmd, key)),
    }
}

/// What every change leaves true: the length and first ID follow the entries.
fn settle(s: &mut StreamNative) {
    s.head.length = s.log.len() as u64;
    s.head.first_id = Some(s.log.first_id().unwrap_or_default());
}

/// Change the stream at `key` with `f` (`None`: absent, and not `create`d). A big stream
/// is changed in place (O(node) per entry touched); a small one is decoded, changed and
/// stored packed, or natively once it is big. A stream is kept even when empty.
pub(super) fn with_stream<R>(
    ks: &mut Keyspace,
    db: u64,
    cmd: &str,
    key: &[u8],
    create: bool,
    f: impl FnOnce(&mut StreamNative) -> Result<R, ApplyError>,
) -> Result<Option<R>, ApplyError> {
    if matches!(ks.entry(db, key), Some(Entry::Native(_))) {
        return on_native(ks, db, cmd, key, Kind::Stream, |n| match n {
            Native::Stream(s) => {
                let r = f(s)?;
                settle(s);
                Ok(r)
            }
            _ => Err(wrongtype(cmd, key)),
        })
        .transpose();
    }
    let (h, s) = match get_stream(ks, db, cmd, key)? {
        Some(x) => x,
        None if create => (Hints::default(), Box::new(new_stream())),
        None => return Ok(None),
    };
    let mut sn = StreamNative::from_stream(s).map_err(|_| {
        invalid(
            cmd,
            format!(
                "stream {} holds IDs out of order: our data differs",
                crate::rdb::error::escape_key(key)
            ),
        )
    })?;
    let r = f(&mut sn)?;
    settle(&mut sn);
    if sn.is_big() {
        ks.put(db, Entry::native(key, h, Native::Stream(Box::new(sn))));
    } else {
        store(ks, db, key, &h, &Value::Stream(Box::new(sn.to_stream())))?;
    }
    Ok(Some(r))
}

pub(super) fn parse_id(cmd: &str, a: &[u8]) -> Result<StreamId, ApplyError> {
    let t = std::str::from_utf8(a).map_err(|_| invalid(cmd, "bad stream ID"))?;
    let (ms, seq) = match t.split_once('-') {
        Some((m, s)) => (m, s),
        None => (t, "0"),
    };
    match (ms.parse(), seq.parse()) {
        (Ok(ms), Ok(seq)) => Ok(StreamId { ms, seq }),
        _ => Err(invalid(
            cmd,
            format!("bad stream ID {t:?} (masters propagate concrete IDs)"),
        )),
    }
}

/// What deleting an entry does to consumer groups (Redis 8.2+; KEEPREF before).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum DeleteRefs {
    #[default]
    Keep,
    Del,
    Acked,
}

impl DeleteRefs {
    const KEYWORDS: [&'static str; 3] = ["KEEPREF", "DELREF", "ACKED"];
    const ALL: [DeleteRefs; 3] = [DeleteRefs::Keep, DeleteRefs::Del, DeleteRefs::Acked];

    /// The next argument if it is a policy keyword, consumed.
    fn eat(p: &mut Parse<'_>) -> Option<DeleteRefs> {
        p.eat_any(&Self::KEYWORDS)
            .and_then(|i| Self::ALL.get(i).copied())
    }

    /// `[KEEPREF|DELREF|ACKED] IDS n id…` as XDELEX and XACKDEL take it, to the end.
    pub(super) fn parse_with_ids(
        p: &mut Parse<'_>,
    ) -> Result<(DeleteRefs, Vec<StreamId>), ApplyError> {
        let mut refs = None;
        loop {
            if let Some(r) = DeleteRefs::eat(p) {
                if refs.replace(r).is_some() {
                    return Err(p.error("two deletion policies"));
                }
            } else if p.eat("IDS") {
                if p.is_done() {
                    return Err(p.error("IDS without a count"));
                }
                let n = usize::try_from(p.next_i64()?).map_err(|_| p.error("negative ID count"))?;
                let ids = p.rest();
                if ids.len() != n {
                    return Err(p.error("ID count does not match the IDs"));
                }
                return Ok((refs.unwrap_or_default(), parse_ids(p.name(), ids)?));
            } else if p.is_done() {
                return Err(p.error("no IDS"));
            } else {
                let a = p.next()?;
                return Err(p.error(format!("unknown option {}", String::from_utf8_lossy(a))));
            }
        }
    }
}

/// Every argument of `args` as a stream ID.
pub(super) fn parse_ids(cmd: &str, args: &[Vec<u8>]) -> Result<Vec<StreamId>, ApplyError> {
    args.iter().map(|a| parse_id(cmd, a)).collect()
}

/// Whether some group still needs `id`: pending in a group, or not yet delivered to one.
fn referenced(s: &Stream, id: StreamId) -> bool {
    s.groups
        .iter()
        .any(|g| g.last_id < id || g.pending.binary_search_by(|p| p.id.cmp(&id)).is_ok())
}

/// Apply a deletion policy to `id` before deleting it; false when ACKED keeps it.
fn may_delete(s: &mut Stream, id: StreamId, refs: DeleteRefs) -> bool {
    match refs {
        DeleteRefs::Keep => true,
        DeleteRefs::Acked => !referenced(s, id),
        DeleteRefs::Del => {
            for g in &mut s.groups {
                unpend(g, id);
            }
            true
        }
    }
}

/// Delete `ids` one by one under `refs`, raising `max_deleted_id` as XDEL does.
pub(super) fn delete_entries(s: &mut StreamNative, ids: &[StreamId], refs: DeleteRefs) {
    for &id in ids {
        if !may_delete(&mut s.head, id, refs) {
            continue;
        }
        if s.log.remove(id) && s.head.max_deleted_id.is_none_or(|m| id > m) {
            s.head.max_deleted_id = Some(id);
        }
    }
}

/// A trimming request: MAXLEN keeps the newest `n`, MINID drops IDs below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Trim {
    MaxLen(usize),
    MinId(StreamId),
}

/// Trim from the head, exactly, under the deletion policy (ACKED skips over entries a
/// group still needs and goes on). Trimming does not move `max_deleted_id`.
fn trim(s: &mut StreamNative, t: Trim, refs: DeleteRefs) {
    if refs == DeleteRefs::Keep {
        match t {
            Trim::MaxLen(n) => s.log.keep_last(n),
            Trim::MinId(min) => s.log.drop_below(min),
        }
        return;
    }
    let mut len = s.log.len();
    let mut victims = Vec::new();
    for e in s.log.iter() {
        let stop = match t {
            Trim::MaxLen(n) => len <= n,
            Trim::MinId(min) => e.id >= min,
        };
        if stop {
            break;
        }
        if may_delete(&mut s.head, e.id, refs) {
            victims.push(e.id);
            len -= 1;
        }
    }
    for id in victims {
        s.log.remove(id);
    }
}

/// The options XADD and XTRIM share, consumed up to the first argument that is not one
/// (XADD's ID; XTRIM refuses it): the trimming, the policy and NOMKSTREAM (XADD only).
fn trim_options(
    p: &mut Parse<'_>,
    xadd: bool,
) -> Result<(Option<Trim>, DeleteRefs, bool), ApplyError> {
    let mut trimming = None;
    let mut refs = None;
    let mut nomkstream = false;
    while !p.is_done() {
        if xadd && p.eat("NOMKSTREAM") {
            nomkstream = true;
        } else if let Some(k) = p.eat_any(&["MAXLEN", "MINID"]) {
            let mut v = p.next_or("trim without a threshold")?;
            if v == b"~" {
                return Err(p.error("approximate trimming arrived (masters propagate it exact)"));
            }
            if v == b"=" {
                v = p.next_or("trim without a threshold")?;
            }
            trimming = Some(if k == 0 {
                Trim::MaxLen(
                    usize::try_from(arg_i64(p.name(), v)?)
                        .map_err(|_| p.error("negative MAXLEN"))?,
                )
            } else {
                Trim::MinId(parse_id(p.name(), v)?)
            });
        } else if p.eat("LIMIT") {
            // A replica ignores LIMIT: the threshold was rewritten to what the master kept.
            if !p.is_done() {
                p.next()?;
            }
        } else if let Some(r) = DeleteRefs::eat(p) {
            refs = Some(r);
        } else if xadd {
            break;
        } else {
            let up = String::from_utf8_lossy(p.next()?).to_ascii_uppercase();
            return Err(p.error(format!("unknown option {up}")));
        }
    }
    let refs = refs.unwrap_or_default();
    if matches!(trimming, Some(Trim::MinId(_))) && refs != DeleteRefs::Keep {
        // Redis 8.2+ rewrite an approximate MINID trim to `MINID = <first ID of the first
        // node>`, which may be a deleted entry's ID, so the entries the master removed
        // inside that node cannot be told from the command (measured: a Redis 8.6.3
        // replica keeps entries its master deleted). An exact MINID looks the same. A full
        // resync is the only exact answer.
        return Err(p.error(
            "MINID trimming under DELREF/ACKED cannot be replayed exactly (Redis 8.2+ \
             propagate an approximate one as a node's first ID)",
        ));
    }
    Ok((trimming, refs, nomkstream))
}

/// A stream as XADD or XGROUP CREATE … MKSTREAM makes it.
pub(super) fn new_stream() -> Stream {
    Stream {
        first_id: Some(StreamId::default()),
        max_deleted_id: Some(StreamId::default()),
        entries_added: Some(0),
        ..Stream::default()
    }
}

/// Remove `id` from the group's pending list and from its owner's.
pub(super) fn unpend(g: &mut ConsumerGroup, id: StreamId) -> bool {
    let Ok(i) = g.pending.binary_search_by(|p| p.id.cmp(&id)) else {
        return false;
    };
    g.pending.remove(i);
    for c in &mut g.consumers {
        if let Ok(j) = c.pending.binary_search(&id) {
            c.pending.remove(j);
            break;
        }
    }
    true
}

// ---------------------------------------------------------------- parse and apply

/// A command of this family, parsed.
pub(super) enum Cmd<'a> {
    /// XADD key [NOMKSTREAM] [MAXLEN|MINID [=] t] [LIMIT n] [policy] id field value…
    Add {
        key: &'a [u8],
        trim: Option<Trim>,
        refs: DeleteRefs,
        nomkstream: bool,
        id: StreamId,
        /// `field value` pairs (at least one).
        pairs: &'a [Vec<u8>],
    },
    Del {
        key: &'a [u8],
        ids: Vec<StreamId>,
    },
    /// XDELEX key [KEEPREF|DELREF|ACKED] IDS n id… (Redis 8.2+).
    DelEx {
        key: &'a [u8],
        refs: DeleteRefs,
        ids: Vec<StreamId>,
    },
    Trim {
        key: &'a [u8],
        trim: Trim,
        refs: DeleteRefs,
    },
    /// XSETID key last-id [ENTRIESADDED n] [MAXDELETEDID id].
    SetId {
        key: &'a [u8],
        last: StreamId,
        added: Option<u64>,
        max_deleted: Option<StreamId>,
    },
}

const XADD: &str = "XADD";
const XDEL: &str = "XDEL";
const XDELEX: &str = "XDELEX";
const XTRIM: &str = "XTRIM";
const XSETID: &str = "XSETID";

pub(super) fn parse(mut p: Parse<'_>) -> Result<Cmd<'_>, ApplyError> {
    let name = p.name();
    Ok(match name {
        XADD => {
            let key = p.next()?;
            let (trim, refs, nomkstream) = trim_options(&mut p, true)?;
            if p.is_done() {
                return Err(p.error("no ID"));
            }
            let id = parse_id(name, p.next()?)?;
            let pairs = p.pairs()?;
            Cmd::Add {
                key,
                trim,
                refs,
                nomkstream,
                id,
                pairs,
            }
        }
        XDEL => Cmd::Del {
            key: p.next()?,
            ids: parse_ids(name, p.rest())?,
        },
        XDELEX => {
            let key = p.next()?;
            let (refs, ids) = DeleteRefs::parse_with_ids(&mut p)?;
            Cmd::DelEx { key, refs, ids }
        }
        XTRIM => {
            let key = p.next()?;
            let (trim, refs, _) = trim_options(&mut p, false)?;
            let Some(trim) = trim else {
                return Err(p.error("no trimming strategy"));
            };
            Cmd::Trim { key, trim, refs }
        }
        XSETID => {
            let key = p.next()?;
            let last = parse_id(name, p.next()?)?;
            let (mut added, mut max_deleted) = (None, None);
            // Options come in pairs; a lone last argument is not looked at.
            while p.remaining() >= 2 {
                match p.eat_any(&["ENTRIESADDED", "MAXDELETEDID"]) {
                    Some(0) => {
                        added = Some(u64::try_from(p.next_i64()?).map_err(|_| p.error("negative"))?)
                    }
                    Some(_) => max_deleted = Some(parse_id(name, p.next()?)?),
                    None => {
                        let o = String::from_utf8_lossy(p.next()?).to_ascii_uppercase();
                        return Err(p.error(format!("unknown option {o}")));
                    }
                }
            }
            p.rest();
            Cmd::SetId {
                key,
                last,
                added,
                max_deleted,
            }
        }
        _ => return Err(ApplyError::Unknown(name.to_string())),
    })
}

impl Apply for Cmd<'_> {
    fn apply(self, ks: &mut Keyspace, st: &mut StreamState) -> Result<(), ApplyError> {
        let db = st.db;
        match self {
            Cmd::Add {
                key,
                trim,
                refs,
                nomkstream,
                id,
                pairs,
            } => xadd(ks, db, key, trim, refs, nomkstream, id, pairs),
            Cmd::Del { key, ids } => delete(ks, db, XDEL, key, &ids, DeleteRefs::Keep),
            Cmd::DelEx { key, refs, ids } => delete(ks, db, XDELEX, key, &ids, refs),
            Cmd::Trim { key, trim: t, refs } => {
                with_stream(ks, db, XTRIM, key, false, |s| {
                    trim(s, t, refs);
                    Ok(())
                })?;
                Ok(())
            }
            Cmd::SetId {
                key,
                last,
                added,
                max_deleted,
            } => xsetid(ks, db, key, last, added, max_deleted),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn xadd(
    ks: &mut Keyspace,
    db: u64,
    key: &[u8],
    trimming: Option<Trim>,
    refs: DeleteRefs,
    nomkstream: bool,
    id: StreamId,
    pairs: &[Vec<u8>],
) -> Result<(), ApplyError> {
    let fields: Vec<(&[u8], &[u8])> = pairs
        .chunks_exact(2)
        .map(|p| (&p[0][..], &p[1][..]))
        .collect();
    with_stream(ks, db, XADD, key, !nomkstream, |s| {
        if id <= s.head.last_id {
            return Err(invalid(
                XADD,
                format!(
                    "ID {id} is not above the last ID {}: our data differs",
                    s.head.last_id
                ),
            ));
        }
        s.log.push(id, &fields);
        let h = &mut s.head;
        h.last_id = id;
        h.entries_added = Some(h.entries_added.unwrap_or(h.length) + 1);
        if h.max_deleted_id.is_none() {
            h.max_deleted_id = Some(StreamId::default());
        }
        if let Some(t) = trimming {
            trim(s, t, refs);
        }
        Ok(())
    })?;
    Ok(())
}

/// XDEL and XDELEX: delete `ids` under `refs`.
fn delete(
    ks: &mut Keyspace,
    db: u64,
    cmd: &str,
    key: &[u8],
    ids: &[StreamId],
    refs: DeleteRefs,
) -> Result<(), ApplyError> {
    with_stream(ks, db, cmd, key, false, |s| {
        delete_entries(s, ids, refs);
        Ok(())
    })?;
    Ok(())
}

fn xsetid(
    ks: &mut Keyspace,
    db: u64,
    key: &[u8],
    last: StreamId,
    added: Option<u64>,
    max_deleted: Option<StreamId>,
) -> Result<(), ApplyError> {
    let found = with_stream(ks, db, XSETID, key, false, |s| {
        s.head.last_id = last;
        if added.is_some() {
            s.head.entries_added = added;
        }
        if max_deleted.is_some() {
            s.head.max_deleted_id = max_deleted;
        }
        Ok(())
    })?;
    found.ok_or_else(|| invalid(XSETID, "no such stream: our data differs"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(name: &'static str, a: &[&str]) -> Result<(), String> {
        let a: Vec<Vec<u8>> = a.iter().map(|s| s.as_bytes().to_vec()).collect();
        parse(Parse::new(name, &a))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn malformed_commands_fail_in_parse() {
        assert!(parsed(XADD, &["k", "1-1", "f", "v"]).is_ok());
        let opts = [
            "k",
            "nomkstream",
            "MAXLEN",
            "=",
            "5",
            "LIMIT",
            "9",
            "1",
            "f",
            "v",
        ];
        assert!(parsed(XADD, &opts).is_ok());
        assert!(parsed(XADD, &["k", "MAXLEN", "~", "5", "1-1", "f", "v"]).is_err());
        assert!(parsed(XADD, &["k", "1-1", "f"]).is_err());
        assert!(parsed(XADD, &["k", "*", "f", "v"]).is_err());
        assert!(parsed(XADD, &["k", "LIMIT"]).unwrap_err().contains("no ID"));
        assert!(parsed(XADD, &["k", "MINID", "5", "DELREF", "1-1", "f", "v"]).is_err());
        assert!(parsed(XADD, &["k", "MAXLEN", "-1", "1-1", "f", "v"]).is_err());
        assert!(parsed(XTRIM, &["k", "MAXLEN", "5", "acked"]).is_ok());
        assert!(parsed(XTRIM, &["k", "NOMKSTREAM", "MAXLEN", "5"]).is_err());
        let e = parsed(XTRIM, &["k"]).unwrap_err();
        assert!(e.contains("no trimming strategy"), "{e}");
        assert!(parsed(XTRIM, &["k", "MAXLEN"]).is_err());
        assert!(parsed(XSETID, &["k", "5-0", "ENTRIESADDED"]).is_ok());
        assert!(parsed(
            XSETID,
            &["k", "5-0", "entriesadded", "3", "MAXDELETEDID", "1"]
        )
        .is_ok());
        assert!(parsed(XSETID, &["k", "5-0", "BOGUS", "1"]).is_err());
        assert!(parsed(XSETID, &["k", "5-0", "ENTRIESADDED", "-1"]).is_err());
        assert!(parsed(XSETID, &["k"]).is_err());
        assert!(parsed(XDEL, &["k"]).is_ok());
        assert!(parsed(XDEL, &["k", "1-0", "x"]).is_err());
        assert!(parsed(XDELEX, &["k", "IDS", "2", "1-0", "2-0"]).is_ok());
        assert!(parsed(XDELEX, &["k", "ACKED", "IDS", "1", "1-0"]).is_ok());
        assert!(parsed(XDELEX, &["k", "ACKED", "DELREF", "IDS", "1", "1-0"]).is_err());
        assert!(parsed(XDELEX, &["k", "IDS", "2", "1-0"]).is_err());
        assert!(parsed(XDELEX, &["k", "IDS"]).is_err());
        assert!(parsed(XDELEX, &["k"]).unwrap_err().contains("no IDS"));
    }
}
