//! Retention: which stored snapshots to keep and which to delete (SPEC §1 `retention`, §2
//! `[retention]`), with the semantics of restic's `forget --keep-last/-hourly/-daily/-weekly/
//! -monthly/-yearly`.
//!
//! Owns the decision only: [`apply`] is a pure function of the snapshots' ids and creation
//! times, the [`Policy`] counts and the [`Zone`] in which hours, days, ISO weeks, months and
//! years are counted. It must never do I/O (listing and deleting belong to the storage
//! layer, which acts on the verdicts), never read the clock (the answer depends on the
//! snapshots alone, so a dry run and the real run agree), and never delete:
//! - the newest complete snapshot, whatever the policy says (reason [`Rule::Newest`]);
//! - a snapshot still being written (reason [`Rule::InProgress`]);
//! - anything at all when the policy is empty (no `keep_*` given; reason [`Rule::NoPolicy`]).
//!
//! The rules, as restic applies them (`internal/data/snapshot_policy.go`, `ApplyPolicy`):
//! complete snapshots are walked newest first; each rule maps a snapshot to a bucket (its
//! own position for `last`, its local hour, day, ISO year-week, month or year otherwise) and,
//! while its count is not used up, keeps every snapshot whose bucket differs from the last
//! bucket it kept, using one count per bucket. So a rule keeps the newest snapshot of each of
//! its N newest buckets that hold a snapshot: empty periods are skipped, not counted. A
//! snapshot is kept when any rule keeps it, and every rule that does is listed. When the
//! walk ends with a rule's count not used up (or unlimited), that rule also keeps the oldest
//! snapshot, so a young history is kept whole ("oldest daily snapshot").

use std::cmp::Ordering;
use std::fmt;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDateTime, Offset, Timelike, Utc};

use crate::config;
use crate::storage::SnapshotId;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetentionError {
    /// A name that is not in the IANA time zone database.
    #[error(
        "retention.timezone = {0:?}: not a time zone name the IANA database knows \
         (e.g. \"Europe/Paris\"); or use \"UTC\" or a fixed offset such as \"+02:00\""
    )]
    NamedZone(String),
    #[error(
        "retention.timezone = {0:?}: not a time zone; \
         use \"UTC\" or a fixed offset [+-]HH:MM below 24:00"
    )]
    BadZone(String),
}

/// The zone in which calendar buckets are counted: a fixed offset, or an IANA name whose
/// local time follows daylight saving (a snapshot's bucket is its local wall-clock hour,
/// day, ISO week… in that zone; one zone for every snapshot, unlike restic, which uses each
/// snapshot's own recorded offset: #2233, #3722).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zone(FixedOffset, Option<chrono_tz::Tz>);

impl Zone {
    pub fn utc() -> Zone {
        Zone(Utc.fix(), None)
    }

    pub fn fixed(offset: FixedOffset) -> Zone {
        Zone(offset, None)
    }

    /// The fixed offset (UTC for a named zone: see [`Zone::name`]).
    pub fn offset(&self) -> FixedOffset {
        self.0
    }

    /// The IANA name, for a named zone.
    pub fn name(&self) -> Option<&'static str> {
        self.1.map(|t| t.name())
    }

    /// "UTC" (any case) or `+HH:MM` / `-HH:MM` with HH below 24 and MM below 60.
    pub fn parse(s: &str) -> Result<Zone, RetentionError> {
        if s.eq_ignore_ascii_case("UTC") {
            return Ok(Zone::utc());
        }
        let b = s.as_bytes();
        let sign = match b.first() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            // Letters mean a zone name (IANA, "CET"…), which we cannot compute yet; anything
            // else is a typo. The two deserve different advice.
            _ if s.bytes().any(|c| c.is_ascii_alphabetic()) => {
                return s
                    .parse::<chrono_tz::Tz>()
                    .map(|tz| Zone(Utc.fix(), Some(tz)))
                    .map_err(|_| RetentionError::NamedZone(s.to_string()));
            }
            _ => return Err(RetentionError::BadZone(s.to_string())),
        };
        let bad = || RetentionError::BadZone(s.to_string());
        let digits = |r: &[u8]| -> Option<i32> {
            match r {
                [a @ b'0'..=b'9', c @ b'0'..=b'9'] => {
                    Some(i32::from(a - b'0') * 10 + i32::from(c - b'0'))
                }
                _ => None,
            }
        };
        if b.len() != 6 || b[3] != b':' {
            return Err(bad());
        }
        let hours = digits(&b[1..3]).ok_or_else(bad)?;
        let minutes = digits(&b[4..6]).ok_or_else(bad)?;
        if hours > 23 || minutes > 59 {
            return Err(bad());
        }
        FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
            .map(Zone::fixed)
            .ok_or_else(bad)
    }

    fn local(&self, t: &DateTime<Utc>) -> NaiveDateTime {
        match self.1 {
            Some(tz) => t.with_timezone(&tz).naive_local(),
            None => t.with_timezone(&self.0).naive_local(),
        }
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(tz) = self.1 {
            f.write_str(tz.name())
        } else if self.0.local_minus_utc() == 0 {
            f.write_str("UTC")
        } else {
            // FixedOffset displays as "+02:00", the same form parse() takes.
            write!(f, "{}", self.0)
        }
    }
}

