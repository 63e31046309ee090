//! The closed sets of label values: why a link failed, why we forced a full resync, which
//! outcome an operation or a verification had, which command names get a series of their
//! own.
//!
//! Owns the cardinality of every labelled metric. Nothing from the network ever becomes a
//! label value unless it is on one of these lists; everything else is `other`.

/// Why the link to the master was lost (`link_errors_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkErrorReason {
    /// TCP connect (or name resolution) failed.
    Connect,
    /// The TLS handshake or session failed.
    Tls,
    /// AUTH, REPLCONF or PSYNC was refused, or the master was not ready.
    Handshake,
    /// The full-sync payload could not be read or loaded.
    FullSync,
    /// The master sent something that is not valid RESP where a frame was due.
    Protocol,
    /// Nothing from the master within the timeout.
    Timeout,
    /// The socket failed or the master closed it.
    Io,
    /// We dropped the link ourselves because a command could not be applied.
    Apply,
    /// `[source] full_sync_from`: the primary could not continue from the replica's full
    /// sync (its `INFO replication`), so no PSYNC was sent to it.
    HandoffRefused,
}

impl LinkErrorReason {
    pub const ALL: [LinkErrorReason; 9] = [
        LinkErrorReason::Connect,
        LinkErrorReason::Tls,
        LinkErrorReason::Handshake,
        LinkErrorReason::FullSync,
        LinkErrorReason::Protocol,
        LinkErrorReason::Timeout,
        LinkErrorReason::Io,
        LinkErrorReason::Apply,
        LinkErrorReason::HandoffRefused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LinkErrorReason::Connect => "connect",
            LinkErrorReason::Tls => "tls",
            LinkErrorReason::Handshake => "handshake",
            LinkErrorReason::FullSync => "full_sync",
            LinkErrorReason::Protocol => "protocol",
            LinkErrorReason::Timeout => "timeout",
            LinkErrorReason::Io => "io",
            LinkErrorReason::Apply => "apply",
            LinkErrorReason::HandoffRefused => "handoff_refused",
        }
    }
}

/// Why replisnap threw its data away and asked for a full resync
/// (`resyncs_forced_total{reason}`), as opposed to the master deciding one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncReason {
    /// The stream carried a command replisnap does not implement.
    UnknownCommand,
    /// A known command failed where the master's succeeded (wrong type, bad argument…).
    ApplyError,
    /// A checksum did not match (a full-sync payload's CRC, a snapshot's digest check).
    Checksum,
    /// The stream's framing or offsets became inconsistent.
    Protocol,
}

impl ResyncReason {
    pub const ALL: [ResyncReason; 4] = [
        ResyncReason::UnknownCommand,
        ResyncReason::ApplyError,
        ResyncReason::Checksum,
        ResyncReason::Protocol,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResyncReason::UnknownCommand => "unknown_command",
            ResyncReason::ApplyError => "apply_error",
            ResyncReason::Checksum => "checksum",
            ResyncReason::Protocol => "protocol",
        }
    }
}

/// Outcome of a snapshot or an upload (`snapshots_total{result}`, `uploads_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 2] = [Outcome::Ok, Outcome::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
        }
    }
}

/// Outcome of a verification of a stored snapshot (`verify_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// Every check passed: the bytes, the parse, the digest and key count match the manifest.
    Ok,
    /// The snapshot differs from its manifest or is corrupt.
    Bad,
    /// The check could not run (storage unreadable, listing failed…).
    Error,
}

impl VerifyOutcome {
    pub const ALL: [VerifyOutcome; 3] =
        [VerifyOutcome::Ok, VerifyOutcome::Bad, VerifyOutcome::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            VerifyOutcome::Ok => "ok",
            VerifyOutcome::Bad => "bad",
            VerifyOutcome::Error => "error",
        }
    }
}

