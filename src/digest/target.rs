//! What one server version does with a file it loads, as far as its digest is concerned.
//!
//! Owns the per-version table (docs/digest.md has the sources behind each line): which
//! magic and RDB versions it accepts, which type codes it knows, how it prints scores,
//! whether hash field TTLs enter the digest, whether it drops expired fields on load, and
//! the default config limits that decide a sorted set's encoding after load. It decides
//! nothing about the bytes of the file; the reader has decoded them already.

use crate::rdb::types;
use crate::rdb::Dialect;
use crate::server_version::{Family, ServerVersion};

use super::score::ScoreFormat;

/// Default `zset-max-listpack-entries` (`zset-max-ziplist-entries` before 7.0).
pub const ZSET_MAX_LISTPACK_ENTRIES: usize = 128;
/// Default `zset-max-listpack-value`: longest member, in bytes, a listpack zset holds.
pub const ZSET_MAX_LISTPACK_VALUE: usize = 64;
/// Default `databases`.
pub const DEFAULT_DATABASES: u64 = 16;

/// The digest-relevant behaviour of one server version with its default config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    pub target: ServerVersion,
    pub score_format: ScoreFormat,
    /// The server turns an integral score into a listpack integer when it builds a
    /// listpack from a skiplist (Redis 7.0+, Valkey), which loses the sign of -0.0.
    pub listpack_drops_negative_zero: bool,
    /// A hash field with a TTL xors `"!!hexpire!!"` into its element digest (Redis 7.4+).
    pub hash_field_ttl_marker: bool,
    /// Hash fields whose TTL has passed are gone from the loaded dataset, and a hash left
    /// with none is gone too. Valkey 9+ drops them while loading; Redis 7.4+ loads them and
    /// reclaims them in its first expiry cycle (within ~100 ms of the load): the digest is
    /// the one the server answers from then on (docs/digest.md, "hash field TTLs").
    pub drops_expired_fields: bool,
    /// Number of databases a server started with this config has.
    pub databases: u64,
    /// Valkey's `rdb-version-check relaxed`: load RDB versions newer than its own.
    pub relaxed_version: bool,
    /// Digest the data as a running server holds it, not as one loading it would: a
    /// skiplist-encoded sorted set stays a skiplist (the master keeps a set that shrank
    /// below the listpack thresholds plain, and its -0 scores with it; only a load or a
    /// restart rebuilds it compact). Off for files, on for a replica's live keyspace.
    pub as_held: bool,
}

/// Rule sets given a tag so far, in the order they were first seen.
static TAGGED: std::sync::Mutex<Vec<Rules>> = std::sync::Mutex::new(Vec::new());
/// More rule sets than a process ever digests under; past it, [`Rules::tag`] gives 0.
const MAX_TAGGED: usize = 1 << 12;

impl Rules {
    /// A number for these rules, the same for equal rules within this process, different
    /// for different ones, and at least 2 (0: none left). A key's digest remembered under
    /// one tag is what these rules give it (at any time, for a key that is kept).
    pub fn tag(&self) -> u32 {
        let mut t = TAGGED.lock().unwrap_or_else(|p| p.into_inner());
        let i = match t.iter().position(|r| r == self) {
            Some(i) => i,
            None if t.len() < MAX_TAGGED => {
                t.push(*self);
                t.len() - 1
            }
            None => return 0,
        };
        i as u32 + 2
    }

    /// The rules of `target` with its default config. Redis before 2.6 and Valkey before
    /// 7.2 (its first release) are refused.
    pub fn for_target(target: ServerVersion) -> Result<Rules, String> {
        let redis = target.family == Family::Redis;
        let v = release_of(target);
        if redis && !v.at_least(2, 6) {
            return Err(format!(
                "target {target}: digests are known from redis-2.6 and valkey-7.2 on"
            ));
        }
        if !redis && !target.at_least(7, 2) {
            return Err(format!(
                "target {target}: Valkey releases start at valkey-7.2"
            ));
        }
        Ok(Rules {
            target,
            score_format: if redis && !v.at_least(7, 2) {
                ScoreFormat::Printf17g
            } else {
                ScoreFormat::Fpconv
            },
            listpack_drops_negative_zero: !redis || v.at_least(7, 0),
            hash_field_ttl_marker: redis && v.at_least(7, 4),
            drops_expired_fields: if redis {
                v.at_least(7, 4)
            } else {
                v.at_least(9, 0)
            },
            databases: DEFAULT_DATABASES,
            relaxed_version: false,
            as_held: false,
        })
    }

    /// Newest RDB version (REDIS magic) this target writes and loads without relaxing.
    pub fn max_redis_rdb(&self) -> u32 {
        let t = release_of(self.target);
        match t.family {
            Family::Valkey => 11,
            Family::Redis => match (t.major, t.minor) {
                (0..=2, _) | (3, 0..=1) => 6,
                (3, 2..=8) => 7,
                (3, _) | (4, _) => 8,
                (5, _) | (6, _) => 9,
                (7, 0) => 10,
                (7, 2) => 11,
                (7, _) | (8, 0..=4) => 12,
                (8, 5..=6) => 13,
                (8, 7..=8) => 14,
                _ => 15,
            },
        }
    }