/// How many buckets one rule keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// The newest N buckets; 0 keeps none.
    Limit(u32),
    /// Every bucket (restic's `unlimited`, -1).
    Unlimited,
}

impl Count {
    fn active(self) -> bool {
        self != Count::Limit(0)
    }
}

/// The six counting rules, in the order restic evaluates and reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Last,
        Kind::Hourly,
        Kind::Daily,
        Kind::Weekly,
        Kind::Monthly,
        Kind::Yearly,
    ];

    /// The bucket of a snapshot at `position` (newest first, complete snapshots only) with
    /// local time `t`. Weeks are ISO weeks keyed by their ISO year, so Mon 30 Dec 2024 and
    /// Wed 1 Jan 2025 share week 2025-W01 (keying by calendar year would split it).
    fn bucket(self, position: usize, t: &NaiveDateTime) -> (i64, u32, u32, u32) {
        let year = i64::from(t.year());
        match self {
            // usize fits in i64 on every target we build for; saturate rather than wrap.
            Kind::Last => (i64::try_from(position).unwrap_or(i64::MAX), 0, 0, 0),
            Kind::Hourly => (year, t.month(), t.day(), t.hour()),
            Kind::Daily => (year, t.month(), t.day(), 0),
            Kind::Weekly => {
                let w = t.iso_week();
                (i64::from(w.year()), w.week(), 0, 0)
            }
            Kind::Monthly => (year, t.month(), 0, 0),
            Kind::Yearly => (year, 0, 0, 0),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Last => "last",
            Kind::Hourly => "hourly",
            Kind::Daily => "daily",
            Kind::Weekly => "weekly",
            Kind::Monthly => "monthly",
            Kind::Yearly => "yearly",
        })
    }
}

/// Why a snapshot is kept. Displayed as restic prints its reasons, plus our three guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// "last snapshot", "hourly snapshot", … "yearly snapshot": the newest snapshot of one of
    /// the rule's N newest buckets.
    Bucket(Kind),
    /// "oldest daily snapshot" etc.: the rule had counts left when the history ran out, so it
    /// keeps the oldest snapshot too, although its bucket was already kept.
    Oldest(Kind),
    /// "newest snapshot": no rule kept the newest complete snapshot, which we never delete.
    Newest,
    /// "in progress": still being written; not counted by any rule and never deleted.
    InProgress,
    /// "no policy": the policy gives no rule at all, and an empty policy deletes nothing.
    NoPolicy,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Bucket(k) => write!(f, "{k} snapshot"),
            Rule::Oldest(k) => write!(f, "oldest {k} snapshot"),
            Rule::Newest => f.write_str("newest snapshot"),
            Rule::InProgress => f.write_str("in progress"),
            Rule::NoPolicy => f.write_str("no policy"),
        }
    }
}

/// The counts per rule and the zone they are counted in. `None` means the rule is not given;
/// a policy with no rule given is empty and keeps everything. `Some(Count::Limit(0))` is a
/// rule given as 0: it keeps nothing, so a policy of zeros keeps only the newest snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub last: Option<Count>,
    pub hourly: Option<Count>,
    pub daily: Option<Count>,
    pub weekly: Option<Count>,
    pub monthly: Option<Count>,
    pub yearly: Option<Count>,
    pub zone: Zone,
}

impl Default for Policy {
    /// The empty policy, in UTC.
    fn default() -> Self {
        Policy {
            last: None,
            hourly: None,
            daily: None,
            weekly: None,
            monthly: None,
            yearly: None,
            zone: Zone::utc(),
        }
    }
}

