//! Stream commands in their propagated forms: XADD with a concrete ID and exact trimming
//! (masters rewrite `*` and `~`), XDEL, XTRIM, XSETID. Consumer groups are not applied yet
//! (they force a full resync).
//!
//! The stream metadata moves as on the server: every XADD counts into `entries_added`, XDEL
//! raises `max_deleted_id`, the first ID follows the first live entry.

use super::value_ops::{load, store, wrongtype};
use super::{arg_i64, invalid, ApplyError};
use crate::keyspace::{Hints, Keyspace};
use crate::rdb::value::{Stream, StreamEntry, StreamId};
use crate::rdb::Value;

fn get_stream(
    ks: &Keyspace,
    db: u64,
    cmd: &str,
    key: &[u8],
) -> Result<Option<(Hints, Stream)>, ApplyError> {
    match load(ks, db, key)? {
        None => Ok(None),
        Some((h, Value::Stream(s))) => Ok(Some((h, *s))),
        Some(_) => Err(wrongtype(cmd, key)),
    }
}

fn put(ks: &mut Keyspace, db: u64, key: &[u8], h: &Hints, mut s: Stream) -> Result<(), ApplyError> {
    s.length = s.entries.len() as u64;
    s.first_id = Some(s.entries.first().map_or(StreamId::default(), |e| e.id));
    // A stream is kept even when empty.
    store(ks, db, key, h, &Value::Stream(Box::new(s)))
}

fn parse_id(cmd: &str, a: &[u8]) -> Result<StreamId, ApplyError> {
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

/// Trim from the head, exactly: MAXLEN keeps the newest `n`, MINID drops IDs below it.
fn trim(s: &mut Stream, cmd: &str, strategy: &[u8], threshold: &[u8]) -> Result<(), ApplyError> {
    match String::from_utf8_lossy(strategy)
        .to_ascii_uppercase()
        .as_str()
    {
        "MAXLEN" => {
            let n = usize::try_from(arg_i64(cmd, threshold)?)
                .map_err(|_| invalid(cmd, "negative MAXLEN"))?;
            let drop = s.entries.len().saturating_sub(n);
            s.entries.drain(..drop);
        }
        "MINID" => {
            let min = parse_id(cmd, threshold)?;
            s.entries.retain(|e| e.id >= min);
        }
        o => return Err(invalid(cmd, format!("unknown trim strategy {o}"))),
    }
    Ok(())
}

/// Trimming options `MAXLEN|MINID [=|~] threshold [LIMIT n]` starting at `args[i]`; returns
/// (strategy, threshold, next index).
fn trim_args<'a>(
    cmd: &str,
    args: &'a [Vec<u8>],
    mut i: usize,
) -> Result<(&'a [u8], &'a [u8], usize), ApplyError> {
    let strategy = &args[i];
    i += 1;
    let mut next = args
        .get(i)
        .ok_or_else(|| invalid(cmd, "trim without a threshold"))?;
    if next.as_slice() == b"=" || next.as_slice() == b"~" {
        if next.as_slice() == b"~" {
            return Err(invalid(
                cmd,
                "approximate trimming arrived (masters propagate it exact)",
            ));
        }
        i += 1;
        next = args
            .get(i)
            .ok_or_else(|| invalid(cmd, "trim without a threshold"))?;
    }
    i += 1;
    if args
        .get(i)
        .is_some_and(|a| a.eq_ignore_ascii_case(b"LIMIT"))
    {
        i += 2;
    }
    Ok((strategy, next, i))
}

pub fn xadd(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, rest @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let mut i = 0;
    let mut nomkstream = false;
    let mut trimming = None;
    while let Some(a) = rest.get(i) {
        let up = String::from_utf8_lossy(a).to_ascii_uppercase();
        match up.as_str() {
            "NOMKSTREAM" => {
                nomkstream = true;
                i += 1;
            }
            "MAXLEN" | "MINID" => {
                let (s, t, next) = trim_args(cmd, rest, i)?;
                trimming = Some((s, t));
                i = next;
            }
            _ => break,
        }
    }
    let id = parse_id(cmd, rest.get(i).ok_or_else(|| invalid(cmd, "no ID"))?)?;
    let pairs = &rest[i + 1..];
    if pairs.is_empty() || pairs.len() % 2 != 0 {
        return Err(invalid(cmd, "wrong number of arguments"));
    }
    let existing = get_stream(ks, db, cmd, key)?;
    if nomkstream && existing.is_none() {
        return Ok(());
    }
    let (h, mut s) = existing.unwrap_or_else(|| {
        (
            Hints::default(),
            Stream {
                first_id: Some(StreamId::default()),
                max_deleted_id: Some(StreamId::default()),
                entries_added: Some(0),
                ..Stream::default()
            },
        )
    });
    if id <= s.last_id {
        return Err(invalid(
            cmd,
            format!(
                "ID {id} is not above the last ID {}: our data differs",
                s.last_id
            ),
        ));
    }
    s.entries.push(StreamEntry {
        id,
        fields: pairs
            .chunks_exact(2)
            .map(|p| (p[0].clone(), p[1].clone()))
            .collect(),
    });
    s.last_id = id;
    s.entries_added = Some(s.entries_added.unwrap_or(s.length) + 1);
    if s.max_deleted_id.is_none() {
        s.max_deleted_id = Some(StreamId::default());
    }
    if let Some((strategy, threshold)) = trimming {
        trim(&mut s, cmd, strategy, threshold)?;
    }
    put(ks, db, key, &h, s)
}

pub fn xdel(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, ids @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let Some((h, mut s)) = get_stream(ks, db, cmd, key)? else {
        return Ok(());
    };
    let ids = ids
        .iter()
        .map(|a| parse_id(cmd, a))
        .collect::<Result<Vec<_>, _>>()?;
    let before = s.entries.len();
    let mut max_deleted = s.max_deleted_id.unwrap_or_default();
    s.entries.retain(|e| {
        let gone = ids.contains(&e.id);
        if gone && e.id > max_deleted {
            max_deleted = e.id;
        }
        !gone
    });
    if s.entries.len() != before {
        s.max_deleted_id = Some(max_deleted);
    }
    put(ks, db, key, &h, s)
}

pub fn xtrim(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, rest @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    if rest.is_empty() {
        return Err(invalid(cmd, "wrong number of arguments"));
    }
    let (strategy, threshold, _) = trim_args(cmd, rest, 0)?;
    let Some((h, mut s)) = get_stream(ks, db, cmd, key)? else {
        return Ok(());
    };
    trim(&mut s, cmd, strategy, threshold)?;
    put(ks, db, key, &h, s)
}

/// XSETID key last-id [ENTRIESADDED n] [MAXDELETEDID id].
pub fn xsetid(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, last, opts @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let Some((h, mut s)) = get_stream(ks, db, cmd, key)? else {
        return Err(invalid(cmd, "no such stream: our data differs"));
    };
    s.last_id = parse_id(cmd, last)?;
    let mut i = 0;
    while i + 1 < opts.len() {
        match String::from_utf8_lossy(&opts[i])
            .to_ascii_uppercase()
            .as_str()
        {
            "ENTRIESADDED" => {
                s.entries_added = Some(
                    u64::try_from(arg_i64(cmd, &opts[i + 1])?)
                        .map_err(|_| invalid(cmd, "negative"))?,
                )
            }
            "MAXDELETEDID" => s.max_deleted_id = Some(parse_id(cmd, &opts[i + 1])?),
            o => return Err(invalid(cmd, format!("unknown option {o}"))),
        }
        i += 2;
    }
    put(ks, db, key, &h, s)
}
