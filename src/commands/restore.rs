//! RESTORE (and RESTORE-ASKING) as masters propagate it: `RESTORE key ttl payload
//! [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f]`, Redis 7.0+ with the TTL made absolute.
//!
//! The payload is a DUMP: the RDB type byte, the value, the RDB version (2 bytes) and a
//! CRC-64/Jones of everything before it (8 bytes). It is hostile until parsed: checked,
//! decoded with the same reader as RDB files, and refused (forcing a resync) when it is a
//! module value or anything we cannot hold. A sorted set is stored in the encoding a server
//! loading it picks (small ones compact, where -0 becomes 0 on Redis 7.0+/Valkey).

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

pub fn restore(
    ks: &mut Keyspace,
    st: &StreamState,
    cmd: &str,
    args: &[Vec<u8>],
) -> Result<(), ApplyError> {
    let [key, ttl, payload, opts @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let ttl = arg_i64(cmd, ttl)?;
    let (mut replace, mut absttl) = (false, false);
    let mut hints = Hints::default();
    let mut i = 0;
    while i < opts.len() {
        let o = String::from_utf8_lossy(&opts[i]).to_ascii_uppercase();
        match o.as_str() {
            "REPLACE" => replace = true,
            "ABSTTL" => absttl = true,
            "IDLETIME" | "FREQ" => {
                i += 1;
                let v = arg_i64(
                    cmd,
                    opts.get(i)
                        .ok_or_else(|| invalid(cmd, format!("{o} needs a value")))?,
                )?;
                if o == "IDLETIME" {
                    hints.idle = u64::try_from(v).ok();
                } else {
                    hints.freq = u8::try_from(v).ok();
                }
            }
            _ => return Err(invalid(cmd, format!("unknown option {o}"))),
        }
        i += 1;
    }
    if !replace && ks.entry(st.db, key).is_some() {
        return Err(invalid(
            cmd,
            "BUSYKEY here, restored on the master: our data differs",
        ));
    }
    let (ty, bytes) = split_payload(cmd, payload)?;
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
    hints.expire_ms = match ttl {
        0 => None,
        t if absttl => Some(t),
        t => Some(now_ms().saturating_add(t)),
    };
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
            "RESTORE" | "RESTORE-ASKING" => restore(ks, st, name, args),
            _ => Err(ApplyError::Unknown(name.to_string())),
        }
    }
}