impl Policy {
    /// From the config's `[retention]` section; no `timezone` means UTC (SPEC §2). The config
    /// has no way to say "unlimited" yet, so every count is a `Limit`.
    pub fn from_config(r: &config::Retention) -> Result<Policy, RetentionError> {
        let zone = match &r.timezone {
            Some(s) => Zone::parse(s)?,
            None => Zone::utc(),
        };
        Ok(Policy {
            last: r.keep_last.map(Count::Limit),
            hourly: r.keep_hourly.map(Count::Limit),
            daily: r.keep_daily.map(Count::Limit),
            weekly: r.keep_weekly.map(Count::Limit),
            monthly: r.keep_monthly.map(Count::Limit),
            yearly: r.keep_yearly.map(Count::Limit),
            zone,
        })
    }

    pub fn count(&self, kind: Kind) -> Option<Count> {
        match kind {
            Kind::Last => self.last,
            Kind::Hourly => self.hourly,
            Kind::Daily => self.daily,
            Kind::Weekly => self.weekly,
            Kind::Monthly => self.monthly,
            Kind::Yearly => self.yearly,
        }
    }

    /// No rule given at all.
    pub fn is_empty(&self) -> bool {
        Kind::ALL.iter().all(|k| self.count(*k).is_none())
    }
}

/// One stored snapshot as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub id: String,
    pub created_at: DateTime<Utc>,
    /// Still being written (e.g. an upload under way): always kept, never counted.
    pub in_progress: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Kept, with every rule that keeps it (never empty), in [`Rule`] order.
    Keep {
        reasons: Vec<Rule>,
    },
    Delete,
}

impl Decision {
    pub fn is_keep(&self) -> bool {
        matches!(self, Decision::Keep { .. })
    }
}

/// The decision for one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub in_progress: bool,
    pub decision: Decision,
}

/// Newest first. Our ids (`YYYYMMDDTHHMMSSZ-N`) only grow (`SnapshotId::new_after`), so
/// when both ids are ours their order is the order the snapshots were taken in, whatever
/// the clock did meanwhile: a clock stepped back names a fresh snapshot after the newest,
/// and ordering by time would rank it older and let `keep_last` delete it. Other ids (a
/// pure function's input can be anything) go by time, then id, so a tie is decided the
/// same way on every run; they rank below ours, which keeps the order total.
fn newest_first(a: &Snapshot, b: &Snapshot) -> Ordering {
    match (SnapshotId::parse(&a.id), SnapshotId::parse(&b.id)) {
        (Ok(x), Ok(y)) => y.cmp(&x),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => b
            .created_at
            .cmp(&a.created_at)
            .then_with(|| b.id.cmp(&a.id)),
    }
}

