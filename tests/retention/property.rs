//! Properties: seeded random histories and policies, checked against `model`, which groups
//! snapshots by a formatted bucket name instead of walking them.

use super::*;

/// xorshift64: small, seeded, the same sequence on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Per rule (last … yearly): not given, or given with `Some(n)` / `None` = unlimited.
type Counts = [Option<Option<u32>>; 6];

struct Case {
    counts: Counts,
    offset: FixedOffset,
    snapshots: Vec<Snapshot>,
}

fn random_case(rng: &mut Rng) -> Case {
    let mut counts: Counts = [None; 6];
    if !rng.chance(3) {
        for c in &mut counts {
            *c = match rng.below(100) {
                0..40 => None,
                40..50 => Some(Some(0)),
                50..90 => Some(Some(1 + rng.below(8) as u32)),
                _ => Some(None),
            };
        }
    }
    // UTC a third of the time, else any whole-minute offset from -12:00 to +14:00.
    let secs = if rng.chance(33) {
        0
    } else {
        (rng.below(26 * 60 + 1) as i32 - 12 * 60) * 60
    };
    let offset = FixedOffset::east_opt(secs).expect("offset under a day");

    let n = match rng.below(10) {
        0 => 0,
        1..7 => 1 + rng.below(12),
        7 | 8 => 1 + rng.below(40),
        _ => 1 + rng.below(150),
    };
    // The steps between snapshots go up to this scale: clustered (seconds to hours) or
    // sparse (days to years); a third of histories start just before a new year, where ISO
    // weeks and calendar years part.
    const SCALES: [i64; 7] = [1, 60, 3600, 86_400, 7 * 86_400, 31 * 86_400, 366 * 86_400];
    let max_scale = 1 + rng.below(SCALES.len() as u64) as usize;
    let year = 1995 + rng.below(70) as i32;
    let mut t = if rng.chance(33) {
        Utc.with_ymd_and_hms(year, 12, 24, 0, 0, 0)
            .single()
            .expect("date")
            + Duration::seconds(rng.below(14 * 86_400) as i64)
    } else {
        Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0)
            .single()
            .expect("date")
            + Duration::seconds(rng.below(366 * 86_400) as i64)
    };
    let with_progress = rng.chance(25);
    let mut snapshots = Vec::new();
    for i in 0..n {
        // 10 % exact duplicates of the previous time; otherwise step back.
        if i == 0 || !rng.chance(10) {
            let scale = SCALES[rng.below(max_scale as u64) as usize];
            t -= Duration::seconds(1 + rng.below(3 * scale as u64) as i64);
            if rng.chance(5) {
                t += Duration::nanoseconds(rng.below(1_000_000_000) as i64);
            }
        }
        snapshots.push(Snapshot {
            // A random prefix so id order is unrelated to time order; the suffix keeps ids
            // unique, as storage does.
            id: format!("{:04x}-{i}", rng.below(0x10000)),
            created_at: t,
            in_progress: with_progress && rng.chance(15),
        });
    }
    for i in (1..snapshots.len()).rev() {
        snapshots.swap(i, rng.below(i as u64 + 1) as usize);
    }
    Case {
        counts,
        offset,
        snapshots,
    }
}

/// The expected reasons per id (`None` = deleted), stated directly: for each rule, name every
/// snapshot's bucket with chrono's formatter, take the newest snapshot of each of the N
/// newest buckets, and the oldest snapshot when fewer than N buckets exist (or N is
/// unlimited) and it is not already one of those.
fn model(case: &Case) -> BTreeMap<String, Option<Vec<String>>> {
    let key = |s: &Snapshot| (s.created_at, s.id.clone());
    let complete: Vec<&Snapshot> = case.snapshots.iter().filter(|s| !s.in_progress).collect();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in &case.snapshots {
        let r = if s.in_progress {
            vec!["in progress".to_string()]
        } else {
            vec![]
        };
        out.insert(s.id.clone(), r);
    }
    if case.counts.iter().all(Option::is_none) {
        for s in &complete {
            out.entry(s.id.clone())
                .or_default()
                .push("no policy".into());
        }
    }
    let rules = [
        ("last", None),
        ("hourly", Some("%Y-%m-%d %H")),
        ("daily", Some("%Y-%m-%d")),
        ("weekly", Some("%G-W%V")),
        ("monthly", Some("%Y-%m")),
        ("yearly", Some("%Y")),
    ];
    for ((name, format), count) in rules.into_iter().zip(case.counts) {
        let Some(count) = count else { continue };
        if count == Some(0) {
            continue;
        }
        let mut buckets: BTreeMap<String, Vec<&Snapshot>> = BTreeMap::new();
        for s in &complete {
            let bucket = match format {
                Some(f) => s
                    .created_at
                    .with_timezone(&case.offset)
                    .format(f)
                    .to_string(),
                None => s.id.clone(),
            };
            buckets.entry(bucket).or_default().push(s);
        }
        let mut newest: Vec<&Snapshot> = buckets
            .values()
            .filter_map(|members| members.iter().copied().max_by_key(|s| key(s)))
            .collect();
        newest.sort_by_key(|s| std::cmp::Reverse(key(s)));
        let n = count.map_or(newest.len(), |n| newest.len().min(n as usize));
        for s in &newest[..n] {
            out.entry(s.id.clone())
                .or_default()
                .push(format!("{name} snapshot"));
        }
        if n < count.map_or(usize::MAX, |c| c as usize) {
            if let Some(oldest) = complete.iter().min_by_key(|s| key(s)) {
                if !newest.iter().any(|s| s.id == oldest.id) {
                    let r = format!("oldest {name} snapshot");
                    out.entry(oldest.id.clone()).or_default().push(r);
                }
            }
        }
    }
    if let Some(newest) = complete.iter().max_by_key(|s| key(s)) {
        let r = out.entry(newest.id.clone()).or_default();
        if r.is_empty() {
            r.push("newest snapshot".into());
        }
    }
    out.into_iter()
        .map(|(id, r)| (id, if r.is_empty() { None } else { Some(r) }))
        .collect()
}

