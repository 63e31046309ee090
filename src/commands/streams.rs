//! Stream commands in their propagated forms: XADD with a concrete ID and exact trimming
//! (masters rewrite `*` and `~`), XDEL, Redis 8.2's XDELEX, XTRIM, XSETID. Consumer groups
//! live in `stream_groups`.
//!
//! The stream metadata moves as on the server: every XADD counts into `entries_added`, XDEL
//! raises `max_deleted_id`, the first ID follows the first live entry. Redis 8.2's deletion
//! policies decide what a deletion does to consumer groups: KEEPREF (the default) leaves
//! pending entries alone, DELREF removes them from every group, ACKED deletes only entries
//! no group still references (pending somewhere, or not yet delivered to some group).

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
    fn from_arg(a: &[u8]) -> Option<DeleteRefs> {
        match String::from_utf8_lossy(a).to_ascii_uppercase().as_str() {
            "KEEPREF" => Some(DeleteRefs::Keep),
            "DELREF" => Some(DeleteRefs::Del),
            "ACKED" => Some(DeleteRefs::Acked),
            _ => None,
        }
    }

    /// `[KEEPREF|DELREF|ACKED] IDS n id…` as XDELEX and XACKDEL take it.
    pub(super) fn parse_with_ids(
        cmd: &str,
        args: &[Vec<u8>],
    ) -> Result<(DeleteRefs, Vec<StreamId>), ApplyError> {
        let mut refs = None;
        let mut i = 0;
        while let Some(a) = args.get(i) {
            if let Some(r) = DeleteRefs::from_arg(a) {
                if refs.replace(r).is_some() {
                    return Err(invalid(cmd, "two deletion policies"));
                }
                i += 1;
            } else if a.eq_ignore_ascii_case(b"IDS") {
                let n = usize::try_from(arg_i64(
                    cmd,
                    args.get(i + 1)
                        .ok_or_else(|| invalid(cmd, "IDS without a count"))?,
                )?)
                .map_err(|_| invalid(cmd, "negative ID count"))?;
                let ids = args
                    .get(i + 2..)
                    .filter(|r| r.len() == n)
                    .ok_or_else(|| invalid(cmd, "ID count does not match the IDs"))?;
                let ids = ids
                    .iter()
                    .map(|a| parse_id(cmd, a))
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok((refs.unwrap_or_default(), ids));
            } else {
                return Err(invalid(
                    cmd,
                    format!("unknown option {}", String::from_utf8_lossy(a)),
                ));
            }
        }
        Err(invalid(cmd, "no IDS"))
    }
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
#[derive(Debug, Clone, Copy)]
enum Trim {
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

/// The options XADD and XTRIM share, parsed from `args` until the first argument that is
/// not one (XADD's ID); returns the trimming, the policy, NOMKSTREAM and that index.
fn trim_options(
    cmd: &str,
    args: &[Vec<u8>],
    xadd: bool,
) -> Result<(Option<Trim>, DeleteRefs, bool, usize), ApplyError> {
    let mut trimming = None;
    let mut refs = None;
    let mut nomkstream = false;
    let mut i = 0;
    while let Some(a) = args.get(i) {
        let up = String::from_utf8_lossy(a).to_ascii_uppercase();
        match up.as_str() {
            "NOMKSTREAM" if xadd => nomkstream = true,
            "MAXLEN" | "MINID" => {
                i += 1;
                let mut v = args
                    .get(i)
                    .ok_or_else(|| invalid(cmd, "trim without a threshold"))?;
                if v.as_slice() == b"~" {
                    return Err(invalid(
                        cmd,
                        "approximate trimming arrived (masters propagate it exact)",
                    ));
                }
                if v.as_slice() == b"=" {
                    i += 1;
                    v = args
                        .get(i)
                        .ok_or_else(|| invalid(cmd, "trim without a threshold"))?;
                }
                trimming = Some(if up == "MAXLEN" {
                    Trim::MaxLen(
                        usize::try_from(arg_i64(cmd, v)?)
                            .map_err(|_| invalid(cmd, "negative MAXLEN"))?,
                    )
                } else {
                    Trim::MinId(parse_id(cmd, v)?)
                });
            }
            // A replica ignores LIMIT: the threshold was rewritten to what the master kept.
            "LIMIT" => i += 1,
            _ => match DeleteRefs::from_arg(a) {
                Some(r) => refs = Some(r),
                None if xadd => break,
                None => return Err(invalid(cmd, format!("unknown option {up}"))),
            },
        }
        i += 1;
    }
    let refs = refs.unwrap_or_default();
    if matches!(trimming, Some(Trim::MinId(_))) && refs != DeleteRefs::Keep {
        // Redis 8.2+ rewrite an approximate MINID trim to `MINID = <first ID of the first
        // node>`, which may be a deleted entry's ID, so the entries the master removed
        // inside that node cannot be told from the command (measured: a Redis 8.6.3
        // replica keeps entries its master deleted). An exact MINID looks the same. A full
        // resync is the only exact answer.
        return Err(invalid(
            cmd,
            "MINID trimming under DELREF/ACKED cannot be replayed exactly (Redis 8.2+ \
             propagate an approximate one as a node's first ID)",
        ));
    }
    Ok((trimming, refs, nomkstream, i))
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

pub fn xadd(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, rest @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let (trimming, refs, nomkstream, i) = trim_options(cmd, rest, true)?;
    let id = parse_id(cmd, rest.get(i).ok_or_else(|| invalid(cmd, "no ID"))?)?;
    let pairs = &rest[i + 1..];
    if pairs.is_empty() || pairs.len() % 2 != 0 {
        return Err(invalid(cmd, "wrong number of arguments"));
    }
    let fields: Vec<(&[u8], &[u8])> = pairs
        .chunks_exact(2)
        .map(|p| (&p[0][..], &p[1][..]))
        .collect();
    with_stream(ks, db, cmd, key, !nomkstream, |s| {
        if id <= s.head.last_id {
            return Err(invalid(
                cmd,
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

pub fn xdel(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, ids @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let ids = ids
        .iter()
        .map(|a| parse_id(cmd, a))
        .collect::<Result<Vec<_>, _>>()?;
    with_stream(ks, db, cmd, key, false, |s| {
        delete_entries(s, &ids, DeleteRefs::Keep);
        Ok(())
    })?;
    Ok(())
}

/// XDELEX key [KEEPREF|DELREF|ACKED] IDS n id… (Redis 8.2+).
pub fn xdelex(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, rest @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let (refs, ids) = DeleteRefs::parse_with_ids(cmd, rest)?;
    with_stream(ks, db, cmd, key, false, |s| {
        delete_entries(s, &ids, refs);
        Ok(())
    })?;
    Ok(())
}

pub fn xtrim(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, rest @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let (trimming, refs, _, _) = trim_options(cmd, rest, false)?;
    let Some(t) = trimming else {
        return Err(invalid(cmd, "no trimming strategy"));
    };
    with_stream(ks, db, cmd, key, false, |s| {
        trim(s, t, refs);
        Ok(())
    })?;
    Ok(())
}

/// XSETID key last-id [ENTRIESADDED n] [MAXDELETEDID id].
pub fn xsetid(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, last, opts @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let last = parse_id(cmd, last)?;
    let (mut added, mut max_deleted) = (None, None);
    let mut i = 0;
    while i + 1 < opts.len() {
        match String::from_utf8_lossy(&opts[i])
            .to_ascii_uppercase()
            .as_str()
        {
            "ENTRIESADDED" => {
                added = Some(
                    u64::try_from(arg_i64(cmd, &opts[i + 1])?)
                        .map_err(|_| invalid(cmd, "negative"))?,
                )
            }
            "MAXDELETEDID" => max_deleted = Some(parse_id(cmd, &opts[i + 1])?),
            o => return Err(invalid(cmd, format!("unknown option {o}"))),
        }
        i += 2;
    }
    let found = with_stream(ks, db, cmd, key, false, |s| {
        s.head.last_id = last;
        if added.is_some() {
            s.head.entries_added = added;
        }
        if max_deleted.is_some() {
            s.head.max_deleted_id = max_deleted;
        }
        Ok(())
    })?;
    found.ok_or_else(|| invalid(cmd, "no such stream: our data differs"))
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
            "XADD" => xadd(ks, st.db, name, args),
            "XDEL" => xdel(ks, st.db, name, args),
            "XTRIM" => xtrim(ks, st.db, name, args),
            "XSETID" => xsetid(ks, st.db, name, args),
            "XDELEX" => xdelex(ks, st.db, name, args),
            _ => Err(ApplyError::Unknown(name.to_string())),
        }
    }
}
