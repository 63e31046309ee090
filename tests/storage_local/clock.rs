//! A wall clock stepped back: fresh snapshots are still named after the newest id, and
//! retention keeps the one taken last (issue 17 item 4).

use super::*;

#[test]
fn a_clock_stepped_back_names_fresh_snapshots_after_the_newest_and_retention_keeps_them() {
    use replisnap::retention::{apply, Count, Decision, Policy, Snapshot};
    let dir = tempfile::tempdir().unwrap();
    let s = LocalStorage::new(dir.path());
    store(&s, "2026-11-25T10:00:00Z", &rdb_bytes(50, 1));
    // The clock steps back an hour; two snapshots follow, the second within one second.
    let fresh = store(&s, "2026-11-25T09:00:00.200Z", &rdb_bytes(60, 2));
    let fresher = store(&s, "2026-11-25T09:00:00.700Z", &rdb_bytes(70, 3));
    assert_eq!(fresh.id.as_str(), "20261125T100001Z");
    assert_eq!(fresher.id.as_str(), "20261125T100002Z");
    // The manifest keeps the real capture time (expiries are judged at it).
    assert_eq!(fresher.created_at, t("2026-11-25T09:00:00.700Z"));
    assert_eq!(
        ids(&s),
        ["20261125T100002Z", "20261125T100001Z", "20261125T100000Z"]
    );
    assert_eq!(
        resolve(&s, "latest").unwrap().id,
        fresher.id,
        "latest is the last one taken"
    );
    // keep_last = 1 keeps the last one taken, not the one with the latest clock reading.
    let policy = Policy {
        last: Some(Count::Limit(1)),
        ..Policy::default()
    };
    let listed: Vec<Snapshot> = s
        .list()
        .unwrap()
        .snapshots
        .iter()
        .map(|m| Snapshot {
            id: m.id.to_string(),
            created_at: m.created_at,
            in_progress: false,
        })
        .collect();
    let verdicts = apply(&policy, &listed);
    let kept: Vec<&str> = verdicts
        .iter()
        .filter(|v| matches!(v.decision, Decision::Keep { .. }))
        .map(|v| v.id.as_str())
        .collect();
    assert_eq!(kept, ["20261125T100002Z"]);
}
