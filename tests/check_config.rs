//! `replisnap check-config` as the real binary: the shipped examples (`config/`) pass; the
//! full example names every key the code accepts and nothing else; and everything `run`
//! refuses before it starts is refused here too, with exit 1, nothing on stdout and one
//! `error:` line naming the config file and the key.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// (exit code, stdout, stderr) of `replisnap check-config --config FILE`.
fn check(file: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_replisnap"))
        .args(["check-config", "--config"])
        .arg(file)
        .env_remove("REPLISNAP_SOURCE_PASSWORD")
        .output()
        .expect("run replisnap");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_examples_pass() {
    for name in ["replisnap.toml", "local.toml"] {
        let (code, out, err) = check(&examples().join(name));
        assert_eq!(code, 0, "config/{name}: {err}");
        assert!(out.contains("[source]\naddress = "), "config/{name}: {out}");
    }
    let local = fs::read_to_string(examples().join("local.toml")).expect("local.toml");
    assert!(local.contains("address = \"127.0.0.1:6379\""));
    assert!(local.contains("kind = \"local\""));
}

/// The full example with every `# key = value` and `# [table]` line uncommented.
fn uncommented() -> String {
    let text = fs::read_to_string(examples().join("replisnap.toml")).expect("replisnap.toml");
    text.lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if is_setting(rest) => rest.to_string(),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `key = value` or `[table]`.
fn is_setting(line: &str) -> bool {
    if line.starts_with('[') {
        return line.ends_with(']') && !line.contains(' ');
    }
    line.split_once(" = ").is_some_and(|(k, _)| {
        !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    })
}

/// The keys serde accepts in `table` (read from the unknown-field error of a config that
/// adds one), so a new key in the code fails this test until the example shows it.
fn accepted_keys(table: &str) -> Vec<String> {
    let mut text = String::from("[source]\naddress = \"127.0.0.1:6379\"\n");
    match table {
        "" => text.insert_str(0, "zz_unknown = 1\n"),
        "source" => text.push_str("zz_unknown = 1\n"),
        t => text.push_str(&format!("[{t}]\nzz_unknown = 1\n")),
    }
    let err = toml::from_str::<replisnap::config::Config>(&text)
        .expect_err("an unknown key")
        .to_string();
    let list = err
        .split_once("expected one of ")
        .or_else(|| err.split_once("expected "))
        .unwrap_or_else(|| panic!("[{table}]: no list of keys in: {err}"))
        .1;
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn the_full_example_shows_every_accepted_key() {
    let all = uncommented();
    // Every shown key is one the code accepts (deny_unknown_fields), with a value of the
    // right type; validation (kind vs path, password vs file) is not the point here.
    let parsed: toml::Table = toml::from_str(&all).expect("the uncommented example is TOML");
    if let Err(e) = toml::from_str::<replisnap::config::Config>(&all) {
        panic!("the uncommented example has a key the code refuses: {e}");
    }
    let tables = [
        "",
        "source",
        "source.tls",
        "replica",
        "snapshot",
        "storage",
        "retention",
        "http",
        "verify",
    ];
    for table in tables {
        let shown = table
            .split('.')
            .filter(|p| !p.is_empty())
            .try_fold(&parsed, |t, p| t.get(p).and_then(|v| v.as_table()))
            .unwrap_or_else(|| panic!("config/replisnap.toml shows no [{table}]"));
        for key in accepted_keys(table) {
            assert!(
                shown.contains_key(&key),
                "config/replisnap.toml does not show {table}{}{key}",
                if table.is_empty() { "" } else { "." }
            );
        }
    }
}

#[test]
fn what_run_refuses_check_config_refuses() {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = "[source]\naddress = \"127.0.0.1:6379\"\n";
    let local = "[storage]\nkind = \"local\"\npath = \"/tmp/replisnap-never-created\"\n";
    let cases: Vec<(&str, String, String)> = vec![
        (
            "bad cron",
            format!("{base}[snapshot]\nschedule = \"61 * * * * *\"\n"),
            "snapshot.schedule = \"61 * * * * *\": not a cron expression with a seconds \
             field (sec min hour day month weekday)"
                .into(),
        ),
        (
            "five fields",
            format!("{base}[snapshot]\nschedule = \"0 * * * *\"\n"),
            "snapshot.schedule: \"0 * * * *\": expected 6 cron fields (sec min hour day \
             month weekday)"
                .into(),
        ),
        (
            "never fires",
            format!("{base}[snapshot]\nschedule = \"0 0 0 30 2 *\"\n"),
            "snapshot.schedule = \"0 0 0 30 2 *\": never fires (no matching time from now on)"
                .into(),
        ),
        (
            "snapshot zone",
            format!("{base}[snapshot]\ntimezone = \"Mars/Olympus\"\n"),
            "snapshot.timezone = \"Mars/Olympus\": not a time zone name (IANA, e.g. \
             \"Europe/Paris\", or \"UTC\")"
                .into(),
        ),
        (
            "verify cron",
            format!("{base}{local}[verify]\nschedule = \"0 0 25 * * *\"\n"),
            "verify.schedule = \"0 0 25 * * *\": not a cron expression with a seconds field \
             (sec min hour day month weekday)"
                .into(),
        ),
        (
            "verify zone",
            format!("{base}{local}[verify]\nschedule = \"0 0 * * * *\"\ntimezone = \"Nope\"\n"),
            "verify.timezone = \"Nope\": not a time zone name (IANA, e.g. \"Europe/Paris\", \
             or \"UTC\")"
                .into(),
        ),
        (
            "retention zone",
            format!("{base}{local}[retention]\nkeep_last = 1\ntimezone = \"Mars/Olympus\"\n"),
            "retention.timezone = \"Mars/Olympus\": not a time zone name the IANA database \
             knows"
                .into(),
        ),
        (
            "s3 without a bucket",
            format!("{base}[storage]\nkind = \"s3\"\n"),
            "storage.bucket: required when kind = \"s3\"".into(),
        ),
        (
            "unreadable password file",
            format!(
                "[source]\naddress = \"127.0.0.1:6379\"\npassword_file = \"{}\"\n",
                dir.path().join("missing-password").display()
            ),
            format!(
                "source.password_file = {:?}: cannot read: No such file or directory",
                dir.path().join("missing-password").display().to_string()
            ),
        ),
        (
            "password file is a directory",
            format!(
                "[source]\naddress = \"127.0.0.1:6379\"\npassword_file = \"{}\"\n",
                dir.path().display()
            ),
            format!(
                "source.password_file = {:?}: cannot read: ",
                dir.path().display().to_string()
            ),
        ),
        (
            "missing CA file",
            format!(
                "{base}[source.tls]\nca_file = \"{}\"\n",
                dir.path().join("ca.pem").display()
            ),
            format!("source.tls: {}: ", dir.path().join("ca.pem").display()),
        ),
        (
            "TLS without a CA",
            format!("{base}[source.tls]\nserver_name = \"x\"\n"),
            "source.tls: TLS: ca_file is required unless insecure_skip_verify = true".into(),
        ),
    ];
    for (i, (what, text, expected)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("case{i}.toml"));
        fs::write(&file, text).expect("write config");
        let (code, out, err) = check(&file);
        assert_eq!(code, 1, "{what}: exit {code}\n{out}{err}");
        assert!(out.is_empty(), "{what}: stdout {out:?}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{what}: one line expected:\n{err}");
        let want = format!("error: {}: {expected}", file.display());
        assert!(
            lines[0].starts_with(&want),
            "{what}:\n  got  {}\n  want {want}…",
            lines[0]
        );
    }
}

#[test]
fn secrets_are_redacted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("c.toml");
    fs::write(
        &file,
        "[source]\naddress = \"127.0.0.1:6379\"\npassword = \"hunter2-secret\"\n",
    )
    .expect("write");
    let (code, out, err) = check(&file);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("hunter2"), "{out}");
    assert!(out.contains("password = \"<redacted>\""), "{out}");
}

