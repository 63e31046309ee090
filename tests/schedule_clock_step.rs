//! The snapshot schedule across wall-clock steps (issue 17 items 1 and 4), with the real
//! binary, a real redis 7.0 and the daemon's wall clock faked by libfaketime
//! (`tests/support/faketime.rs`; the machine's clock is never touched). Snapshots every
//! 2 s, `keep_last = 1`. The clock stepped back an hour: the daemon sees it (the next
//! snapshot's `created_at` is an hour behind the real time), scheduled snapshots go on
//! within seconds (tokio-cron-scheduler alone waited for the old next tick, an hour away:
//! found by the soak), their ids keep growing and retention never deletes the newest.
//! Stepped forward again: the same, `created_at` back at the real time.

mod daemon;
mod support;

use std::time::Duration;

use chrono::Utc;
use daemon::{poll, Setup};
use replisnap::storage::Manifest;
use support::faketime::FakeClock;
use support::TestServer;

/// The newest snapshot (keep_last = 1: the only one) once a new one past `after` is listed.
fn next_after(s: &Setup, after: &str, within: Duration) -> Option<Manifest> {
    let mut found = None;
    poll(within, || {
        found = s
            .snapshots()
            .into_iter()
            .next()
            .filter(|m| m.id.as_str() > after);
        found.is_some()
    });
    found
}

#[test]
fn scheduled_snapshots_go_on_across_clock_steps() {
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let m = TestServer::start(&bin, &[]).expect("master");
    m.must(&["DEBUG", "POPULATE", "1000", "k", "10"]);
    let s = Setup::new(&m.addr(), "*/2 * * * * *", "keep_last = 1");
    let Some(clock) = FakeClock::new(s.dir.path()) else {
        return;
    };
    let env = clock.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut d = s.start_with_env("d.log", &env);
    let first = next_after(&s, "", Duration::from_secs(60));
    d.assert_running();
    let first = first.unwrap_or_else(|| panic!("no first snapshot:\n{}", d.log_text()));
    let real_skew = (Utc::now() - first.created_at).num_seconds();
    assert!(real_skew.abs() < 30, "clock not faked yet: {real_skew} s");

    // Back an hour.
    clock.set_offset(-3600);
    let mut last = first.id.to_string();
    for n in 0..3 {
        let next = next_after(&s, &last, Duration::from_secs(15));
        d.assert_running();
        let next = next.unwrap_or_else(|| {
            panic!(
                "no scheduled snapshot {n} within 15 s of the step back:\n{}",
                d.log_text()
            )
        });
        let behind = (Utc::now() - next.created_at).num_seconds();
        if n > 0 {
            // The first may have been captured just before the step.
            assert!(
                (3590..3630).contains(&behind),
                "the daemon does not see the step back: created_at {} is {behind} s behind",
                next.created_at
            );
        }
        assert_eq!(s.snapshots().len(), 1, "keep_last = 1 keeps exactly one");
        last = next.id.to_string();
    }
    assert!(
        d.log_text().contains("the wall clock stepped back"),
        "{}",
        d.log_text()
    );

    // Forward again.
    clock.set_offset(0);
    for n in 0..2 {
        let next = next_after(&s, &last, Duration::from_secs(15));
        d.assert_running();
        let next = next.unwrap_or_else(|| {
            panic!(
                "no scheduled snapshot {n} within 15 s of the step forward:\n{}",
                d.log_text()
            )
        });
        let behind = (Utc::now() - next.created_at).num_seconds();
        if n > 0 {
            assert!(behind.abs() < 30, "created_at {behind} s behind after +0");
        }
        last = next.id.to_string();
    }
    // A fresh snapshot has the master's data.
    assert_eq!(s.snapshots()[0].digest, m.digest());
    let (st, log) = d.terminate(Duration::from_secs(60));
    assert!(st.success(), "{log}");
}
