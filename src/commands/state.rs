//! What the replication stream carries from one command to the next (the selected
//! database, MULTI/EXEC, the master's version-specific rules). A leaf.

use std::time::{SystemTime, UNIX_EPOCH};

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
    /// How the master prints a score it stores in a listpack (ZINCRBY on a compact set).
    pub score_text: crate::dtoa::ScoreText,
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
            score_text: v.map_or(crate::dtoa::ScoreText::Fpconv, |v| v.score_text()),
            ..StreamState::default()
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