fn library_policy(case: &Case, rng: &mut Rng) -> Policy {
    let count = |c: Option<Option<u32>>| c.map(|c| c.map_or(Count::Unlimited, Count::Limit));
    // Half the time the zone goes through its text form, as it does from the config.
    let zone = if rng.chance(50) {
        let text = if case.offset.local_minus_utc() == 0 && rng.chance(50) {
            "UTC".to_string()
        } else {
            case.offset.to_string()
        };
        Zone::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
    } else {
        Zone::fixed(case.offset)
    };
    let [last, hourly, daily, weekly, monthly, yearly] = case.counts.map(count);
    Policy {
        last,
        hourly,
        daily,
        weekly,
        monthly,
        yearly,
        zone,
    }
}

#[test]
fn matches_the_model() {
    let seed = std::env::var("RETENTION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_2026_0819_u64);
    let cases: usize = std::env::var("RETENTION_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let mut rng = Rng(seed);
    let (mut snapshots, mut tally) = (0, BTreeMap::<String, usize>::new());
    for case_no in 0..cases {
        let case = random_case(&mut rng);
        let policy = library_policy(&case, &mut rng);
        let verdicts = apply(&policy, &case.snapshots);
        let ctx = || {
            format!(
                "seed {seed:#x} case {case_no}: {policy:?}\n{:#?}",
                case.snapshots
            )
        };

        // One verdict per snapshot, newest first by (time, id).
        assert_eq!(verdicts.len(), case.snapshots.len(), "{}", ctx());
        for w in verdicts.windows(2) {
            let older = (w[1].created_at, &w[1].id) < (w[0].created_at, &w[0].id);
            assert!(older, "order {} {}: {}", w[0].id, w[1].id, ctx());
        }
        // The newest complete snapshot and every in-progress one are kept.
        if let Some(v) = verdicts.iter().find(|v| !v.in_progress) {
            assert!(v.decision.is_keep(), "newest {} deleted: {}", v.id, ctx());
        }
        let got: BTreeMap<String, Option<Vec<String>>> = verdicts
            .iter()
            .map(|v| {
                let r = match &v.decision {
                    Decision::Keep { reasons } => {
                        assert!(!reasons.is_empty(), "{}", ctx());
                        Some(reasons.iter().map(Rule::to_string).collect())
                    }
                    Decision::Delete => None,
                };
                (v.id.clone(), r)
            })
            .collect();
        let want = model(&case);
        assert_eq!(got, want, "{}", ctx());

        snapshots += case.snapshots.len();
        for r in got.values() {
            let r = r.as_ref().map_or("delete".to_string(), |r| r.join(", "));
            for part in r.split(", ") {
                let part = part.split(' ').next().unwrap_or_default();
                *tally.entry(part.to_string()).or_default() += 1;
            }
        }
    }
    println!("retention: {cases} cases, {snapshots} snapshots checked against the model");
    println!("verdicts by first word of each reason: {tally:?}");
    // The generator must reach every branch the model has.
    for word in ["delete", "oldest", "newest", "in", "no", "weekly", "yearly"] {
        assert!(
            tally.get(word).copied().unwrap_or(0) > 0,
            "no {word:?} in {tally:?}"
        );
    }
}
