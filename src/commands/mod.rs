//! Applying the master's replication stream to the keyspace, command by command, with the
//! master's own semantics.
//!
//! Owns the dispatch by command name and the connection-level state the stream carries
//! (the selected database, MULTI/EXEC). Each family of commands lives in a file of its
//! own. It must never guess: a command it does not know, or one that fails where the
//! master succeeded, is an [`ApplyError`], which the replication layer answers with a full
//! resync rather than drifting.

mod bits;
mod functions;
mod hashes;
mod hll;
mod keys;
mod lists;
mod packed_edit;
mod restore;
mod sets;
mod sort;
mod stream_groups;
mod streams;
mod strings;
mod value_ops;
mod zsets;
mod zstore;

use std::time::{SystemTime, UNIX_EPOCH};

use crate::keyspace::{Keyspace, KeyspaceError};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("command {0:?} is not supported yet")]
    Unknown(String),
    #[error("{0} propagated verbatim (the master runs with `lua-replicate-commands no`): replisnap applies a script's effects, not the script; set `lua-replicate-commands yes` on the master (the default since Redis 5)")]
    VerbatimScript(String),
    #[error("{cmd}: {msg}")]
    Invalid { cmd: String, msg: String },
    #[error("{0}")]
    Keyspace(#[from] KeyspaceError),
}

/// State the stream carries across commands.
#[derive(Debug, Clone, Default)]
pub struct StreamState {
    pub db: u64,
    /// Inside MULTI…EXEC: a snapshot must not start until EXEC.
    pub in_multi: bool,
    /// The master stores a -0 score as 0 in listpack-encoded sorted sets (Redis 7.0+ and
    /// every Valkey print scores there through an integer fast path; 6.2 keeps "-0").
    pub listpack_zero_is_positive: bool,
    /// XGROUP CREATE/SETID cap ENTRIESREAD at the stream's entries_added (Redis 8.2+;
    /// measured: 7.4 and every Valkey up to 9.1 store the value as given).
    pub clamp_entries_read: bool,
    /// The (db, key, group) of an XCLAIM earlier in the current MULTI: a master's
    /// XREADGROUP propagates XCLAIMs then `XGROUP SETID … ENTRIESREAD n` with its own,
    /// never capped, counter.
    pub claimed_in_multi: Option<(u64, Vec<u8>, Vec<u8>)>,
    /// The master is a Valkey (its RDB type numbers, in DUMP payloads).
    pub valkey: bool,
    /// Redis 6.2's XCLAIM moves a pending entry whose stream entry is gone (7.0+ drop it).
    pub claim_deleted_entries: bool,
    /// How ZADD sizes a sorted set from its own arguments (measured per version).
    pub zadd_hint: ZaddHint,
}

/// How a master's ZADD decides a sorted set's encoding from the command's own members,
/// which shows in the data through the listpack's -0 rule (measured on every matrix
/// server: `ZADD k -0 a` followed by many or long members).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ZaddHint {
    /// Redis 7.0: a new set is compact unless its first member is long; an existing
    /// compact set converts only while inserting.
    FirstMember,
    /// Redis 7.2+: a new set is plain when the command has more than 128 members or its
    /// first member is long; an existing compact set converts first when the command has
    /// more than 128 members.
    Count,
    /// Valkey (and the default): the count or the longest member decides, both for a new
    /// set and for converting an existing compact one first.
    #[default]
    CountAndLongest,
}