    /// Whether this target would start at all on a file with this header.
    pub fn check_header(&self, dialect: Dialect, version: u32) -> Result<(), String> {
        let t = self.target;
        let r = release_of(t);
        match (dialect, t.family) {
            (Dialect::Valkey, Family::Redis) => {
                Err(format!("{t} does not load VALKEY-magic files"))
            }
            (Dialect::Valkey, Family::Valkey) if !r.at_least(9, 0) => Err(format!(
                "{t} does not load VALKEY-magic files (Valkey 9.0 introduced them)"
            )),
            (Dialect::Valkey, Family::Valkey) => {
                if version > 80 && !self.relaxed_version {
                    Err(format!(
                        "{t} refuses RDB version VALKEY{version} without rdb-version-check relaxed"
                    ))
                } else {
                    Ok(())
                }
            }
            (Dialect::Redis, _) => {
                let max = self.max_redis_rdb();
                let can_relax = t.family == Family::Valkey && r.at_least(9, 0);
                if version <= max || (self.relaxed_version && can_relax) {
                    Ok(())
                } else if can_relax {
                    Err(format!(
                        "{t} refuses RDB version {version} (newest it knows: {max}) without rdb-version-check relaxed"
                    ))
                } else {
                    Err(format!(
                        "{t} refuses RDB version {version} (newest it loads: {max})"
                    ))
                }
            }
        }
    }

    /// Whether this target knows the object type `code` in a file of `dialect`.
    pub fn knows_type(&self, code: u8, dialect: Dialect) -> bool {
        use types::*;
        let t = release_of(self.target);
        if code == 8 {
            return false;
        }
        match (t.family, dialect) {
            (Family::Valkey, Dialect::Valkey) => code <= T22,
            (Family::Valkey, Dialect::Redis) => code <= STREAM_LISTPACKS_3,
            (Family::Redis, _) => {
                let max = match (t.major, t.minor) {
                    (0..=2, _) | (3, 0..=1) => HASH_ZIPLIST,
                    (3, 2..=8) => LIST_QUICKLIST,
                    (3, _) | (4, _) => LIST_QUICKLIST,
                    (5, _) | (6, _) => STREAM_LISTPACKS,
                    (7, 0) => STREAM_LISTPACKS_2,
                    (7, 2) => STREAM_LISTPACKS_3,
                    (7, _) | (8, 0..=4) => HASH_LISTPACK_EX,
                    (8, 5..=6) => STREAM_LISTPACKS_4,
                    (8, 7..=8) => ARRAY,
                    // GCRA (33) is compiled out of release builds (ENABLE_GCRA).
                    _ => HASH_TMPL_ARRAY_REF,
                };
                code <= max
            }
        }
    }
}

/// The release a version belongs to: Redis numbers its release candidates and unstable
/// builds X.9.N for release X+1.0 (6.9.241 is a 7.0 candidate).
fn release_of(v: ServerVersion) -> ServerVersion {
    if v.family == Family::Redis && v.minor >= 9 {
        ServerVersion::new(v.family, v.major + 1, 0, 0)
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(s: &str) -> Rules {
        Rules::for_target(s.parse().unwrap()).unwrap()
    }

    #[test]
    fn per_version_choices() {
        assert_eq!(rules("redis-6.2").score_format, ScoreFormat::Printf17g);
        assert_eq!(rules("redis-7.0").score_format, ScoreFormat::Printf17g);
        assert_eq!(rules("redis-7.2").score_format, ScoreFormat::Fpconv);
        assert_eq!(rules("valkey-8.1").score_format, ScoreFormat::Fpconv);
        assert!(!rules("redis-6.2").listpack_drops_negative_zero);
        assert!(rules("redis-7.0").listpack_drops_negative_zero);
        assert!(!rules("redis-7.2").hash_field_ttl_marker);
        assert!(rules("redis-7.4").hash_field_ttl_marker);
        assert!(!rules("valkey-9.1").hash_field_ttl_marker);
        assert!(rules("valkey-9.0").drops_expired_fields);
        assert!(Rules::for_target("redis-2.4".parse().unwrap()).is_err());
        assert!(rules("redis-6.9.241").listpack_drops_negative_zero);
        assert!(Rules::for_target("valkey-7.0".parse().unwrap()).is_err());
    }

    #[test]
    fn header_gates() {
        assert!(rules("redis-6.2").check_header(Dialect::Redis, 9).is_ok());
        assert!(rules("redis-6.2").check_header(Dialect::Redis, 10).is_err());
        assert!(rules("redis-7.0").check_header(Dialect::Redis, 11).is_err());
        assert!(rules("redis-8.2")
            .check_header(Dialect::Valkey, 80)
            .is_err());
        assert!(rules("valkey-8.1")
            .check_header(Dialect::Valkey, 80)
            .is_err());
        assert!(rules("valkey-9.1")
            .check_header(Dialect::Valkey, 80)
            .is_ok());
        assert!(rules("valkey-9.1")
            .check_header(Dialect::Redis, 12)
            .is_err());
        let mut r = rules("valkey-9.1");
        r.relaxed_version = true;
        assert!(r.check_header(Dialect::Redis, 12).is_ok());
    }
}
