//! Snapshot ids: the UTC second a snapshot was taken, `YYYYMMDDTHHMMSSZ`, plus `-N` when an
//! earlier snapshot already holds that second (`20261125T083000Z-1`, `-2`, …).
//!
//! Owns the one spelling of an id, in both directions. An id becomes a directory name or an
//! object key, and ids arrive from outside (a CLI argument, a directory listing, a manifest),
//! so parsing treats them as hostile: it must never accept anything but the canonical
//! pattern (no separators, no dots, no leading zeros in `N`, a real calendar time), so that
//! `parse(s)?.as_str() == s` always holds and no id can name a path outside its snapshot.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use serde::{Deserialize, Serialize};

/// The highest `-N` suffix. More snapshots than this in one second means something is
/// looping, not a real schedule; refusing bounds the search for a free id.
pub const MAX_SEQ: u32 = 9999;

/// Length of the time part, `YYYYMMDDTHHMMSSZ`.
const TIME_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("snapshot id {0}: expected YYYYMMDDTHHMMSSZ or YYYYMMDDTHHMMSSZ-N (UTC, N from 1 to {MAX_SEQ})")]
    Syntax(String),
    #[error("snapshot id {0}: not a valid date and time")]
    Time(String),
    #[error("no free snapshot id for {0}: it and -1 to -{MAX_SEQ} are all taken")]
    Exhausted(String),
    #[error("time {0} cannot be a snapshot id: the year must have four digits")]
    Year(String),
}

/// A validated snapshot id. Ordered by time, then by `N`: newest-first listings sort on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SnapshotId {
    at: DateTime<Utc>,
    seq: u32,
    text: String,
}

impl SnapshotId {
    /// The first id at `at` (truncated to the second) that `taken` does not claim: the bare
    /// time, then `-1`, `-2`, … up to `-MAX_SEQ`.
    pub fn new_at(at: DateTime<Utc>, taken: impl FnMut(&str) -> bool) -> Result<Self, IdError> {
        let mut taken = taken;
        Self::candidates(at)?
            .find(|c| !taken(c.as_str()))
            .ok_or_else(|| IdError::Exhausted(time_text(&truncate(at))))
    }

    /// The id of a snapshot taken now, at `at`, in a storage whose newest id is `newest`:
    /// ids only grow. Normally that is [`SnapshotId::new_at`]; when the clock is behind the
    /// newest id (it stepped back, or another machine's was ahead) the snapshot is named for
    /// the second after it, and within the newest id's own second only a greater `-N` is
    /// taken. Listings and retention order snapshots by id, so a fresh snapshot is never
    /// ranked older than one taken before it.
    pub fn new_after(
        at: DateTime<Utc>,
        newest: Option<&SnapshotId>,
        taken: impl FnMut(&str) -> bool,
    ) -> Result<Self, IdError> {
        let mut taken = taken;
        let (at, min_seq) = match newest {
            Some(n) if truncate(at) < n.at => (n.at + chrono::Duration::seconds(1), 0),
            Some(n) if truncate(at) == n.at => (n.at, n.seq + 1),
            _ => (at, 0),
        };
        Self::candidates(at)?
            .filter(|c| c.seq >= min_seq)
            .find(|c| !taken(c.as_str()))
            .ok_or_else(|| IdError::Exhausted(time_text(&truncate(at))))
    }

    /// Every id for the second of `at`, in the order they are tried. Backends that reserve
    /// an id atomically (the local one creates its directory) walk this themselves.
    pub fn candidates(at: DateTime<Utc>) -> Result<impl Iterator<Item = SnapshotId>, IdError> {
        let at = truncate(at);
        if !(0..=9999).contains(&at.year()) {
            return Err(IdError::Year(at.to_rfc3339()));
        }
        let base = time_text(&at);
        Ok((0..=MAX_SEQ).map(move |seq| SnapshotId {
            at,
            seq,
            text: if seq == 0 {
                base.clone()
            } else {
                format!("{base}-{seq}")
            },
        }))
    }

    /// Parse an id from outside. Only the canonical spelling is accepted.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let syntax = || IdError::Syntax(quoted(s));
        let b = s.as_bytes();
        // Longest: time, '-', four digits.
        if b.len() < TIME_LEN || b.len() > TIME_LEN + 5 {
            return Err(syntax());
        }
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        if !digits(0..8) || b[8] != b'T' || !digits(9..15) || b[15] != b'Z' {
            return Err(syntax());
        }
        let seq = if b.len() == TIME_LEN {
            0
        } else {
            let n = &b[TIME_LEN + 1..];
            // "-0", "-01": not what new_at writes, so not an id (two spellings of one id
            // would let two directories claim it).
            if b[TIME_LEN] != b'-' || n.is_empty() || n[0] == b'0' || !digits(TIME_LEN + 1..b.len())
            {
                return Err(syntax());
            }
            let n: u32 = s[TIME_LEN + 1..].parse().map_err(|_| syntax())?;
            if n > MAX_SEQ {
                return Err(syntax());
            }
            n
        };
        // Every byte checked above is an ASCII digit, so these parses cannot fail.
        let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().unwrap_or(u32::MAX);
        let time = || IdError::Time(quoted(s));
        let date =
            NaiveDate::from_ymd_opt(num(0..4) as i32, num(4..6), num(6..8)).ok_or_else(time)?;
        let dt = date
            .and_hms_opt(num(9..11), num(11..13), num(13..15))
            .ok_or_else(time)?;
        Ok(SnapshotId {
            at: dt.and_utc(),
            seq,
            text: s.to_string(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The UTC second in the id (what retention buckets by).
    pub fn time(&self) -> DateTime<Utc> {
        self.at
    }

    /// The `-N` suffix, 0 when there is none.
    pub fn seq(&self) -> u32 {
        self.seq
    }
}

fn truncate(at: DateTime<Utc>) -> DateTime<Utc> {
    at.with_nanosecond(0).unwrap_or(at)
}

fn time_text(at: &DateTime<Utc>) -> String {
    at.format("%Y%m%dT%H%M%SZ").to_string()
}

/// An outside string for an error message: escaped, and cut so a hostile megabyte does
/// not become a megabyte of log.
fn quoted(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head:?}… ({} bytes)", s.len())
    }
}

impl Ord for SnapshotId {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

impl PartialOrd for SnapshotId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl AsRef<str> for SnapshotId {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl FromStr for SnapshotId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        SnapshotId::parse(s)
    }
}

impl TryFrom<String> for SnapshotId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        SnapshotId::parse(&s)
    }
}