/// Decide every snapshot: one verdict each, newest first (by our id, which only grows;
/// by time for other ids).
pub fn apply(policy: &Policy, snapshots: &[Snapshot]) -> Vec<Verdict> {
    let mut sorted: Vec<&Snapshot> = snapshots.iter().collect();
    sorted.sort_by(|a, b| newest_first(a, b));

    // Reasons per position in `sorted`; in-progress ones are settled first and skipped by
    // the rules, so a half-written snapshot never takes a bucket from a complete one.
    let mut reasons: Vec<Vec<Rule>> = sorted
        .iter()
        .map(|s| {
            if s.in_progress {
                vec![Rule::InProgress]
            } else {
                Vec::new()
            }
        })
        .collect();
    let complete: Vec<usize> = (0..sorted.len())
        .filter(|&i| !sorted[i].in_progress)
        .collect();

    if policy.is_empty() {
        for &i in &complete {
            reasons[i].push(Rule::NoPolicy);
        }
    } else {
        for kind in Kind::ALL {
            let Some(count) = policy.count(kind) else {
                continue;
            };
            // Walk this rule on its own: rules do not interact, so one pass per rule keeps
            // each pass simple; pushing in Kind order gives reasons in restic's order.
            let mut left = count;
            let mut last_kept = None;
            for (position, &i) in complete.iter().enumerate() {
                if !left.active() {
                    break;
                }
                let bucket = kind.bucket(position, &policy.zone.local(&sorted[i].created_at));
                let is_new = last_kept != Some(bucket);
                let is_oldest = position + 1 == complete.len();
                if is_new || is_oldest {
                    reasons[i].push(if is_new {
                        Rule::Bucket(kind)
                    } else {
                        Rule::Oldest(kind)
                    });
                    last_kept = Some(bucket);
                    if let Count::Limit(n) = &mut left {
                        // Cannot underflow: an active Limit is above 0.
                        *n -= 1;
                    }
                }
            }
        }
    }

    // The guard: whatever the policy, the newest complete snapshot stays.
    if let Some(&newest) = complete.first() {
        if reasons[newest].is_empty() {
            reasons[newest].push(Rule::Newest);
        }
    }

    sorted
        .into_iter()
        .zip(reasons)
        .map(|(s, reasons)| Verdict {
            id: s.id.clone(),
            created_at: s.created_at,
            in_progress: s.in_progress,
            decision: if reasons.is_empty() {
                Decision::Delete
            } else {
                Decision::Keep { reasons }
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_parse() {
        assert_eq!(Zone::parse("UTC"), Ok(Zone::utc()));
        assert_eq!(Zone::parse("utc"), Ok(Zone::utc()));
        let z = Zone::parse("+02:00").map(|z| z.offset().local_minus_utc());
        assert_eq!(z, Ok(7200));
        let z = Zone::parse("-05:45").map(|z| z.offset().local_minus_utc());
        assert_eq!(z, Ok(-(5 * 3600 + 45 * 60)));
        assert_eq!(
            Zone::parse("+02:00").map(|z| z.to_string()),
            Ok("+02:00".into())
        );
        assert_eq!(
            Zone::parse("+00:00").map(|z| z.to_string()),
            Ok("UTC".into())
        );
        for bad in [
            "", "+2:00", "+24:00", "+02:60", "02:00", "+0200", "+02:00 ", "+٠٢:00",
        ] {
            assert_eq!(
                Zone::parse(bad),
                Err(RetentionError::BadZone(bad.into())),
                "{bad:?}"
            );
        }
        let paris = Zone::parse("Europe/Paris").expect("an IANA name");
        assert_eq!(paris.name(), Some("Europe/Paris"));
        assert_eq!(paris.to_string(), "Europe/Paris");
        // Summer time: 22:30 UTC on 1 July is 00:30 on 2 July in Paris; in winter 23:30.
        let summer = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 7, 1, 22, 30, 0).unwrap();
        assert_eq!(paris.local(&summer).to_string(), "2026-07-02 00:30:00");
        let winter = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 1, 1, 22, 30, 0).unwrap();
        assert_eq!(paris.local(&winter).to_string(), "2026-01-01 23:30:00");
        let e = Zone::parse("Mars/Olympus");
        assert_eq!(e, Err(RetentionError::NamedZone("Mars/Olympus".into())));
        let msg = e.map(|_| ()).unwrap_err().to_string();
        assert!(
            msg.contains("\"Mars/Olympus\"") && msg.contains("IANA"),
            "{msg}"
        );
    }

    #[test]
    fn from_config() {
        let r = config::Retention {
            timezone: Some("+01:00".into()),
            keep_last: Some(3),
            keep_daily: Some(0),
            ..Default::default()
        };
        let p = Policy::from_config(&r).expect("valid");
        assert_eq!(p.last, Some(Count::Limit(3)));
        assert_eq!(p.daily, Some(Count::Limit(0)));
        assert_eq!(p.hourly, None);
        assert_eq!(p.zone.offset().local_minus_utc(), 3600);
        assert!(Policy::from_config(&config::Retention::default()).is_ok_and(|p| p.is_empty()));
        let r = config::Retention {
            timezone: Some("America/New_York".into()),
            ..Default::default()
        };
        assert!(Policy::from_config(&r).is_ok_and(|p| p.zone.name() == Some("America/New_York")));
        let r = config::Retention {
            timezone: Some("America/Nowhere".into()),
            ..Default::default()
        };
        assert!(matches!(
            Policy::from_config(&r),
            Err(RetentionError::NamedZone(_))
        ));
    }

    #[test]
    fn rule_display() {
        assert_eq!(Rule::Bucket(Kind::Last).to_string(), "last snapshot");
        assert_eq!(Rule::Bucket(Kind::Weekly).to_string(), "weekly snapshot");
        assert_eq!(
            Rule::Oldest(Kind::Yearly).to_string(),
            "oldest yearly snapshot"
        );
        assert_eq!(Rule::Newest.to_string(), "newest snapshot");
        assert_eq!(Rule::InProgress.to_string(), "in progress");
        assert_eq!(Rule::NoPolicy.to_string(), "no policy");
    }
}