/// The hooks of `[notify]` (`hooks_total{hook}`).
pub const HOOKS: [&str; 2] = ["on_success", "on_failure"];
/// How a hook ended (`hooks_total{result}`).
pub const HOOK_RESULTS: [&str; 3] = ["ok", "error", "timeout"];

/// The label for any command name not in [`COMMANDS`].
pub const OTHER_COMMAND: &str = "other";

/// Command names with a series of their own in `commands_applied_total{command}`: what a
/// master propagates and `commands::apply` knows, lower case like redis_exporter's `cmd`.
/// Sorted (a test checks) for the binary search; add a name when `commands` learns one.
pub const COMMANDS: &[&str] = &[
    "append",
    "bitfield",
    "bitop",
    "copy",
    "decr",
    "decrby",
    "del",
    "exec",
    "expire",
    "expireat",
    "flushall",
    "flushdb",
    "function",
    "hdel",
    "hexpire",
    "hexpireat",
    "hincrby",
    "hmset",
    "hpersist",
    "hpexpire",
    "hpexpireat",
    "hset",
    "hsetex",
    "hsetnx",
    "incr",
    "incrby",
    "linsert",
    "lmove",
    "lpop",
    "lpush",
    "lpushx",
    "lrem",
    "lset",
    "ltrim",
    "move",
    "mset",
    "msetnx",
    "multi",
    "persist",
    "pexpire",
    "pexpireat",
    "pfadd",
    "pfcount",
    "pfdebug",
    "pfmerge",
    "ping",
    "psetex",
    "publish",
    "rename",
    "renamenx",
    "replconf",
    "restore",
    "rpop",
    "rpoplpush",
    "rpush",
    "rpushx",
    "sadd",
    "sdiffstore",
    "select",
    "set",
    "setbit",
    "setex",
    "setnx",
    "setrange",
    "sinterstore",
    "smove",
    "spublish",
    "srem",
    "sunionstore",
    "swapdb",
    "unlink",
    "xack",
    "xackdel",
    "xadd",
    "xclaim",
    "xdel",
    "xdelex",
    "xgroup",
    "xsetid",
    "xtrim",
    "zadd",
    "zdiffstore",
    "zincrby",
    "zinterstore",
    "zpopmax",
    "zpopmin",
    "zrangestore",
    "zrem",
    "zremrangebylex",
    "zremrangebyrank",
    "zremrangebyscore",
    "zunionstore",
];

/// Longest name in [`COMMANDS`]; anything longer is `other` without looking.
const MAX_COMMAND_LEN: usize = 16;

/// The index in [`COMMANDS`] of a command name in any case, or `None` for `other`.
/// No allocation: it runs once per applied command on the replica thread.
pub fn command_index(name: &[u8]) -> Option<usize> {
    if name.is_empty() || name.len() > MAX_COMMAND_LEN {
        return None;
    }
    let mut buf = [0u8; MAX_COMMAND_LEN];
    let lower = &mut buf[..name.len()];
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    COMMANDS.binary_search_by(|c| c.as_bytes().cmp(lower)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_list_is_sorted_unique_lower_case_and_short() {
        assert!(COMMANDS.windows(2).all(|w| w[0] < w[1]));
        for c in COMMANDS {
            assert!(c.len() <= MAX_COMMAND_LEN, "{c}");
            assert_eq!(c.to_ascii_lowercase(), *c);
        }
        assert!(!COMMANDS.contains(&OTHER_COMMAND));
    }

    #[test]
    fn names_match_in_any_case_and_strangers_are_other() {
        assert_eq!(command_index(b"SET").map(|i| COMMANDS[i]), Some("set"));
        assert_eq!(
            command_index(b"zRemRangeByScore").map(|i| COMMANDS[i]),
            Some("zremrangebyscore")
        );
        assert_eq!(command_index(b"xautoclaim"), None);
        assert_eq!(command_index(b""), None);
        assert_eq!(command_index(&[0xff; 40]), None);
        assert_eq!(command_index("sét".as_bytes()), None);
    }
}
