//! Retention against restic's own expectations and against an independent model.
//!
//! 1. Cases from restic: the golden files of its policy test (restic/restic
//!    `internal/data/snapshot_policy_test.go`, `TestApplyPolicy`, with
//!    `internal/data/testdata/policy_keep_snapshots_N`) and the examples of its manual
//!    (`doc/060_forget.rst`, "Removing snapshots according to a policy").
//! 2. Properties: seeded random histories and policies, checked against `model` below, which
//!    groups snapshots by a formatted bucket name instead of walking them.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, FixedOffset, NaiveDateTime, TimeZone, Utc};
#[path = "retention/property.rs"]
mod property;
#[path = "retention/restic_data.rs"]
mod restic_data;

use replisnap::retention::{apply, Count, Decision, Kind, Policy, Rule, Snapshot, Verdict, Zone};
use restic_data::{RESTIC_GOLDEN, RESTIC_TIMES};

fn ts(s: &str) -> DateTime<Utc> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .unwrap_or_else(|e| panic!("{s:?}: {e}"))
        .and_utc()
}

fn snap(id: &str, time: &str) -> Snapshot {
    Snapshot {
        id: id.into(),
        created_at: ts(time),
        in_progress: false,
    }
}

/// "d7 w2 m*": rule letters (l h d w m y) with a count, `*` for unlimited; zone UTC.
fn policy(spec: &str) -> Policy {
    let mut p = Policy::default();
    for word in spec.split_whitespace() {
        let (k, n) = word.split_at(1);
        let count = match n {
            "*" => Count::Unlimited,
            n => Count::Limit(n.parse().expect("count")),
        };
        let slot = match k {
            "l" => &mut p.last,
            "h" => &mut p.hourly,
            "d" => &mut p.daily,
            "w" => &mut p.weekly,
            "m" => &mut p.monthly,
            "y" => &mut p.yearly,
            _ => panic!("rule {k:?}"),
        };
        *slot = Some(count);
    }
    p
}

/// The golden files' reasons, abbreviated: "d,w,oy" = daily, weekly, oldest yearly.
fn short(r: &Rule) -> String {
    let letter = |k: &Kind| match k {
        Kind::Last => "l",
        Kind::Hourly => "h",
        Kind::Daily => "d",
        Kind::Weekly => "w",
        Kind::Monthly => "m",
        Kind::Yearly => "y",
    };
    match r {
        Rule::Bucket(k) => letter(k).to_string(),
        Rule::Oldest(k) => format!("o{}", letter(k)),
        other => other.to_string(),
    }
}

