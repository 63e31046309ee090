use std::time::Duration;

use super::*;

/// Every name SPEC §5 lists, as it must appear in the exposition.
const SPEC_NAMES: &[&str] = &[
    "replisnap_master_link_up",
    "replisnap_replication_offset_bytes",
    "replisnap_master_offset_bytes",
    "replisnap_replication_lag_bytes",
    "replisnap_replication_lag_seconds",
    "replisnap_master_last_io_age_seconds",
    "replisnap_full_resyncs_total",
    "replisnap_partial_resyncs_total",
    "replisnap_link_errors_total",
    "replisnap_resyncs_forced_total",
    "replisnap_commands_applied_total",
    "replisnap_dataset_keys",
    "replisnap_dataset_memory_bytes",
    "replisnap_snapshot_pause_seconds",
    "replisnap_snapshot_duration_seconds",
    "replisnap_snapshots_total",
    "replisnap_snapshot_size_bytes",
    "replisnap_last_snapshot_success_timestamp_seconds",
    "replisnap_uploads_total",
    // SPEC proposal (issue 11): retried storage attempts by operation.
    "replisnap_upload_retries_total",
    "replisnap_upload_bytes_total",
    "replisnap_upload_duration_seconds",
    "replisnap_last_upload_success_timestamp_seconds",
    "replisnap_retention_deleted_total",
    "replisnap_stored_snapshots",
    "replisnap_oldest_snapshot_timestamp_seconds",
    "replisnap_verify_total",
    "replisnap_last_verify_success_timestamp_seconds",
    "replisnap_heartbeats_total",
    "replisnap_hooks_total",
    "replisnap_build_info",
    // SPEC proposal (issue 14): dual-channel full syncs.
    "replisnap_dual_channel_syncs_total",
    "replisnap_dual_channel_refusals_total",
    "replisnap_dual_channel_buffered_bytes_total",
    "replisnap_dual_channel_spilled_bytes_total",
];

/// The value of the one sample line starting with `series` followed by a space.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn every_spec_metric_is_exposed_with_its_type() {
    let m = Metrics::new().unwrap();
    let text = m.render();
    for name in SPEC_NAMES {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing:\n{text}"
        );
    }
    for h in [
        "snapshot_pause_seconds",
        "snapshot_duration_seconds",
        "upload_duration_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE replisnap_{h} histogram")),
            "{h}"
        );
    }
    for c in [
        "full_resyncs_total",
        "link_errors_total",
        "commands_applied_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE replisnap_{c} counter")),
            "{c}"
        );
    }
    assert!(text.contains("# TYPE replisnap_master_link_up gauge"));
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        value(
            &text,
            &format!("replisnap_build_info{{version=\"{version}\"}}")
        ),
        Some(1.0)
    );
    #[cfg(target_os = "linux")]
    assert!(value(&text, "process_resident_memory_bytes").is_some_and(|v| v > 0.0));
}

#[test]
fn labelled_counters_start_at_zero_for_every_known_value() {
    let text = Metrics::new().unwrap().render();
    for r in LinkErrorReason::ALL {
        let s = format!("replisnap_link_errors_total{{reason=\"{}\"}}", r.as_str());
        assert_eq!(value(&text, &s), Some(0.0), "{s}");
    }
    for r in ResyncReason::ALL {
        let s = format!(
            "replisnap_resyncs_forced_total{{reason=\"{}\"}}",
            r.as_str()
        );
        assert_eq!(value(&text, &s), Some(0.0), "{s}");
    }
    for o in ["ok", "error"] {
        for m in ["snapshots_total", "uploads_total"] {
            let s = format!("replisnap_{m}{{result=\"{o}\"}}");
            assert_eq!(value(&text, &s), Some(0.0), "{s}");
        }
    }
    for o in ["ok", "bad", "error"] {
        let s = format!("replisnap_verify_total{{result=\"{o}\"}}");
        assert_eq!(value(&text, &s), Some(0.0), "{s}");
    }
    assert_eq!(
        value(&text, "replisnap_last_verify_success_timestamp_seconds"),
        Some(0.0)
    );
    for c in COMMANDS.iter().chain([&OTHER_COMMAND]) {
        let s = format!("replisnap_commands_applied_total{{command=\"{c}\"}}");
        assert_eq!(value(&text, &s), Some(0.0), "{s}");
    }
    assert_eq!(
        value(&text, "replisnap_dataset_keys{db=\"db0\"}"),
        Some(0.0)
    );
}

