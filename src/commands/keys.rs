//! Keyspace commands: deletion, expiry, renaming, copying and moving keys between dbs.
//!
//! [`parse`] turns each command into a typed [`Cmd`] (every argument checked: arity,
//! integers, option keywords; relative expiry times made absolute on arrival); its
//! [`Apply`] then changes the keyspace, each handler seeing typed fields only.

use super::error::ApplyError;
use super::parse::{upper, Apply, Parse};
use super::state::{now_ms, StreamState};
use crate::keyspace::Keyspace;

/// The conditions of `PEXPIREAT key ms [NX|XX|GT|LT]…`: the expiry is skipped when any
/// given one says so (no expiry counts as infinite).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Cond {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

impl Cond {
    /// Whether a key whose expiry is `cur` keeps it rather than taking `when`.
    fn skips(self, cur: Option<i64>, when: i64) -> bool {
        (self.nx && cur.is_some())
            || (self.xx && cur.is_none())
            || (self.gt && cur.is_none_or(|c| when <= c))
            || (self.lt && cur.is_some_and(|c| when >= c))
    }
}

/// A command of this family, parsed.
pub(super) enum Cmd<'a> {
    /// DEL / UNLINK key…
    Del {
        keys: &'a [Vec<u8>],
    },
    /// PEXPIREAT, PEXPIRE, EXPIREAT, EXPIRE: the time made absolute (ms).
    Expire {
        key: &'a [u8],
        at_ms: i64,
        cond: Cond,
    },
    Persist {
        key: &'a [u8],
    },
    /// RENAME / RENAMENX (`nx`); `name` for the drift error.
    Rename {
        name: &'static str,
        from: &'a [u8],
        to: &'a [u8],
        nx: bool,
    },
    /// COPY src dst [DB n] [REPLACE] (`db`: the selected one when absent).
    Copy {
        from: &'a [u8],
        to: &'a [u8],
        db: Option<u64>,
        replace: bool,
    },
    Move {
        key: &'a [u8],
        db: u64,
    },
    SwapDb {
        a: u64,
        b: u64,
    },
}

/// The next argument as a database number.
fn next_db(p: &mut Parse<'_>) -> Result<u64, ApplyError> {
    let n = p.next_i64()?;
    u64::try_from(n).map_err(|_| p.error("negative db"))
}

pub(super) fn parse(mut p: Parse<'_>) -> Result<Cmd<'_>, ApplyError> {
    let name = p.name();
    Ok(match name {
        "DEL" | "UNLINK" => {
            let keys = p.rest();
            if keys.is_empty() {
                return Err(p.error("wrong number of arguments"));
            }
            Cmd::Del { keys }
        }
        "PEXPIREAT" | "PEXPIRE" | "EXPIREAT" | "EXPIRE" => {
            let key = p.next()?;
            let n = p.next_i64()?;
            // Made absolute on arrival, as the server's replica does.
            let at_ms = match name {
                "PEXPIREAT" => n,
                "EXPIREAT" => n.saturating_mul(1000),
                "PEXPIRE" => now_ms().saturating_add(n),
                _ => now_ms().saturating_add(n.saturating_mul(1000)),
            };
            let mut cond = Cond::default();
            while !p.is_done() {
                match p.eat_any(&["NX", "XX", "GT", "LT"]) {
                    Some(0) => cond.nx = true,
                    Some(1) => cond.xx = true,
                    Some(2) => cond.gt = true,
                    Some(_) => cond.lt = true,
                    None => {
                        let f = upper(p.next()?);
                        return Err(p.error(format!("unknown option {f}")));
                    }
                }
            }
            Cmd::Expire { key, at_ms, cond }
        }
        "PERSIST" => {
            let key = p.next()?;
            p.finish()?;
            Cmd::Persist { key }
        }
        "RENAME" | "RENAMENX" => {
            let (from, to) = (p.next()?, p.next()?);
            p.finish()?;
            Cmd::Rename {
                name,
                from,
                to,
                nx: name == "RENAMENX",
            }
        }
        "COPY" => {
            let (from, to) = (p.next()?, p.next()?);
            let (mut db, mut replace) = (None, false);
            while !p.is_done() {
                match p.eat_any(&["REPLACE", "DB"]) {
                    Some(0) => replace = true,
                    Some(_) => {
                        if p.is_done() {
                            return Err(p.error("DB needs a number"));
                        }
                        db = Some(next_db(&mut p)?);
                    }
                    None => {
                        let o = upper(p.next()?);
                        return Err(p.error(format!("unknown option {o}")));
                    }
                }
            }
            Cmd::Copy {
                from,
                to,
                db,
                replace,
            }
        }
        "MOVE" => {
            let key = p.next()?;
            let db = next_db(&mut p)?;
            p.finish()?;
            Cmd::Move { key, db }
        }
        "SWAPDB" => {
            let a = next_db(&mut p)?;
            let b = next_db(&mut p)?;
            p.finish()?;
            Cmd::SwapDb { a, b }
        }
        _ => return Err(ApplyError::Unknown(name.to_string())),
    })
}

impl Apply for Cmd<'_> {
    fn apply(self, ks: &mut Keyspace, st: &mut StreamState) -> Result<(), ApplyError> {
        let db = st.db;
        match self {
            Cmd::Del { keys } => {
                for k in keys {
                    ks.remove(db, k);
                }
                Ok(())
            }
            Cmd::Expire { key, at_ms, cond } => {
                expire(ks, db, key, at_ms, cond);
                Ok(())
            }
            Cmd::Persist { key } => {
                persist(ks, db, key);
                Ok(())
            }
            Cmd::Rename { name, from, to, nx } => rename(ks, db, name, from, to, nx),
            Cmd::Copy {
                from,
                to,
                db: to_db,
                replace,
            } => {
                copy(ks, db, from, to, to_db.unwrap_or(db), replace);
                Ok(())
            }
            Cmd::Move { key, db: to } => {
                move_key(ks, db, key, to);
                Ok(())
            }
            Cmd::SwapDb { a, b } => {
                ks.swap_db(a, b);
                Ok(())
            }
        }
    }
}