fn kept(verdicts: &[Verdict]) -> Vec<(DateTime<Utc>, String)> {
    verdicts
        .iter()
        .filter_map(|v| match &v.decision {
            Decision::Keep { reasons } => Some((
                v.created_at,
                reasons.iter().map(short).collect::<Vec<_>>().join(","),
            )),
            Decision::Delete => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// 1. restic's cases

fn restic_input() -> Vec<Snapshot> {
    (0..RESTIC_TIMES.len())
        .map(|i| snap(&format!("r{i:03}"), RESTIC_TIMES[i]))
        .collect()
}

#[test]
fn restic_golden_files() {
    let input = restic_input();
    for (spec, expected) in RESTIC_GOLDEN {
        let want: Vec<(DateTime<Utc>, String)> = expected
            .split(';')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (time, reasons) = e.rsplit_once(' ').expect("time reasons");
                (ts(time), reasons.to_string())
            })
            .collect();
        let got = kept(&apply(&policy(spec), &input));
        assert_eq!(got, want, "policy {spec}");
    }
}

/// policy_keep_snapshots_36: `--keep-last unlimited` keeps all 103, each as "last snapshot".
#[test]
fn restic_keep_last_unlimited() {
    let input = restic_input();
    let got = kept(&apply(&policy("l*"), &input));
    assert_eq!(got.len(), input.len());
    assert!(got.iter().all(|(_, r)| r == "l"));
}

/// doc/060_forget.rst: backups every weekday for two weeks, a second one on Fridays, the
/// Wednesday of the second week missed. `--keep-daily 5` keeps the newest of each of the
/// five newest days with a backup, so it reaches back to the first Friday. (The manual's
/// keep table labels the 2025-04-25 23:00 snapshot 8a603ddf; its listing calls that one
/// ae33bf10, and the times are what count.)
#[test]
fn restic_doc_missed_wednesday() {
    let input = [
        ("60e5c031", "2025-04-21 11:00:00"),
        ("1dccffe9", "2025-04-22 11:00:00"),
        ("90a5c949", "2025-04-23 11:00:00"),
        ("79580708", "2025-04-24 11:00:00"),
        ("8a603ddf", "2025-04-25 11:00:00"),
        ("ae33bf10", "2025-04-25 23:00:00"),
        ("fb8b1418", "2025-04-28 11:00:00"),
        ("1db188b4", "2025-04-29 11:00:00"),
        ("7baa4f28", "2025-05-01 11:00:00"),
        ("05c48af3", "2025-05-02 11:00:00"),
        ("ad72e262", "2025-05-02 23:00:00"),
    ]
    .map(|(id, t)| snap(id, t));
    let v = apply(&policy("d5"), &input);
    let ids = |keep: bool| -> Vec<&str> {
        v.iter()
            .filter(|v| v.decision.is_keep() == keep)
            .map(|v| v.id.as_str())
            .collect()
    };
    assert_eq!(
        ids(true),
        ["ad72e262", "7baa4f28", "1db188b4", "fb8b1418", "ae33bf10"]
    );
    assert_eq!(
        ids(false),
        ["05c48af3", "8a603ddf", "79580708", "90a5c949", "1dccffe9", "60e5c031"]
    );
    for v in &v {
        if let Decision::Keep { reasons } = &v.decision {
            assert_eq!(reasons, &[Rule::Bucket(Kind::Daily)]);
            assert_eq!(reasons[0].to_string(), "daily snapshot");
        }
    }
}

/// doc/060_forget.rst: one backup a day for 100 years and `--keep-daily 7 --keep-weekly 5
/// --keep-monthly 12 --keep-yearly 75` keeps "the most recent 7 daily snapshots and 4
/// last-day-of-the-week ones (since the 7 dailies already include 1 weekly)", then "12 or
/// 11" month-ends and "75 or 74" year-ends not kept already. Each rule does keep exactly its
/// count; the manual's overlaps are the simple case. Counting each snapshot under its first
/// rule: 4 more weeklies when the newest backup is a Sunday, 3 on other days (the dailies then
/// also hold the previous Sunday); 11 more monthlies (the newest is a daily); 73 more
/// yearlies (this year's is the newest, last year's 31 December is a monthly).
#[test]
fn restic_doc_hundred_years_of_dailies() {
    for (end, weeklies) in [("2026-03-15 03:00:00", 4), ("2026-03-18 03:00:00", 3)] {
        let end = ts(end);
        let input: Vec<Snapshot> = (0..36525)
            .map(|d| Snapshot {
                id: format!("{d:05}"),
                created_at: end - Duration::days(d),
                in_progress: false,
            })
            .collect();
        let v = apply(&policy("d7 w5 m12 y75"), &input);
        let reasons: Vec<&Vec<Rule>> = v
            .iter()
            .filter_map(|v| match &v.decision {
                Decision::Keep { reasons } => Some(reasons),
                Decision::Delete => None,
            })
            .collect();
        let kinds = [Kind::Daily, Kind::Weekly, Kind::Monthly, Kind::Yearly];
        let with = kinds.map(|k| {
            reasons
                .iter()
                .filter(|r| r.contains(&Rule::Bucket(k)))
                .count()
        });
        assert_eq!(with, [7, 5, 12, 75]);
        let first = kinds.map(|k| reasons.iter().filter(|r| r[0] == Rule::Bucket(k)).count());
        assert_eq!(first, [7, weeklies, 11, 73]);
        assert_eq!(reasons.len(), first.iter().sum::<usize>());
    }
}

/// doc/060_forget.rst, "Removing all snapshots": restic acts on no empty policy. Ours keeps
/// everything when no rule is given, and a policy of zeros still keeps the newest.
#[test]
fn empty_and_zero_policies() {
    let input = restic_input();
    let v = apply(&Policy::default(), &input);
    assert!(v.iter().all(|v| v.decision
        == Decision::Keep {
            reasons: vec![Rule::NoPolicy]
        }));
    let v = apply(&policy("l0 d0"), &input);
    assert_eq!(v[0].created_at, ts("2016-01-18 12:02:03"));
    assert_eq!(
        v[0].decision,
        Decision::Keep {
            reasons: vec![Rule::Newest]
        }
    );
    assert!(v[1..].iter().all(|v| v.decision == Decision::Delete));
    assert!(apply(&policy("l3"), &[]).is_empty());
}

#[test]
fn iso_weeks_cross_the_new_year() {
    // Mon 30 Dec 2024 and Wed 1 Jan 2025 are both in ISO week 2025-W01; Sun 29 Dec is in
    // 2024-W52. Calendar year + week number would split the first two.
    let input = [
        snap("a", "2024-12-29 12:00:00"),
        snap("b", "2024-12-30 12:00:00"),
        snap("c", "2025-01-01 12:00:00"),
    ];
    let v = apply(&policy("w2"), &input);
    let ids: Vec<_> = v
        .iter()
        .filter(|v| v.decision.is_keep())
        .map(|v| &v.id[..])
        .collect();
    assert_eq!(ids, ["c", "a"]);
}

#[test]
fn buckets_follow_the_zone() {
    let input = [
        snap("a", "2025-01-01 21:30:00"),
        snap("b", "2025-01-01 22:30:00"),
        snap("c", "2025-01-01 23:30:00"),
    ];
    let keep = |zone: &str| -> Vec<(String, String)> {
        let mut p = policy("d2");
        p.zone = Zone::parse(zone).expect("zone");
        let v = apply(&p, &input);
        let reasons = kept(&v).into_iter().map(|(_, r)| r);
        let ids = v
            .iter()
            .filter(|v| v.decision.is_keep())
            .map(|v| v.id.clone());
        ids.zip(reasons).collect()
    };
    let pairs = |p: &[(&str, &str)]| -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    // One local day (1 Jan): its newest, then the oldest as the rule has a count left.
    assert_eq!(keep("UTC"), pairs(&[("c", "d"), ("a", "od")]));
    assert_eq!(keep("-02:00"), pairs(&[("c", "d"), ("a", "od")]));
    // 23:30 on 1 Jan, then 00:30 and 01:30 on 2 Jan: two days, newest of each.
    assert_eq!(keep("+02:00"), pairs(&[("c", "d"), ("a", "d")]));
    // 22:15 and 23:15 on 1 Jan, 00:15 on 2 Jan.
    assert_eq!(keep("+00:45"), pairs(&[("c", "d"), ("b", "d")]));
}

#[test]
fn in_progress_is_kept_and_not_counted() {
    // The newest snapshot is still uploading: it keeps its place but takes no bucket, so
    // keep_last = 1 still keeps the newest complete one (and nothing older).
    let mut input = vec![
        snap("a", "2025-03-01 10:00:00"),
        snap("b", "2025-03-01 11:00:00"),
        snap("c", "2025-03-01 12:00:00"),
    ];
    input[2].in_progress = true;
    let v = apply(&policy("l1"), &input);
    let got: Vec<_> = v.iter().map(|v| (&v.id[..], &v.decision)).collect();
    let keep = |r| Decision::Keep { reasons: vec![r] };
    assert_eq!(
        got,
        [
            ("c", &keep(Rule::InProgress)),
            ("b", &keep(Rule::Bucket(Kind::Last))),
            ("a", &Decision::Delete),
        ]
    );
    assert_eq!(Rule::InProgress.to_string(), "in progress");
    // Only in-progress snapshots: all kept, nothing else to say.
    input.iter_mut().for_each(|s| s.in_progress = true);
    let v = apply(&policy("l0"), &input);
    assert!(v.iter().all(|v| v.decision == keep(Rule::InProgress)));
}

#[test]
fn ties_are_decided_by_id() {
    // Same second twice: the greater id counts as the newer, whatever the input order.
    let a = snap("20250301T100000Z", "2025-03-01 10:00:00");
    let b = snap("20250301T100000Z-1", "2025-03-01 10:00:00");
    for input in [[a.clone(), b.clone()], [b.clone(), a.clone()]] {
        // Two hourly counts, one hour with snapshots: the second count keeps the oldest.
        let v = apply(&policy("h2"), &input);
        assert_eq!(v[0].id, b.id);
        assert_eq!(
            v[0].decision,
            Decision::Keep {
                reasons: vec![Rule::Bucket(Kind::Hourly)]
            }
        );
        assert_eq!(
            v[1].decision,
            Decision::Keep {
                reasons: vec![Rule::Oldest(Kind::Hourly)]
            }
        );
    }
}

#[test]
fn our_ids_order_snapshots_whatever_their_clock_said() {
    // The clock stepped back an hour before the second snapshot: storage named it after the
    // newest id (SnapshotId::new_after), and its creation time is the clock's.
    let before = snap("20250301T100000Z", "2025-03-01 10:00:00");
    let after = snap("20250301T100001Z", "2025-03-01 09:00:00");
    for input in [
        [before.clone(), after.clone()],
        [after.clone(), before.clone()],
    ] {
        let v = apply(&policy("l1"), &input);
        assert_eq!(v[0].id, after.id, "the one taken last is the newest");
        assert_eq!(
            v[0].decision,
            Decision::Keep {
                reasons: vec![Rule::Bucket(Kind::Last)]
            }
        );
        assert_eq!(v[1].decision, Decision::Delete);
    }
}