impl From<SnapshotId> for String {
    fn from(id: SnapshotId) -> String {
        id.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn canonical_ids_round_trip() {
        for s in [
            "20261125T083000Z",
            "20261125T083000Z-1",
            "20240229T235959Z-9999",
        ] {
            let id = SnapshotId::parse(s).unwrap();
            assert_eq!(id.as_str(), s);
            assert_eq!(id.to_string(), s);
        }
        let id = SnapshotId::parse("20261125T083000Z-12").unwrap();
        assert_eq!(id.seq(), 12);
        assert_eq!(
            id.time(),
            Utc.with_ymd_and_hms(2026, 11, 25, 8, 30, 0).unwrap()
        );
    }

    #[test]
    fn everything_else_is_refused() {
        for s in [
            "",
            "latest",
            "../x",
            "a/b",
            "20261125T083000Z/",
            "/20261125T083000Z",
            "20261125T083000Z-0",
            "20261125T083000Z-01",
            "20261125T083000Z-",
            "20261125T083000Z-10000",
            "20261125T083000Z-1-1",
            "20261125t083000Z",
            "20261125T083000z",
            "2026-11-25T08:30:00Z",
            "20261125T083000",
            "+0261125T083000Z",
            "20261125T083000Z\0",
            "２0261125T083000Z",
        ] {
            assert!(
                matches!(SnapshotId::parse(s), Err(IdError::Syntax(_))),
                "{s:?} accepted"
            );
        }
        for s in [
            "20260230T000000Z",
            "20261125T246000Z",
            "20261125T083060Z",
            "20261325T000000Z",
        ] {
            assert!(
                matches!(SnapshotId::parse(s), Err(IdError::Time(_))),
                "{s:?}"
            );
        }
    }

    #[test]
    fn new_at_skips_taken_ids() {
        let t = at("2026-11-25T08:30:00.750Z");
        let id = SnapshotId::new_at(t, |_| false).unwrap();
        assert_eq!(id.as_str(), "20261125T083000Z");
        let taken = ["20261125T083000Z", "20261125T083000Z-1"];
        let id = SnapshotId::new_at(t, |c| taken.contains(&c)).unwrap();
        assert_eq!(id.as_str(), "20261125T083000Z-2");
        assert!(matches!(
            SnapshotId::new_at(t, |_| true),
            Err(IdError::Exhausted(_))
        ));
    }

    #[test]
    fn a_fresh_id_is_greater_than_the_newest_whatever_the_clock_says() {
        let newest = SnapshotId::parse("20261125T083000Z-2").unwrap();
        // The clock stepped back an hour: the second after the newest.
        let id = SnapshotId::new_after(at("2026-11-25T07:30:00Z"), Some(&newest), |_| false);
        assert_eq!(id.unwrap().as_str(), "20261125T083001Z");
        // The same second: a greater -N, never a free lower one.
        let id = SnapshotId::new_after(at("2026-11-25T08:30:00.9Z"), Some(&newest), |_| false);
        assert_eq!(id.unwrap().as_str(), "20261125T083000Z-3");
        // A clock ahead of the newest: its own time, as new_at gives.
        let t = at("2026-11-25T09:00:00Z");
        let id = SnapshotId::new_after(t, Some(&newest), |_| false).unwrap();
        assert_eq!(id.as_str(), "20261125T090000Z");
        assert_eq!(SnapshotId::new_after(t, None, |_| false).unwrap(), id);
        for back in [1i64, 60, 86_400 * 400] {
            let t = newest.at - chrono::Duration::seconds(back);
            let id = SnapshotId::new_after(t, Some(&newest), |_| false).unwrap();
            assert!(id > newest, "{back} s back: {id}");
        }
    }

    #[test]
    fn order_is_time_then_sequence() {
        let mut ids: Vec<SnapshotId> = [
            "20261125T083000Z-10",
            "20261125T083000Z",
            "20261125T083001Z",
            "20261125T083000Z-2",
        ]
        .iter()
        .map(|s| SnapshotId::parse(s).unwrap())
        .collect();
        ids.sort();
        let s: Vec<&str> = ids.iter().map(|i| i.as_str()).collect();
        assert_eq!(
            s,
            [
                "20261125T083000Z",
                "20261125T083000Z-2",
                "20261125T083000Z-10",
                "20261125T083001Z"
            ]
        );
    }

    #[test]
    fn serde_refuses_bad_ids() {
        let id: SnapshotId = serde_json::from_str("\"20261125T083000Z-3\"").unwrap();
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            "\"20261125T083000Z-3\""
        );
        assert!(serde_json::from_str::<SnapshotId>("\"../etc\"").is_err());
    }
}
