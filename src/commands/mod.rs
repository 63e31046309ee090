//! Applying the master's replication stream to the keyspace, command by command, with the
//! master's own semantics.
//!
//! The map of this module: [`parse`] turns one command (`argv`) into a typed [`Command`]
//! once, by its name, each family parsing its own commands with the cursor of
//! `parse.rs`; [`Command::apply`] then applies it through the one signature every family
//! shares ([`parse::Apply`]). The families are leaves: `strings`, `lists`, `hashes`, `sets`,
//! `zsets` (with `zstore` for ranges and the *STORE commands), `sort`, `restore`, `bits`,
//! `hll`, `keys`, `functions`, `streams` and `stream_groups`; what several share sits
//! below them in `value_ops` (reading and storing values), `packed_edit` (small values
//! edited in place), `error` and `state`. This file owns the routing and the commands that
//! change only the stream's state (SELECT, MULTI/EXEC). It must never guess: a command it
//! does not know, or one that fails where the master succeeded, is an [`ApplyError`],
//! which the replication layer answers with a full resync rather than drifting.

mod bits;
mod error;
mod functions;
mod hashes;
mod hashes_parse;
mod hll;
mod keys;
mod lists;
mod packed_edit;
mod parse;
mod restore;
mod sets;
mod sort;
mod state;
mod stream_groups;
mod streams;
mod strings;
mod value_ops;
mod zrange;
mod zsets;
mod zstore;

use error::invalid;
pub use error::ApplyError;
use parse::{Apply, Parse};
pub use state::{StreamState, ZaddHint};

use crate::keyspace::Keyspace;

/// One command from the stream, parsed: its arguments are typed values, checked before
/// anything is applied.
pub struct Command<'a>(Parsed<'a>);