#[test]
fn a_config_error_on_a_secret_line_never_prints_the_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("c.toml");
    for (text, key) in [
        ("[source]\naddress = \"127.0.0.1:6379\"\npassword=hunter2-secret\n", "password"),
        ("[source]\naddress = \"127.0.0.1:6379\"\npassword = 424242\n", "password"),
        (
            "[source]\naddress = \"127.0.0.1:6379\"\n[storage]\nkind = \"s3\"\nbucket = \"b\"\nsecret_access_key = \"hunter2-secret\"\n",
            "secret_access_key",
        ),
    ] {
        fs::write(&file, text).expect("write");
        let (code, out, err) = check(&file);
        assert_eq!(code, 1, "{out}{err}");
        assert!(!err.contains("hunter2") && !err.contains("424242"), "{err}");
        assert!(err.contains(&format!("{key} = <redacted>")), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    // A secret file's contents are never shown either: a token file holding a space is
    // refused naming the key, not quoting the file.
    let token = dir.path().join("token");
    fs::write(&token, "hunter2 secret\n").expect("write");
    fs::write(
        &file,
        format!(
            "[source]\naddress = \"127.0.0.1:6379\"\n[http]\ntoken_file = \"{}\"\n",
            token.display()
        ),
    )
    .expect("write");
    let (code, _, err) = check(&file);
    assert_eq!(code, 1, "{err}");
    assert!(
        !err.contains("hunter2") && err.contains("http.token_file"),
        "{err}"
    );
}

/// Without `--config`, the verbs read `$REPLISNAP_CONFIG`, else the unit files' path.
#[test]
fn the_config_comes_from_the_environment_or_etc() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/local.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_replisnap"))
        .arg("check-config")
        .env("REPLISNAP_CONFIG", example)
        .output()
        .expect("run replisnap");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if std::path::Path::new("/etc/replisnap/replisnap.toml").exists() {
        return; // this machine has a real one: nothing to learn from its absence
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_replisnap"))
        .arg("check-config")
        .env_remove("REPLISNAP_CONFIG")
        .output()
        .expect("run replisnap");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("/etc/replisnap/replisnap.toml"), "{err}");
}
