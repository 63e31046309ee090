//! The unit files in `systemd/` as systemd reads them, offline: `systemd-analyze security
//! --offline=yes` rates both `replisnap.service` and an instance of `replisnap@.service` at
//! an exposure of at most 2.0, `systemd-analyze verify` accepts them without a warning (with
//! `ExecStart` pointing at the binary just built), and the template differs from the single
//! unit only in its instance lines. Needs `systemd-analyze` (Debian package `systemd`,
//! installed by `.ci/run`): skipped without it, a failure under `CI`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const MAX_EXPOSURE: f64 = 2.0;

fn units() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd")
}

/// Whether `systemd-analyze` can be run; under `CI` its absence fails the test.
fn analyzer() -> bool {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0");
        assert!(
            !ci,
            "systemd-analyze not found (Debian package systemd; .ci/run installs it)"
        );
        eprintln!("SKIP: systemd-analyze not found (apt-get install systemd)");
    }
    found
}

/// (exit code, stdout, stderr) of `systemd-analyze ARGS`.
fn analyze(args: &[&str], unit: &Path) -> (i32, String, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .expect("run systemd-analyze");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The template as the instance `replisnap@test.service`, in `dir`.
fn instance(dir: &Path) -> PathBuf {
    let p = dir.join("replisnap@test.service");
    fs::copy(units().join("replisnap@.service"), &p).expect("copy the template");
    p
}

/// "→ Overall exposure level for replisnap.service: 1.1 OK 🙂" → 1.1
fn exposure(stdout: &str) -> Option<f64> {
    let line = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level for "))?;
    let after = line.rsplit_once(": ")?.1;
    after.split_whitespace().next()?.parse().ok()
}

#[test]
fn exposure_is_at_most_2() {
    if !analyzer() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = dir.path().join("replisnap-cluster@3.service");
    fs::copy(units().join("replisnap-cluster@.service"), &cluster).expect("copy");
    for unit in [
        units().join("replisnap.service"),
        instance(dir.path()),
        cluster,
    ] {
        let (code, out, err) = analyze(&["security", "--offline=yes"], &unit);
        let name = unit.display();
        // Any parse warning ("Unknown key … ignoring") means a setting was not applied.
        assert!(
            err.trim().is_empty(),
            "{name}: systemd-analyze warned:\n{err}"
        );
        let e = exposure(&out).unwrap_or_else(|| panic!("{name}: no exposure in:\n{out}"));
        eprintln!("{name}: exposure {e}");
        assert!(
            e <= MAX_EXPOSURE,
            "{name}: exposure {e} > {MAX_EXPOSURE}:\n{out}"
        );
        assert_eq!(code, 0, "{name}: exit {code}:\n{out}{err}");
    }
}

#[test]
fn verify_accepts_both_units() {
    if !analyzer() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let bin = env!("CARGO_BIN_EXE_replisnap");
    for (src, name) in [
        ("replisnap.service", "replisnap.service"),
        ("replisnap@.service", "replisnap@test.service"),
        ("replisnap-cluster@.service", "replisnap-cluster@3.service"),
    ] {
        // verify wants ExecStart's binary to exist: the one just built stands in for
        // /usr/local/bin/replisnap.
        let text = fs::read_to_string(units().join(src)).expect("unit");
        assert!(text.contains("ExecStart=/usr/local/bin/replisnap run --config /etc/replisnap/"));
        let p = dir.path().join(name);
        fs::write(&p, text.replace("/usr/local/bin/replisnap", bin)).expect("write unit");
        let (code, out, err) = analyze(&["verify", "--man=no"], &p);
        assert_eq!(code, 0, "{name}: exit {code}:\n{out}{err}");
        assert!(
            err.trim().is_empty() && out.trim().is_empty(),
            "{name}: systemd-analyze verify warned:\n{out}{err}"
        );
    }
}

/// Setting lines (no comments, no blanks), with the template's instance forms mapped to
/// the single unit's and the description left out.
fn settings(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("Description="))
        .map(|l| {
            l.replace("/etc/replisnap/%i.toml", "/etc/replisnap/replisnap.toml")
                .replace("replisnap/%i", "replisnap")
        })
        .collect()
}

#[test]
fn the_template_is_the_single_unit_per_instance() {
    let one = fs::read_to_string(units().join("replisnap.service")).expect("unit");
    let tpl = fs::read_to_string(units().join("replisnap@.service")).expect("template");
    assert_eq!(settings(&one), settings(&tpl));
    for must in [
        "Type=notify",
        "WatchdogSec=",
        "TimeoutStopSec=",
        "StateDirectory=",
    ] {
        assert!(one.lines().any(|l| l.starts_with(must)), "no {must}");
    }
    assert!(tpl.contains("ExecStart=/usr/local/bin/replisnap run --config /etc/replisnap/%i.toml"));
}
