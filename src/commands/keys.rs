//! Keyspace commands: deletion and expiry.

use super::{arg_i64, invalid, ApplyError};
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
        "PEXPIRE" => super::now_ms().saturating_add(n),
        _ => super::now_ms().saturating_add(n.saturating_mul(1000)),
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
