//! Values sent as plain write commands instead of one `RESTORE`: strings as `SET`, which
//! costs the target far less than decoding a DUMP payload, and any value whose payload is
//! longer than the target's `proto-max-bulk-len` rebuilt with `RPUSH`/`SADD`/`ZADD`/`HSET`
//! (or `SET` then `APPEND`) in chunks, then its expiry.
//!
//! Owns which commands recreate a value exactly and how a value is cut. It must never emit
//! an argument longer than the limit it was given, and never guess a type it cannot
//! rebuild: streams, module values and the newer types stay with `RESTORE`. A leaf: it
//! imports nothing of its siblings.

use crate::rdb::value::Value;

/// Elements per chunked command.
const CHUNK_ELEMENTS: usize = 8192;
/// Bytes of arguments per chunked command (the server buffers a whole command).
const CHUNK_BYTES: usize = 8 << 20;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlainError {
    #[error("{what} of {len} bytes is longer than the target's proto-max-bulk-len ({limit}): no command can create it there; raise proto-max-bulk-len on the target")]
    TooLong {
        what: &'static str,
        len: usize,
        limit: u64,
    },
    #[error("a {0} value is larger than the target's proto-max-bulk-len and cannot be rebuilt with plain commands; raise proto-max-bulk-len on the target")]
    Unsupported(&'static str),
}

/// `SET key value [NX] [PXAT ms]`: a string, as `RESTORE` would have created it (the
/// server picks the same encoding either way). `NX` unless replacing, so an existing key
/// is refused as `RESTORE` refuses it (a nil reply).
pub fn set_string(
    key: &[u8],
    value: &[u8],
    expire_ms: Option<i64>,
    replace: bool,
    emit: &mut dyn FnMut(&[&[u8]]),
) {
    let at = expire_ms.map(|t| t.to_string());
    let mut args: Vec<&[u8]> = vec![b"SET", key, value];
    if !replace {
        args.push(b"NX");
    }
    if let Some(t) = &at {
        args.extend([&b"PXAT"[..], t.as_bytes()]);
    }
    emit(&args);
}

fn check(what: &'static str, len: usize, limit: u64) -> Result<(), PlainError> {
    if len as u64 > limit {
        return Err(PlainError::TooLong { what, len, limit });
    }
    Ok(())
}

/// Emits `head key a b c …` commands over `items`, each holding at most
/// [`CHUNK_ELEMENTS`] items and about [`CHUNK_BYTES`] of arguments.
fn chunked<T>(
    head: &[u8],
    key: &[u8],
    items: &[T],
    args_of: impl Fn(&T) -> Vec<Vec<u8>>,
    emit: &mut dyn FnMut(&[&[u8]]),
) {
    let mut owned: Vec<Vec<u8>> = Vec::new();
    let mut bytes = 0usize;
    let mut n = 0usize;
    let mut send = |owned: &mut Vec<Vec<u8>>| {
        if owned.is_empty() {
            return;
        }
        let mut args: Vec<&[u8]> = vec![head, key];
        args.extend(owned.iter().map(|a| a.as_slice()));
        emit(&args);
        owned.clear();
    };
    for it in items {
        for a in args_of(it) {
            bytes += a.len();
            owned.push(a);
        }
        n += 1;
        if n >= CHUNK_ELEMENTS || bytes >= CHUNK_BYTES {
            send(&mut owned);
            n = 0;
            bytes = 0;
        }
    }
    send(&mut owned);
}

/// Rebuild `value` under `key` with plain commands, no argument over `limit` bytes;
/// `DEL` first when replacing, `PEXPIREAT` last. IDLETIME and FREQ are not carried.
pub fn rebuild(
    key: &[u8],
    value: &Value,
    expire_ms: Option<i64>,
    replace: bool,
    limit: u64,
    emit: &mut dyn FnMut(&[&[u8]]),
) -> Result<(), PlainError> {
    // Everything is checked before the first command goes out.
    match value {
        Value::String(s) => check("the string", s.len(), limit)?,
        Value::List(v) | Value::Set(v) => {
            for e in v {
                check("an element", e.len(), limit)?;
            }
        }
        Value::SortedSet(v) => {
            for (m, _) in v {
                check("a member", m.len(), limit)?;
            }
        }
        Value::Hash(v) => {
            for f in v {
                check("a field", f.field.len(), limit)?;
                check("a field's value", f.value.len(), limit)?;
            }
        }
        other => return Err(PlainError::Unsupported(other.type_name())),
    }
    check("the key", key.len(), limit)?;
    if replace {
        emit(&[b"DEL", key]);
    }
    match value {
        Value::String(s) => {
            let step = (limit as usize).clamp(1, CHUNK_BYTES);
            let mut parts = s.chunks(step);
            let first = parts.next().unwrap_or_default();
            emit(&[b"SET", key, first]);
            for p in parts {
                emit(&[b"APPEND", key, p]);
            }
        }
        Value::List(v) => chunked(b"RPUSH", key, v, |e| vec![e.clone()], emit),
        Value::Set(v) => chunked(b"SADD", key, v, |e| vec![e.clone()], emit),
        Value::SortedSet(v) => chunked(
            b"ZADD",
            key,
            v,
            // Display gives the shortest text that parses back to the same double
            // ("-0", "inf" and "-inf" included), as the server's strtod reads it.
            |(m, s)| vec![s.to_string().into_bytes(), m.clone()],
            emit,
        ),
        Value::Hash(v) => {
            chunked(
                b"HSET",
                key,
                v,
                |f| vec![f.field.clone(), f.value.clone()],
                emit,
            );
            for f in v {
                if let Some(t) = f.expire_ms {
                    let t = t.to_string();
                    emit(&[b"HPEXPIREAT", key, t.as_bytes(), b"FIELDS", b"1", &f.field]);
                }
            }
        }
        _ => unreachable!("checked above"),
    }
    if let Some(t) = expire_ms {
        let t = t.to_string();
        emit(&[b"PEXPIREAT", key, t.as_bytes()]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(f: impl FnOnce(&mut dyn FnMut(&[&[u8]]))) -> Vec<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        f(&mut |a: &[&[u8]]| out.push(a.iter().map(|x| x.to_vec()).collect()));
        out
    }

    #[test]
    fn a_string_is_set_then_appended_in_parts() {
        let s: Vec<u8> = (0..CHUNK_BYTES + 5).map(|i| i as u8).collect();
        let limit = s.len() as u64;
        let cmds = collect(|e| {
            rebuild(b"k", &Value::String(s.clone()), Some(99), false, limit, e).unwrap()
        });
        let heads: Vec<&[u8]> = cmds.iter().map(|c| c[0].as_slice()).collect();
        assert_eq!(heads, [&b"SET"[..], b"APPEND", b"PEXPIREAT"]);
        let joined: Vec<u8> = cmds[..2].iter().flat_map(|c| c[2].clone()).collect();
        assert_eq!(joined, s);
        // One byte more than the target takes: nothing can create it there.
        let r = rebuild(
            b"k",
            &Value::String(s.clone()),
            None,
            false,
            limit - 1,
            &mut |_| {},
        );
        assert!(matches!(r, Err(PlainError::TooLong { .. })), "{r:?}");
    }

    #[test]
    fn too_long_is_refused_before_anything_is_sent() {
        let v = Value::Set(vec![b"a".to_vec(), vec![0; 11]]);
        let cmds = collect(|e| {
            let r = rebuild(b"k", &v, None, true, 10, e);
            assert!(matches!(r, Err(PlainError::TooLong { len: 11, .. })));
        });
        assert!(cmds.is_empty());
    }

    #[test]
    fn sets_are_chunked_and_complete() {
        let members: Vec<Vec<u8>> = (0..20_000).map(|i| i.to_string().into_bytes()).collect();
        let cmds = collect(|e| {
            rebuild(b"k", &Value::Set(members.clone()), None, true, 1 << 20, e).unwrap()
        });
        assert_eq!(cmds[0], [b"DEL".to_vec(), b"k".to_vec()]);
        let sent: Vec<Vec<u8>> = cmds[1..].iter().flat_map(|c| c[2..].to_vec()).collect();
        assert_eq!(sent, members);
        assert!(cmds[1..].iter().all(|c| c.len() - 2 <= CHUNK_ELEMENTS));
    }

    #[test]
    fn scores_round_trip_through_their_text() {
        for s in [0.1, -0.0, f64::INFINITY, f64::NEG_INFINITY, 1e300, 5e-324] {
            let t = s.to_string();
            let back: f64 = t.parse().unwrap();
            assert_eq!(back.to_bits(), s.to_bits(), "{t}");
        }
    }
}
