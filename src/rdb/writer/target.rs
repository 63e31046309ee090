//! What a target server loads: its magic, RDB version and which encodings it knows.
//!
//! Owns the table from server version to format capabilities. It must never promise a
//! type the target cannot load: the writer asks here before every choice.

use crate::server_version::{Family, ServerVersion};

/// How a hash with field TTLs is written, if the target can hold one at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashTtlFormat {
    /// Redis 7.4+: type 25 (listpack) or 24 (metadata).
    Redis,
    /// Valkey 9+: type 22 (HASH_2).
    Valkey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub server: ServerVersion,
    pub valkey_magic: bool,
    pub rdb_version: u32,
}

impl Target {
    /// The format a server of this version writes (and therefore loads).
    pub fn for_server(server: ServerVersion) -> Result<Target, String> {
        let (valkey_magic, rdb_version) = match server.family {
            Family::Redis => {
                if !server.at_least(5, 0) {
                    return Err(format!(
                        "{server}: targets older than redis-5.0 are not supported"
                    ));
                }
                let v = if !server.at_least(7, 0) {
                    9
                } else if !server.at_least(7, 2) {
                    10
                } else if !server.at_least(7, 4) {
                    11
                } else if !server.at_least(8, 6) {
                    12
                } else if !server.at_least(8, 8) {
                    13
                } else if !server.at_least(8, 10) {
                    14
                } else {
                    15
                };
                (false, v)
            }
            Family::Valkey => {
                if !server.at_least(7, 2) {
                    return Err(format!("{server}: Valkey starts at 7.2"));
                }
                if server.at_least(9, 0) {
                    (true, 80)
                } else {
                    (false, 11)
                }
            }
        };
        Ok(Target {
            server,
            valkey_magic,
            rdb_version,
        })
    }

    pub fn magic(&self) -> String {
        if self.valkey_magic {
            format!("VALKEY{:03}", self.rdb_version)
        } else {
            format!("REDIS{:04}", self.rdb_version)
        }
    }

    /// Listpack-based types (16, 17, 18) rather than ziplists.
    pub fn listpacks(&self) -> bool {
        self.rdb_version >= 10
    }

    /// Small sets of strings as listpacks (type 20).
    pub fn set_listpack(&self) -> bool {
        self.rdb_version >= 11
    }

    pub fn functions(&self) -> bool {
        self.rdb_version >= 10
    }

    /// The stream type (15, 19 or 21) for streams without Redis 8.6+ state.
    pub fn stream_format(&self) -> u8 {
        match self.rdb_version {
            0..=9 => 1,
            10 => 2,
            _ => 3,
        }
    }

    /// Redis 8.6+ stream idempotency state and key metadata.
    pub fn redis_86(&self) -> bool {
        !self.valkey_magic && self.rdb_version >= 13
    }

    /// Redis 8.8+ sparse arrays.
    pub fn arrays(&self) -> bool {
        !self.valkey_magic && self.rdb_version >= 14
    }

    pub fn hash_ttl(&self) -> Option<HashTtlFormat> {
        match self.server.family {
            Family::Redis if self.rdb_version >= 12 => Some(HashTtlFormat::Redis),
            Family::Valkey if self.valkey_magic => Some(HashTtlFormat::Valkey),
            _ => None,
        }
    }
}

/// Defaults of the `*-max-*` settings that decide compact vs plain encodings.
pub mod thresholds {
    pub const HASH_MAX_LISTPACK_ENTRIES: usize = 128;
    pub const HASH_MAX_LISTPACK_VALUE: usize = 64;
    pub const ZSET_MAX_LISTPACK_ENTRIES: usize = 128;
    pub const ZSET_MAX_LISTPACK_VALUE: usize = 64;
    pub const SET_MAX_INTSET_ENTRIES: usize = 512;
    pub const SET_MAX_LISTPACK_ENTRIES: usize = 128;
    pub const SET_MAX_LISTPACK_VALUE: usize = 64;
    /// `list-max-listpack-size -2`: 8 KiB per quicklist node.
    pub const LIST_NODE_BYTES: usize = 8192;
    pub const STREAM_NODE_MAX_BYTES: usize = 4096;
    pub const STREAM_NODE_MAX_ENTRIES: usize = 100;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_and_versions() {
        let t = |s: &str| Target::for_server(s.parse().unwrap()).unwrap().magic();
        assert_eq!(t("redis-6.2"), "REDIS0009");
        assert_eq!(t("redis-7.0"), "REDIS0010");
        assert_eq!(t("redis-7.2"), "REDIS0011");
        assert_eq!(t("redis-8.2"), "REDIS0012");
        assert_eq!(t("redis-8.6"), "REDIS0013");
        assert_eq!(t("redis-8.10"), "REDIS0015");
        assert_eq!(t("valkey-8.1"), "REDIS0011");
        assert_eq!(t("valkey-9.1"), "VALKEY080");
        assert!(Target::for_server("redis-4.0".parse().unwrap()).is_err());
    }
}
