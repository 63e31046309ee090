//! Keyspace commands: deletion and expiry.

use super::error::{arg_i64, invalid, ApplyError};
use super::parse::{Apply, Parse};
use super::state::StreamState;
use crate::keyspace::Keyspace;

pub fn del(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    if args.is_empty() {
        return Err(invalid(cmd, "wrong number of arguments"));
    }
    for k in args {
        ks.remove(db, k);
    }
    Ok(())
}

/// `PEXPIREAT key ms [NX|XX|GT|LT]`, as 7.0+ masters propagate every expiry command, and
/// the relative `EXPIRE`/`PEXPIRE`/`EXPIREAT` that 6.2 masters still send, made absolute on
/// arrival as the server's replica does. Even a time already past is only recorded: a
/// replica never expires keys itself, the master sends the DEL.
pub fn expire(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, when, flags @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let n = arg_i64(cmd, when)?;
    let when = match cmd {
        "PEXPIREAT" => n,
        "EXPIREAT" => n.saturating_mul(1000),
        "PEXPIRE" => super::state::now_ms().saturating_add(n),
        _ => super::state::now_ms().saturating_add(n.saturating_mul(1000)),
    };
    let Some(e) = ks.entry(db, key) else {
        return Ok(());
    };
    let cur = e.expire_ms();
    for f in flags {
        let f = String::from_utf8_lossy(f).to_ascii_uppercase();
        let skip = match f.as_str() {
            "NX" => cur.is_some(),
            "XX" => cur.is_none(),
            // No expiry counts as infinite.
            "GT" => cur.is_none_or(|c| when <= c),
            "LT" => cur.is_some_and(|c| when >= c),
            _ => return Err(invalid(cmd, format!("unknown option {f}"))),
        };
        if skip {
            return Ok(());
        }
    }
    ks.put(db, e.with_expire(Some(when)));
    Ok(())
}

pub fn persist(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    if let Some(e) = ks.entry(db, key) {
        if e.expire_ms().is_some() {
            ks.put(db, e.with_expire(None));
        }
    }
    Ok(())
}

/// RENAME / RENAMENX src dst: the value and its expiry move to the new name.
pub fn rename(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [src, dst] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let Some(e) = ks.entry(db, src) else {
        return Err(invalid(
            cmd,
            "no such key: our data differs from the master's",
        ));
    };
    if cmd == "RENAMENX" && ks.entry(db, dst).is_some() {
        return Ok(());
    }
    if src == dst {
        return Ok(());
    }
    let moved = e.with_key(dst);
    ks.remove(db, src);
    ks.put(db, moved);
    Ok(())
}

/// COPY src dst [DB n] [REPLACE]: the value and its expiry, to the same or another db.
pub fn copy(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [src, dst, opts @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let (mut to_db, mut replace) = (db, false);
    let mut i = 0;
    while i < opts.len() {
        match String::from_utf8_lossy(&opts[i])
            .to_ascii_uppercase()
            .as_str()
        {
            "REPLACE" => replace = true,
            "DB" => {
                i += 1;
                let n = arg_i64(
                    cmd,
                    opts.get(i)
                        .ok_or_else(|| invalid(cmd, "DB needs a number"))?,
                )?;
                to_db = u64::try_from(n).map_err(|_| invalid(cmd, "negative db"))?;
            }
            o => return Err(invalid(cmd, format!("unknown option {o}"))),
        }
        i += 1;
    }
    let Some(e) = ks.entry(db, src) else {
        return Ok(());
    };
    if (to_db == db && src == dst) || (!replace && ks.entry(to_db, dst).is_some()) {
        return Ok(());
    }
    ks.put(to_db, e.with_key(dst));
    Ok(())
}

/// MOVE key db: only when the key is absent there (the master propagates only a move).
pub fn move_key(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, to] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let to = u64::try_from(arg_i64(cmd, to)?).map_err(|_| invalid(cmd, "negative db"))?;
    let Some(e) = ks.entry(db, key) else {
        return Ok(());
    };
    if to == db || ks.entry(to, key).is_some() {
        return Ok(());
    }
    ks.remove(db, key);
    ks.put(to, e);
    Ok(())
}

pub fn swapdb(ks: &mut Keyspace, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [a, b] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let a = u64::try_from(arg_i64(cmd, a)?).map_err(|_| invalid(cmd, "negative db"))?;
    let b = u64::try_from(arg_i64(cmd, b)?).map_err(|_| invalid(cmd, "negative db"))?;
    ks.swap_db(a, b);
    Ok(())
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
            "DEL" | "UNLINK" => del(ks, st.db, name, args),
            "PEXPIREAT" | "PEXPIRE" | "EXPIREAT" | "EXPIRE" => expire(ks, st.db, name, args),
            "PERSIST" => persist(ks, st.db, name, args),
            "RENAME" | "RENAMENX" => rename(ks, st.db, name, args),
            "COPY" => copy(ks, st.db, name, args),
            "MOVE" => move_key(ks, st.db, name, args),
            "SWAPDB" => swapdb(ks, name, args),
            _ => Err(ApplyError::Unknown(name.to_string())),
        }
    }
}