/// Set `key`'s expiry to `when` unless `cond` says otherwise. Even a time already past is
/// only recorded: a replica never expires keys itself, the master sends the DEL.
fn expire(ks: &mut Keyspace, db: u64, key: &[u8], when: i64, cond: Cond) {
    let Some(e) = ks.entry(db, key) else {
        return;
    };
    if cond.skips(e.expire_ms(), when) {
        return;
    }
    ks.put(db, e.with_expire(Some(when)));
}

fn persist(ks: &mut Keyspace, db: u64, key: &[u8]) {
    if let Some(e) = ks.entry(db, key) {
        if e.expire_ms().is_some() {
            ks.put(db, e.with_expire(None));
        }
    }
}

/// RENAME / RENAMENX src dst: the value and its expiry move to the new name.
fn rename(
    ks: &mut Keyspace,
    db: u64,
    name: &str,
    src: &[u8],
    dst: &[u8],
    nx: bool,
) -> Result<(), ApplyError> {
    let Some(e) = ks.entry(db, src) else {
        return Err(super::error::invalid(
            name,
            "no such key: our data differs from the master's",
        ));
    };
    if nx && ks.entry(db, dst).is_some() {
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

/// COPY src dst: the value and its expiry, to the same or another db.
fn copy(ks: &mut Keyspace, db: u64, src: &[u8], dst: &[u8], to_db: u64, replace: bool) {
    let Some(e) = ks.entry(db, src) else {
        return;
    };
    if (to_db == db && src == dst) || (!replace && ks.entry(to_db, dst).is_some()) {
        return;
    }
    ks.put(to_db, e.copied_to(dst));
}

/// MOVE key db: only when the key is absent there (the master propagates only a move).
fn move_key(ks: &mut Keyspace, db: u64, key: &[u8], to: u64) {
    let Some(e) = ks.entry(db, key) else {
        return;
    };
    if to == db || ks.entry(to, key).is_some() {
        return;
    }
    ks.remove(db, key);
    ks.put(to, e);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<Vec<u8>> {
        a.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    fn parsed(name: &'static str, a: &[Vec<u8>]) -> Result<(), String> {
        parse(Parse::new(name, a))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn malformed_commands_fail_in_parse() {
        assert!(parsed("DEL", &argv(&[])).is_err());
        assert!(parsed("EXPIRE", &argv(&["k", "x"])).is_err());
        let e = parsed("PEXPIREAT", &argv(&["k", "1", "nx", "bogus"])).unwrap_err();
        assert!(e.contains("unknown option BOGUS"), "{e}");
        assert!(parsed("PEXPIREAT", &argv(&["k", "1", "nx", "Gt"])).is_ok());
        assert!(parsed("RENAME", &argv(&["a"])).is_err());
        assert!(parsed("RENAME", &argv(&["a", "b", "c"])).is_err());
        assert!(parsed("COPY", &argv(&["a", "b", "db"])).is_err());
        assert!(parsed("COPY", &argv(&["a", "b", "db", "-1"])).is_err());
        assert!(parsed("COPY", &argv(&["a", "b", "db", "2", "replace"])).is_ok());
        assert!(parsed("MOVE", &argv(&["a", "-1"])).is_err());
        assert!(parsed("SWAPDB", &argv(&["0", "1", "2"])).is_err());
    }

    #[test]
    fn conditions_skip_as_the_server_does() {
        let c = |nx, xx, gt, lt| Cond { nx, xx, gt, lt };
        assert!(c(true, false, false, false).skips(Some(5), 9));
        assert!(!c(true, false, false, false).skips(None, 9));
        assert!(c(false, true, false, false).skips(None, 9));
        assert!(c(false, false, true, false).skips(None, 9));
        assert!(c(false, false, true, false).skips(Some(9), 9));
        assert!(!c(false, false, true, false).skips(Some(8), 9));
        assert!(!c(false, false, false, true).skips(None, 9));
        assert!(c(false, false, false, true).skips(Some(9), 9));
        assert!(!Cond::default().skips(Some(1), 9));
    }
}