#[test]
fn events_show_up_in_their_series() {
    let m = Metrics::new().unwrap();
    m.set_link_up(true);
    m.command_applied(b"SET");
    m.command_applied(b"set");
    m.command_applied(b"EVAL");
    m.command_applied(&[0xc3; 200]);
    m.inc_link_errors(LinkErrorReason::Timeout);
    m.inc_resyncs_forced(ResyncReason::UnknownCommand);
    m.inc_full_resyncs();
    m.observe_snapshot_pause(3e-6);
    m.snapshot_ok(12.0, 4096, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    m.snapshot_failed();
    m.upload_ok(4096, 2.0, UNIX_EPOCH + Duration::from_secs(1_700_000_010));
    m.upload_failed();
    m.inc_retention_deleted(3);
    m.set_stored_snapshots(5, Some(UNIX_EPOCH + Duration::from_secs(1_600_000_000)));
    m.set_dataset_memory_bytes(1 << 20);
    let t = m.render();
    let v = |s: &str| value(&t, s);
    assert_eq!(v("replisnap_master_link_up"), Some(1.0));
    assert_eq!(
        v("replisnap_commands_applied_total{command=\"set\"}"),
        Some(2.0)
    );
    assert_eq!(
        v("replisnap_commands_applied_total{command=\"other\"}"),
        Some(2.0)
    );
    assert!(!t.contains("command=\"eval\""));
    assert_eq!(
        v("replisnap_link_errors_total{reason=\"timeout\"}"),
        Some(1.0)
    );
    assert_eq!(
        v("replisnap_resyncs_forced_total{reason=\"unknown_command\"}"),
        Some(1.0)
    );
    assert_eq!(v("replisnap_full_resyncs_total"), Some(1.0));
    assert_eq!(
        v("replisnap_snapshot_pause_seconds_bucket{le=\"0.0000025\"}"),
        Some(0.0)
    );
    assert_eq!(
        v("replisnap_snapshot_pause_seconds_bucket{le=\"0.000005\"}"),
        Some(1.0)
    );
    assert_eq!(v("replisnap_snapshot_pause_seconds_count"), Some(1.0));
    assert_eq!(v("replisnap_snapshot_duration_seconds_count"), Some(1.0));
    assert_eq!(
        v("replisnap_snapshot_duration_seconds_bucket{le=\"10\"}"),
        Some(0.0)
    );
    assert_eq!(
        v("replisnap_snapshot_duration_seconds_bucket{le=\"30\"}"),
        Some(1.0)
    );
    assert_eq!(v("replisnap_snapshots_total{result=\"ok\"}"), Some(1.0));
    assert_eq!(v("replisnap_snapshots_total{result=\"error\"}"), Some(1.0));
    assert_eq!(v("replisnap_snapshot_size_bytes"), Some(4096.0));
    assert_eq!(
        v("replisnap_last_snapshot_success_timestamp_seconds"),
        Some(1.7e9)
    );
    assert_eq!(v("replisnap_uploads_total{result=\"ok\"}"), Some(1.0));
    assert_eq!(v("replisnap_uploads_total{result=\"error\"}"), Some(1.0));
    assert_eq!(v("replisnap_upload_bytes_total"), Some(4096.0));
    assert_eq!(
        v("replisnap_last_upload_success_timestamp_seconds"),
        Some(1_700_000_010.0)
    );
    assert_eq!(v("replisnap_retention_deleted_total"), Some(3.0));
    assert_eq!(v("replisnap_stored_snapshots"), Some(5.0));
    assert_eq!(
        v("replisnap_oldest_snapshot_timestamp_seconds"),
        Some(1.6e9)
    );
    assert_eq!(v("replisnap_dataset_memory_bytes"), Some(1048576.0));
}

#[test]
fn dataset_keys_follow_the_databases_that_exist() {
    let m = Metrics::new().unwrap();
    m.set_dataset_keys([(0, 10), (3, 7)]);
    let t = m.render();
    assert_eq!(value(&t, "replisnap_dataset_keys{db=\"db0\"}"), Some(10.0));
    assert_eq!(value(&t, "replisnap_dataset_keys{db=\"db3\"}"), Some(7.0));
    m.set_dataset_keys([(5, 1)]);
    let t = m.render();
    assert!(!t.contains("db=\"db3\""), "{t}");
    assert_eq!(value(&t, "replisnap_dataset_keys{db=\"db0\"}"), Some(0.0));
    assert_eq!(value(&t, "replisnap_dataset_keys{db=\"db5\"}"), Some(1.0));
}

#[test]
fn lag_is_computed_at_scrape_time_from_master_samples() {
    let m = Metrics::new().unwrap();
    let now = Instant::now();
    let Some(t0) = now.checked_sub(Duration::from_secs(5)) else {
        return; // a freshly booted clock cannot go back 5 s; nothing to check
    };
    m.observe_master_offset_at(1000, 900, t0);
    m.observe_master_offset_at(1500, 1200, t0 + Duration::from_secs(2));
    let t = m.render();
    assert_eq!(value(&t, "replisnap_replication_lag_bytes"), Some(300.0));
    let secs = value(&t, "replisnap_replication_lag_seconds").unwrap();
    assert!((3.0..4.0).contains(&secs), "{secs}");
    // The lag is the pair's: an applied offset read after the sample (the replica moved on
    // since) does not make the master's last sample look caught up with.
    m.set_replication_offset(1500);
    let t = m.render();
    assert_eq!(
        value(&t, "replisnap_replication_offset_bytes"),
        Some(1500.0)
    );
    assert_eq!(value(&t, "replisnap_replication_lag_bytes"), Some(300.0));
    m.observe_master_offset(1500, 1500);
    let t = m.render();
    assert_eq!(value(&t, "replisnap_replication_lag_bytes"), Some(0.0));
    assert_eq!(value(&t, "replisnap_replication_lag_seconds"), Some(0.0));
}

#[test]
fn a_followed_replica_is_copied_at_each_scrape() {
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
    use std::sync::Arc;
    let m = Metrics::new().unwrap();
    let (up, offset) = (
        Arc::new(AtomicBool::new(true)),
        Arc::new(AtomicI64::new(700)),
    );
    let (u, o) = (up.clone(), offset.clone());
    m.follow(Box::new(move |m: &Metrics| {
        m.set_link_up(u.load(Ordering::Relaxed));
        m.set_replication_offset(o.load(Ordering::Relaxed));
    }));
    m.observe_master_offset(1000, 600);
    let t = m.render();
    assert_eq!(value(&t, "replisnap_master_link_up"), Some(1.0));
    assert_eq!(value(&t, "replisnap_replication_offset_bytes"), Some(700.0));
    assert_eq!(value(&t, "replisnap_replication_lag_bytes"), Some(400.0));
    // No poll in between: the next scrape shows where the replica stands now.
    offset.store(1000, Ordering::Relaxed);
    up.store(false, Ordering::Relaxed);
    let t = m.render();
    assert_eq!(value(&t, "replisnap_master_link_up"), Some(0.0));
    assert_eq!(
        value(&t, "replisnap_replication_offset_bytes"),
        Some(1000.0)
    );
}

#[test]
fn master_io_age_counts_from_the_last_byte() {
    let m = Metrics::new().unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let before = value(&m.render(), "replisnap_master_last_io_age_seconds").unwrap();
    assert!(before >= 0.03, "{before}");
    m.note_master_io();
    let after = value(&m.render(), "replisnap_master_last_io_age_seconds").unwrap();
    assert!(after < before, "{after} {before}");
}

#[test]
fn verifications_count_by_result_and_only_ok_sets_the_time() {
    let m = Metrics::new().unwrap();
    let at = |s| UNIX_EPOCH + Duration::from_secs(s);
    m.verify_finished(VerifyOutcome::Ok, at(1_700_000_000));
    m.verify_finished(VerifyOutcome::Ok, at(1_700_000_100));
    m.verify_finished(VerifyOutcome::Bad, at(1_700_000_200));
    m.verify_finished(VerifyOutcome::Error, at(1_700_000_300));
    m.verify_finished(VerifyOutcome::Error, at(1_700_000_400));
    let t = m.render();
    let v = |s: &str| value(&t, s);
    assert_eq!(v("replisnap_verify_total{result=\"ok\"}"), Some(2.0));
    assert_eq!(v("replisnap_verify_total{result=\"bad\"}"), Some(1.0));
    assert_eq!(v("replisnap_verify_total{result=\"error\"}"), Some(2.0));
    assert_eq!(
        v("replisnap_last_verify_success_timestamp_seconds"),
        Some(1_700_000_100.0)
    );
    assert!(t.contains("# TYPE replisnap_verify_total counter"), "{t}");
}

#[test]
fn dual_channel_counters_add_up() {
    let m = Metrics::new().unwrap();
    let names = [
        "replisnap_dual_channel_syncs_total",
        "replisnap_dual_channel_refusals_total",
        "replisnap_dual_channel_buffered_bytes_total",
        "replisnap_dual_channel_spilled_bytes_total",
    ];
    for n in names {
        assert_eq!(value(&m.render(), n), Some(0.0), "{n} starts at 0");
    }
    m.add_dual_channel(1, 0, 5000, 0);
    m.add_dual_channel(1, 2, 70_000, 4096);
    let text = m.render();
    for (n, want) in names.iter().zip([2.0, 2.0, 75_000.0, 4096.0]) {
        assert_eq!(value(&text, n), Some(want), "{n}");
    }
}

#[test]
fn a_cluster_renders_one_family_per_name_with_a_series_per_shard() {
    let process = Metrics::new().unwrap();
    let a = Metrics::for_shard("0-8191").unwrap();
    let b = Metrics::for_shard("8192-16383").unwrap();
    a.set_link_up(true);
    b.set_link_up(false);
    let text = process.render_all(&[&a, &b]);
    for name in SPEC_NAMES {
        assert_eq!(
            text.matches(&format!("# TYPE {name} ")).count(),
            1,
            "{name} in\n{text}"
        );
    }
    assert_eq!(
        value(&text, "replisnap_master_link_up{shard=\"0-8191\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "replisnap_master_link_up{shard=\"8192-16383\"}"),
        Some(0.0)
    );
    // The process's own series come once, unlabelled; no shard series goes unlabelled.
    assert!(text.contains(&format!(
        "replisnap_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
    assert!(!text.contains("replisnap_build_info{shard"));
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("replisnap_master_link_up ")),
        "{text}"
    );
}