enum Parsed<'a> {
    /// Changes nothing we hold (PING, REPLCONF, PUBLISH, SCRIPT LOAD/FLUSH).
    Ignored,
    Select(u64),
    Multi,
    Exec,
    FlushDb,
    FlushAll,
    Strings(strings::Cmd<'a>),
    Sort(sort::Cmd<'a>),
    Restore(restore::Cmd<'a>),
    Lists(lists::Cmd<'a>),
    Hashes(hashes::Cmd<'a>),
    Sets(sets::Cmd<'a>),
    ZStore(zstore::Cmd<'a>),
    Bits(bits::Cmd<'a>),
    Hll(hll::Cmd<'a>),
    ZSets(zsets::Cmd<'a>),
    Keys(keys::Cmd<'a>),
    Functions(functions::Cmd<'a>),
    Streams(streams::Cmd<'a>),
    StreamGroups(stream_groups::Cmd<'a>),
}

/// The longest command name routed here, in bytes.
const MAX_NAME: usize = 24;

/// Route `$name` to a family's parser, each literal handing its own `&'static str` name.
macro_rules! route {
    ($name:expr, $args:expr, { $($variant:ident($module:ident): $($n:literal)|+ ;)* }) => {
        match $name {
            $( $( $n => Some(Parsed::$variant($module::parse(Parse::new($n, $args))?)), )+ )*
            _ => None,
        }
    };
}

/// Parse one command (`argv[0]` is its name, any case).
pub fn parse(argv: &[Vec<u8>]) -> Result<Command<'_>, ApplyError> {
    let Some((name, args)) = argv.split_first() else {
        return Err(invalid("", "empty command"));
    };
    let mut buf = [0u8; MAX_NAME];
    let upper = match buf.get_mut(..name.len()) {
        Some(b) => {
            b.copy_from_slice(name);
            b.make_ascii_uppercase();
            std::str::from_utf8(b).ok()
        }
        None => None,
    };
    let unknown = || ApplyError::Unknown(String::from_utf8_lossy(name).to_ascii_uppercase());
    let Some(upper) = upper else {
        return Err(unknown());
    };
    let routed = route!(upper, args, {
        Strings(strings): "SET" | "INCR" | "DECR" | "INCRBY" | "DECRBY" | "APPEND" | "DELEX" | "DELIFEQ" | "MSETEX" | "SETRANGE" | "MSET" | "MSETNX" | "SETNX" | "SETEX" | "PSETEX";
        Sort(sort): "SORT";
        Restore(restore): "RESTORE" | "RESTORE-ASKING";
        Lists(lists): "LPUSH" | "RPUSH" | "LPUSHX" | "RPUSHX" | "LPOP" | "RPOP" | "LSET" | "LTRIM" | "LREM" | "LINSERT" | "LMOVE" | "RPOPLPUSH";
        Hashes(hashes): "HSET" | "HMSET" | "HSETNX" | "HDEL" | "HINCRBY" | "HPEXPIREAT" | "HPEXPIRE" | "HEXPIREAT" | "HEXPIRE" | "HPERSIST" | "HSETEX";
        Sets(sets): "SADD" | "SREM" | "SMOVE" | "SINTERSTORE" | "SUNIONSTORE" | "SDIFFSTORE";
        ZStore(zstore): "ZUNIONSTORE" | "ZINTERSTORE" | "ZDIFFSTORE" | "ZRANGESTORE" | "ZREMRANGEBYRANK" | "ZREMRANGEBYSCORE" | "ZREMRANGEBYLEX";
        Bits(bits): "SETBIT" | "BITOP" | "BITFIELD";
        Hll(hll): "PFADD" | "PFMERGE" | "PFCOUNT" | "PFDEBUG";
        ZSets(zsets): "ZADD" | "ZINCRBY" | "ZREM" | "ZPOPMIN" | "ZPOPMAX";
        Keys(keys): "DEL" | "UNLINK" | "PEXPIREAT" | "PEXPIRE" | "EXPIREAT" | "EXPIRE" | "PERSIST" | "RENAME" | "RENAMENX" | "COPY" | "MOVE" | "SWAPDB";
        Functions(functions): "FUNCTION";
        Streams(streams): "XADD" | "XDEL" | "XTRIM" | "XSETID" | "XDELEX";
        StreamGroups(stream_groups): "XGROUP" | "XACK" | "XACKDEL" | "XCLAIM";
    });
    if let Some(c) = routed {
        return Ok(Command(c));
    }
    let mut p = Parse::new("", args);
    Ok(Command(match upper {
        "PING" | "REPLCONF" | "PUBLISH" | "SPUBLISH" => Parsed::Ignored,
        // Redis 6.x propagates SCRIPT LOAD and SCRIPT FLUSH (for replicas that would run
        // EVALSHA verbatim); the script cache is neither in an RDB nor in DEBUG DIGEST.
        "SCRIPT" => match p.eat_any(&["LOAD", "FLUSH"]) {
            Some(_) => Parsed::Ignored,
            None => {
                return Err(ApplyError::Unknown(format!(
                    "SCRIPT {}",
                    args.first()
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .unwrap_or_default()
                )))
            }
        },
        // Valkey 8+ propagates a primary's CLUSTER SETSLOT to its replicas (slot ownership
        // during a migration); it changes no key, and MIGRATE's deletions arrive as DEL.
        "CLUSTER" => match p.eat_any(&["SETSLOT"]) {
            Some(_) => Parsed::Ignored,
            None => {
                return Err(ApplyError::Unknown(format!(
                    "CLUSTER {}",
                    args.first()
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .unwrap_or_default()
                )))
            }
        },
        // What a master sends for a script when it replicates scripts verbatim; with effects
        // replication (every stock default since 5.0) only the writes arrive.
        "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" => {
            return Err(ApplyError::VerbatimScript(upper.to_string()))
        }
        "SELECT" => {
            let mut p = Parse::new("SELECT", args);
            let n = p.next_i64()?;
            p.finish()?;
            if n < 0 {
                return Err(invalid("SELECT", format!("database {n}")));
            }
            Parsed::Select(n as u64)
        }
        "MULTI" => Parsed::Multi,
        "EXEC" => Parsed::Exec,
        "FLUSHDB" => Parsed::FlushDb,
        "FLUSHALL" => Parsed::FlushAll,
        _ => return Err(unknown()),
    }))
}

impl Command<'_> {
    /// Apply the command to `ks`, with the stream's state `st`.
    pub fn apply(self, ks: &mut Keyspace, st: &mut StreamState) -> Result<(), ApplyError> {
        match self.0 {
            Parsed::Ignored => Ok(()),
            Parsed::Select(db) => {
                st.db = db;
                Ok(())
            }
            Parsed::Multi => {
                st.in_multi = true;
                st.claimed_in_multi = None;
                Ok(())
            }
            Parsed::Exec => {
                st.in_multi = false;
                st.claimed_in_multi = None;
                Ok(())
            }
            Parsed::FlushDb => {
                ks.flush_db(st.db);
                crate::mem::return_freed();
                Ok(())
            }
            Parsed::FlushAll => {
                ks.flush_all();
                crate::mem::return_freed();
                Ok(())
            }
            Parsed::Strings(c) => c.apply(ks, st),
            Parsed::Sort(c) => c.apply(ks, st),
            Parsed::Restore(c) => c.apply(ks, st),
            Parsed::Lists(c) => c.apply(ks, st),
            Parsed::Hashes(c) => c.apply(ks, st),
            Parsed::Sets(c) => c.apply(ks, st),
            Parsed::ZStore(c) => c.apply(ks, st),
            Parsed::Bits(c) => c.apply(ks, st),
            Parsed::Hll(c) => c.apply(ks, st),
            Parsed::ZSets(c) => c.apply(ks, st),
            Parsed::Keys(c) => c.apply(ks, st),
            Parsed::Functions(c) => c.apply(ks, st),
            Parsed::Streams(c) => c.apply(ks, st),
            Parsed::StreamGroups(c) => c.apply(ks, st),
        }
    }
}

/// Parse and apply one command (`argv[0]` is its name, any case).
pub fn apply(ks: &mut Keyspace, st: &mut StreamState, argv: &[Vec<u8>]) -> Result<(), ApplyError> {
    parse(argv)?.apply(ks, st)
}