impl StreamState {
    pub fn for_master(v: Option<crate::server_version::ServerVersion>) -> StreamState {
        use crate::server_version::Family;
        StreamState {
            listpack_zero_is_positive: v
                .is_none_or(|v| v.family == Family::Valkey || v.at_least(7, 0)),
            valkey: v.is_some_and(|v| v.family == Family::Valkey),
            clamp_entries_read: v.is_some_and(|v| v.family == Family::Redis && v.at_least(8, 2)),
            claim_deleted_entries: v
                .is_some_and(|v| v.family == Family::Redis && !v.at_least(7, 0)),
            zadd_hint: match v {
                Some(v) if v.family == Family::Redis && !v.at_least(7, 2) => ZaddHint::FirstMember,
                Some(v) if v.family == Family::Redis => ZaddHint::Count,
                _ => ZaddHint::CountAndLongest,
            },
            ..StreamState::default()
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(crate) fn invalid(cmd: &str, msg: impl Into<String>) -> ApplyError {
    ApplyError::Invalid {
        cmd: cmd.to_string(),
        msg: msg.into(),
    }
}

pub(crate) fn arg_i64(cmd: &str, a: &[u8]) -> Result<i64, ApplyError> {
    std::str::from_utf8(a)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            invalid(
                cmd,
                format!("not an integer: {:?}", String::from_utf8_lossy(a)),
            )
        })
}

/// Apply one command (`argv[0]` is its name, any case).
pub fn apply(ks: &mut Keyspace, st: &mut StreamState, argv: &[Vec<u8>]) -> Result<(), ApplyError> {
    let Some(name) = argv.first() else {
        return Err(invalid("", "empty command"));
    };
    let name = String::from_utf8_lossy(name).to_ascii_uppercase();
    let args = &argv[1..];
    match name.as_str() {
        "PING" | "REPLCONF" | "PUBLISH" | "SPUBLISH" => Ok(()),
        // Redis 6.x propagates SCRIPT LOAD and SCRIPT FLUSH (for replicas that would run
        // EVALSHA verbatim); the script cache is neither in an RDB nor in DEBUG DIGEST.
        "SCRIPT" => match args.first().map(|a| a.to_ascii_uppercase()).as_deref() {
            Some(b"LOAD") | Some(b"FLUSH") => Ok(()),
            _ => Err(ApplyError::Unknown(format!(
                "SCRIPT {}",
                args.first()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .unwrap_or_default()
            ))),
        },
        // What a master sends for a script when it replicates scripts verbatim; with effects
        // replication (every stock default since 5.0) only the writes arrive.
        "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" => Err(ApplyError::VerbatimScript(name)),
        "SELECT" => {
            let [db] = args else {
                return Err(invalid(&name, "wrong number of arguments"));
            };
            let n = arg_i64(&name, db)?;
            if n < 0 {
                return Err(invalid(&name, format!("database {n}")));
            }
            st.db = n as u64;
            Ok(())
        }
        "MULTI" => {
            st.in_multi = true;
            st.claimed_in_multi = None;
            Ok(())
        }
        "EXEC" => {
            st.in_multi = false;
            st.claimed_in_multi = None;
            Ok(())
        }
        "SET" => strings::set(ks, st.db, &name, args),
        "INCR" | "DECR" | "INCRBY" | "DECRBY" => strings::incr(ks, st.db, &name, args),
        "APPEND" => strings::append(ks, st.db, &name, args),
        "SORT" => sort::sort(ks, st, &name, args),
        "RESTORE" | "RESTORE-ASKING" => restore::restore(ks, st, &name, args),
        "DELEX" | "DELIFEQ" => strings::delex(ks, st.db, &name, args),
        "MSETEX" => strings::msetex(ks, st.db, &name, args),
        "SETRANGE" => strings::setrange(ks, st.db, &name, args),
        "MSET" | "MSETNX" | "SETNX" | "SETEX" | "PSETEX" => {
            strings::multi_set(ks, st.db, &name, args)
        }
        "LPUSH" | "RPUSH" | "LPUSHX" | "RPUSHX" => lists::push(ks, st.db, &name, args),
        "LPOP" | "RPOP" => lists::pop(ks, st.db, &name, args),
        "LSET" => lists::lset(ks, st.db, &name, args),
        "LTRIM" => lists::ltrim(ks, st.db, &name, args),
        "LREM" => lists::lrem(ks, st.db, &name, args),
        "LINSERT" => lists::linsert(ks, st.db, &name, args),
        "LMOVE" | "RPOPLPUSH" => lists::lmove(ks, st.db, &name, args),
        "HSET" | "HMSET" => hashes::hset(ks, st.db, &name, args),
        "HSETNX" => hashes::hsetnx(ks, st.db, &name, args),
        "HDEL" => hashes::hdel(ks, st.db, &name, args),
        "HINCRBY" => hashes::hincrby(ks, st.db, &name, args),
        "HPEXPIREAT" | "HPEXPIRE" | "HEXPIREAT" | "HEXPIRE" => {
            hashes::hexpire(ks, st.db, &name, args)
        }
        "HPERSIST" => hashes::hpersist(ks, st.db, &name, args),
        "HSETEX" => hashes::hsetex(ks, st.db, &name, args),
        "SADD" => sets::sadd(ks, st.db, &name, args),
        "SREM" => sets::srem(ks, st.db, &name, args),
        "SMOVE" => sets::smove(ks, st.db, &name, args),
        "SINTERSTORE" | "SUNIONSTORE" | "SDIFFSTORE" => sets::setop_store(ks, st.db, &name, args),
        "ZUNIONSTORE" | "ZINTERSTORE" | "ZDIFFSTORE" => zstore::zsetop_store(ks, st, &name, args),
        "ZRANGESTORE" => zstore::zrangestore(ks, st, &name, args),
        "ZREMRANGEBYRANK" | "ZREMRANGEBYSCORE" | "ZREMRANGEBYLEX" => {
            zstore::zremrange(ks, st, &name, args)
        }
        "SETBIT" => bits::setbit(ks, st.db, &name, args),
        "PFADD" => hll::pfadd(ks, st.db, &name, args),
        "PFMERGE" => hll::pfmerge(ks, st.db, &name, args),
        "PFCOUNT" => hll::pfcount(ks, st.db, &name, args),
        "PFDEBUG" => hll::pfdebug(ks, st.db, &name, args),
        "BITOP" => bits::bitop(ks, st.db, &name, args),
        "BITFIELD" => bits::bitfield(ks, st.db, &name, args),
        "ZADD" => zsets::zadd(ks, st, &name, args),
        "ZINCRBY" => zsets::zincrby(ks, st, &name, args),
        "ZREM" => zsets::zrem(ks, st, &name, args),
        "ZPOPMIN" | "ZPOPMAX" => zsets::zpop(ks, st, &name, args),
        "DEL" | "UNLINK" => keys::del(ks, st.db, &name, args),
        "PEXPIREAT" | "PEXPIRE" | "EXPIREAT" | "EXPIRE" => keys::expire(ks, st.db, &name, args),
        "PERSIST" => keys::persist(ks, st.db, &name, args),
        "RENAME" | "RENAMENX" => keys::rename(ks, st.db, &name, args),
        "COPY" => keys::copy(ks, st.db, &name, args),
        "MOVE" => keys::move_key(ks, st.db, &name, args),
        "SWAPDB" => keys::swapdb(ks, &name, args),
        "FUNCTION" => functions::function(ks, args),
        "XADD" => streams::xadd(ks, st.db, &name, args),
        "XDEL" => streams::xdel(ks, st.db, &name, args),
        "XTRIM" => streams::xtrim(ks, st.db, &name, args),
        "XSETID" => streams::xsetid(ks, st.db, &name, args),
        "XDELEX" => streams::xdelex(ks, st.db, &name, args),
        "XGROUP" => stream_groups::xgroup(ks, st, args),
        "XACK" => stream_groups::xack(ks, st.db, &name, args),
        "XACKDEL" => stream_groups::xackdel(ks, st.db, &name, args),
        "XCLAIM" => {
            if st.in_multi && args.len() > 1 {
                st.claimed_in_multi = Some((st.db, args[0].clone(), args[1].clone()));
            }
            stream_groups::xclaim(ks, st, &name, args)
        }
        "FLUSHDB" => {
            ks.flush_db(st.db);
            Ok(())
        }
        "FLUSHALL" => {
            ks.flush_all();
            Ok(())
        }
        _ => Err(ApplyError::Unknown(name)),
    }
}
