//! `replisnap completions SHELL` and `replisnap man` (issue 13 item 8): generated from the
//! clap definitions, so every verb is in them; the bash script parses (`bash -n`), the man
//! page is roff with a section per verb; an unknown shell is a usage error (exit 2).

use std::io::Write;
use std::process::{Command, Stdio};

const VERBS: &[&str] = &[
    "run",
    "inspect",
    "digest",
    "check-config",
    "convert",
    "snapshot",
    "list",
    "retention",
    "fetch",
    "verify",
    "restore",
];

fn replisnap(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_replisnap"))
        .args(args)
        .output()
        .expect("run replisnap");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn bash_completions_parse_and_name_every_verb() {
    let (code, script, err) = replisnap(&["completions", "bash"]);
    assert_eq!(code, 0, "{err}");
    for v in VERBS {
        assert!(script.contains(v), "{v} missing from the bash completions");
    }
    assert!(script.contains("--config"), "options complete too");
    let mut bash = Command::new("bash")
        .arg("-n")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash");
    bash.stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write");
    let out = bash.wait_with_output().expect("bash -n");
    assert!(
        out.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for shell in ["zsh", "fish"] {
        let (code, script, err) = replisnap(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(script.contains("restore"), "{shell}: {script}");
    }
}

#[test]
fn the_man_page_has_a_section_per_verb() {
    let (code, page, err) = replisnap(&["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(page.contains(".TH replisnap 1"), "{page}");
    for v in VERBS {
        let section = format!(".SH \"{}\"", v.to_uppercase());
        assert!(page.contains(&section), "{section} missing");
    }
    assert!(
        page.contains("REPLISNAP_CONFIG"),
        "the config's env var is documented"
    );
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let (code, _, err) = replisnap(&["completions", "cmd.exe"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cmd.exe"), "{err}");
}
