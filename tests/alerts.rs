//! The alert rules and the dashboard in `contrib/`: promtool checks the rules and runs their
//! unit tests (`contrib/prometheus/alerts_test.yml`), and every `replisnap_*` series they
//! use is one the daemon exports, so a renamed metric cannot silently blind an alert.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool").arg("--version").output().is_ok();
    if found {
        return Some("promtool");
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "promtool is not installed (Debian: apt-get install prometheus); .ci/run installs it"
        );
    }
    eprintln!("SKIP: promtool is not installed (Debian: apt-get install prometheus)");
    None
}

#[test]
fn promtool_checks_and_tests_the_rules() {
    let Some(tool) = promtool() else {
        return;
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/prometheus");
    for args in [
        &["check", "rules", "alerts.yml"][..],
        &["test", "rules", "alerts_test.yml"][..],
    ] {
        let out = Command::new(tool)
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `replisnap_*` names in `text`, histogram suffixes folded onto their family.
fn series_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("replisnap_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let mut name = &tail[..end];
        for suffix in ["_bucket", "_count", "_sum"] {
            if let Some(n) = name.strip_suffix(suffix) {
                name = n;
            }
        }
        names.insert(name.to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn every_series_the_alerts_and_dashboard_use_is_exported() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let metrics = replisnap::metrics::Metrics::new().expect("metrics");
    // Per-database gauges exist once a database holds keys.
    metrics.set_dataset_keys([(0u64, 1u64)]);
    let exported = series_names(&metrics.render());
    assert!(
        exported.contains("replisnap_master_link_up"),
        "{exported:?}"
    );
    let dashboard = std::fs::read_to_string(root.join("contrib/grafana/replisnap.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard JSON");
    assert!(parsed["panels"].as_array().is_some_and(|p| p.len() >= 10));
    for file in [
        "contrib/prometheus/alerts.yml",
        "contrib/grafana/replisnap.json",
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let used = series_names(&text);
        assert!(used.len() >= 5, "{file}: {used:?}");
        let missing: Vec<_> = used.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{file} uses series the daemon does not export: {missing:?}"
        );
    }
}
