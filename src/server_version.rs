//! Which server (family and version) a file came from or is meant for.
//!
//! Owns the parsing of `redis-X.Y[.Z]` / `valkey-X.Y[.Z]` target names (CLI `--target`) and
//! the inference of the writing server from a file's magic and aux fields. It decides
//! nothing about formats itself; the writer and the digest ask it for the family and
//! version and apply their own tables.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Redis,
    Valkey,
}

/// A server family and version, e.g. Redis 7.0.15 or Valkey 9.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServerVersion {
    pub family: Family,
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum VersionError {
    #[error("server version {0:?}: expected redis-X.Y[.Z] or valkey-X.Y[.Z]")]
    Syntax(String),
}

impl ServerVersion {
    pub const fn new(family: Family, major: u32, minor: u32, patch: u32) -> Self {
        ServerVersion {
            family,
            major,
            minor,
            patch,
        }
    }

    /// True when this version is at least `major.minor`.
    /// How this server prints a sorted set's score into a listpack or ziplist (`d2string`).
    pub fn score_text(&self) -> crate::dtoa::ScoreText {
        use crate::dtoa::ScoreText;
        match self.family {
            Family::Redis if !self.at_least(7, 0) => ScoreText::Redis62,
            Family::Redis if !self.at_least(7, 2) => ScoreText::Redis70,
            _ => ScoreText::Fpconv,
        }
    }

    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }

    /// The server that most likely wrote a file: its `valkey-ver` aux field, else its
    /// `redis-ver` (Valkey before 9 writes `redis-ver` 7.2.4 too, indistinguishable and
    /// format-identical), else the newest release of the RDB version's era.
    pub fn infer(
        valkey_magic: bool,
        rdb_version: u32,
        redis_ver: Option<&str>,
        valkey_ver: Option<&str>,
    ) -> Self {
        if let Some(v) = valkey_ver.and_then(parse_numbers) {
            return ServerVersion::new(Family::Valkey, v.0, v.1, v.2);
        }
        if valkey_magic {
            return ServerVersion::new(Family::Valkey, 9, 0, 0);
        }
        if let Some(v) = redis_ver.and_then(parse_numbers) {
            // Development builds say 255.255.255 or 999.999.999: fall back to the era.
            if v.0 < 100 {
                return ServerVersion::new(Family::Redis, v.0, v.1, v.2);
            }
        }
        let (major, minor) = match rdb_version {
            0..=9 => (6, 2),
            10 => (7, 0),
            11 => (7, 2),
            12 => (8, 2),
            13 => (8, 6),
            _ => (8, 10),
        };
        ServerVersion::new(Family::Redis, major, minor, 0)
    }
}

fn parse_numbers(s: &str) -> Option<(u32, u32, u32)> {
    let mut it = s.trim().split('.');
    let major = it.next()?.parse().ok()?;
    let minor = it.next().map_or(Some(0), |m| m.parse().ok())?;
    let patch = it.next().map_or(Some(0), |p| p.parse().ok())?;
    if it.next().is_some() {
        return None;
    }
    Some((major, minor, patch))
}

impl FromStr for ServerVersion {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || VersionError::Syntax(s.to_string());
        let (fam, ver) = s.split_once('-').ok_or_else(err)?;
        let family = match fam.to_ascii_lowercase().as_str() {
            "redis" => Family::Redis,
            "valkey" => Family::Valkey,
            _ => return Err(err()),
        };
        if !ver.contains('.') {
            return Err(err());
        }
        let (major, minor, patch) = parse_numbers(ver).ok_or_else(err)?;
        Ok(ServerVersion::new(family, major, minor, patch))
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fam = match self.family {
            Family::Redis => "redis",
            Family::Valkey => "valkey",
        };
        write!(f, "{fam}-{}.{}", self.major, self.minor)?;
        if self.patch != 0 {
            write!(f, ".{}", self.patch)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_target_names() {
        let v: ServerVersion = "redis-7.0".parse().unwrap();
        assert_eq!(v, ServerVersion::new(Family::Redis, 7, 0, 0));
        let v: ServerVersion = "valkey-8.1.8".parse().unwrap();
        assert_eq!(v, ServerVersion::new(Family::Valkey, 8, 1, 8));
        assert_eq!(v.to_string(), "valkey-8.1.8");
        for bad in [
            "redis",
            "redis-7",
            "keydb-6.2",
            "redis-x.y",
            "redis-7.0.1.2",
            "",
        ] {
            assert!(bad.parse::<ServerVersion>().is_err(), "{bad}");
        }
    }

    #[test]
    fn infers_the_writer() {
        let v = ServerVersion::infer(false, 9, Some("6.2.7"), None);
        assert_eq!(v, ServerVersion::new(Family::Redis, 6, 2, 7));
        let v = ServerVersion::infer(true, 80, Some("7.2.4"), Some("9.0.1"));
        assert_eq!(v, ServerVersion::new(Family::Valkey, 9, 0, 1));
        let v = ServerVersion::infer(false, 10, Some("255.255.255"), None);
        assert_eq!(v, ServerVersion::new(Family::Redis, 7, 0, 0));
        let v = ServerVersion::infer(false, 6, None, None);
        assert!(v.family == Family::Redis && !v.at_least(7, 0));
    }
}
