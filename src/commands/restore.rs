//! RESTORE (and RESTORE-ASKING) as masters propagate it: `RESTORE key ttl payload
//! [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f]`, Redis 7.0+ with the TTL made absolute.
//!
//! The payload is a DUMP: the RDB type byte, the value, the RDB version (2 bytes) and a
//! CRC-64/Jones of everything before it (8 bytes). It is hostile until parsed: checked,
//! decoded with the same reader as RDB files, and refused (forcing a resync) when it is a
//! module value or anything we cannot hold. A sorted set is stored in the encoding a server
//! loading it picks (small ones compact, where -0 becomes 0 on Redis 7.0+/Valkey).
//!
//! [`parse`] checks the arguments and the payload's framing and checksum into a typed
//! [`Cmd`] (TTL made absolute); its [`Apply`] decodes the value in the master's dialect and
//! stores it.

use super::error::{arg_i64, invalid, ApplyError};
use super::parse::{Apply, Parse};
use super::state::{now_ms, StreamState};
use super::zsets::{built, put as put_zset};
use crate::keyspace::{Hints, Keyspace};
use crate::rdb::{Dialect, Value};

/// Split and check a DUMP payload: (type byte, value bytes).
fn split_payload<'a>(cmd: &str, p: &'a [u8]) -> Result<(u8, &'a [u8]), ApplyError> {
    if p.len() < 1 + 10 {
        return Err(invalid(cmd, "DUMP payload too short"));
    }
    let (body, crc) = p.split_at(p.len() - 8);
    let mut stored = [0u8; 8];
    stored.copy_from_slice(crc);
    if crate::rdb::crc::crc64(body) != u64::from_le_bytes(stored) {
        return Err(invalid(cmd, "DUMP payload checksum mismatch"));
    }
    let value = &body[1..body.len() - 2];
    Ok((body[0], value))
}

/// A command of this family, parsed.
pub(super) enum Cmd<'a> {
    /// RESTORE / RESTORE-ASKING key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f]:
    /// the payload checked (its type byte and value bytes), the TTL made absolute in
    /// `hints.expire_ms`. The value is decoded on apply (its dialect is the master's).
    Restore {
        name: &'static str,
        key: &'a [u8],
        ty: u8,
        bytes: &'a [u8],
        replace: bool,
        hints: Hints,
    },
}

pub(super) fn parse(mut p: Parse<'_>) -> Result<Cmd<'_>, ApplyError> {
    let name = p.name();
    if name != "RESTORE" && name != "RESTORE-ASKING" {
        return Err(ApplyError::Unknown(name.to_string()));
    }
    let key = p.next()?;
    let ttl = p.next()?;
    let payload = p.next()?;
    let ttl = arg_i64(name, ttl)?;
    let (mut replace, mut absttl) = (false, false);
    let mut hints = Hints::default();
    while !p.is_done() {
        match p.eat_any(&["REPLACE", "ABSTTL", "IDLETIME", "FREQ"]) {
            Some(0) => replace = true,
            Some(1) => absttl = true,
            Some(i) => {
                let o = if i == 2 { "IDLETIME" } else { "FREQ" };
                if p.is_done() {
                    return Err(p.error(format!("{o} needs a value")));
                }
                let v = p.next_i64()?;
                if i == 2 {
                    hints.idle = u64::try_from(v).ok();
                } else {
                    hints.freq = u8::try_from(v).ok();
                }
            }
            None => {
                let o = String::from_utf8_lossy(p.next()?).to_ascii_uppercase();
                return Err(p.error(format!("unknown option {o}")));
            }
        }
    }
    let (ty, bytes) = split_payload(name, payload)?;
    hints.expire_ms = match ttl {
        0 => None,
        t if absttl => Some(t),
        t => Some(now_ms().saturating_add(t)),
    };
    Ok(Cmd::Restore {
        name,
        key,
        ty,
        bytes,
        replace,
        hints,
    })
}

impl Apply for Cmd<'_> {
    fn apply(self, ks: &mut Keyspace, st: &mut StreamState) -> Result<(), ApplyError> {
        match self {
            Cmd::Restore {
                name,
                key,
                ty,
                bytes,
                replace,
                hints,
            } => restore(ks, st, name, key, (ty, bytes), replace, hints),
        }
    }
}

fn restore(
    ks: &mut Keyspace,
    st: &StreamState,
    cmd: &str,
    key: &[u8],
    (ty, bytes): (u8, &[u8]),
    replace: bool,
    hints: Hints,
) -> Result<(), ApplyError> {
    if !replace && ks.entry(st.db, key).is_some() {
        return Err(invalid(
            cmd,
            "BUSYKEY here, restored on the master: our data differs",
        ));
    }
    let dialect = if st.valkey {
        Dialect::Valkey
    } else {
        Dialect::Redis
    };
    let value = crate::rdb::decode_value(ty, bytes, dialect)
        .map_err(|e| invalid(cmd, format!("DUMP payload: {e}")))?;
    if matches!(value, Value::Module(_)) {
        return Err(invalid(cmd, "module values are not supported"));
    }
    ks.remove(st.db, key);
    match value {
        Value::SortedSet(pairs) => put_zset(ks, st.db, key, built(hints, pairs, st)),
        v => {
            if v.is_empty_collection() {
                return Err(invalid(cmd, "empty collection in a DUMP payload"));
            }
            ks.set_with(st.db, key, &hints, &v, None)?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<Vec<u8>> {
        a.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    fn parsed(a: &[Vec<u8>]) -> Result<(), String> {
        parse(Parse::new("RESTORE", a))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn options_and_payload_checked_in_parse() {
        // A string "v" as DUMP writes it: type 0, length 1, "v", RDB version 11, CRC.
        let mut payload = vec![0u8, 1, b'v', 11, 0];
        payload.extend_from_slice(&crate::rdb::crc::crc64(&payload).to_le_bytes());
        let with = |opts: &[&str]| {
            let mut a = argv(&["k", "0"]);
            a.push(payload.clone());
            a.extend(argv(opts));
            parsed(&a)
        };
        assert!(with(&[]).is_ok());
        assert!(with(&["replace", "absttl", "IDLETIME", "5", "freq", "3"]).is_ok());
        assert!(with(&["IDLETIME", "-5"]).is_ok());
        assert!(with(&["IDLETIME"])
            .unwrap_err()
            .contains("IDLETIME needs a value"));
        assert!(with(&["FREQ", "x"]).is_err());
        assert!(with(&["bogus"])
            .unwrap_err()
            .contains("unknown option BOGUS"));
        assert!(parsed(&argv(&["k", "0"])).is_err());
        assert!(parsed(&argv(&["k", "x", "payload-bytes"])).is_err());
        let e = parsed(&argv(&["k", "0", "not a dump payload"])).unwrap_err();
        assert!(e.contains("checksum"), "{e}");
    }
}
