//! String commands as masters propagate them.

use super::{arg_i64, invalid, now_ms, ApplyError};
use crate::keyspace::Keyspace;
use crate::rdb::Value;

/// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]`. Masters 7.0+ send
/// absolute PXAT; 6.2 sends the relative forms, which a replica makes absolute on arrival
/// just as the server's replica does.
pub fn set(ks: &mut Keyspace, db: u64, cmd: &str, args: &[Vec<u8>]) -> Result<(), ApplyError> {
    let [key, value, opts @ ..] = args else {
        return Err(invalid(cmd, "wrong number of arguments"));
    };
    let (mut nx, mut xx, mut keepttl) = (false, false, false);
    let mut expire: Option<i64> = None;
    let mut i = 0;
    while i < opts.len() {
        let o = String::from_utf8_lossy(&opts[i]).to_ascii_uppercase();
        let mut num = || -> Result<i64, ApplyError> {
            i += 1;
            let a = opts
                .get(i)
                .ok_or_else(|| invalid(cmd, format!("{o} needs a value")))?;
            arg_i64(cmd, a)
        };
        match o.as_str() {
            "NX" => nx = true,
            "XX" => xx = true,
            "GET" => {}
            "KEEPTTL" => keepttl = true,
            "EX" => expire = Some(now_ms() + num()?.saturating_mul(1000)),
            "PX" => expire = Some(now_ms() + num()?),
            "EXAT" => expire = Some(num()?.saturating_mul(1000)),
            "PXAT" => expire = Some(num()?),
            _ => return Err(invalid(cmd, format!("unknown option {o}"))),
        }
        i += 1;
    }
    let old = ks.entry(db, key);
    if (nx && old.is_some()) || (xx && old.is_none()) {
        return Ok(());
    }
    if keepttl {
        expire = old.as_ref().and_then(|e| e.expire_ms());
    }
    ks.set(db, key, expire, &Value::String(value.clone()), None)?;
    Ok(())
}
