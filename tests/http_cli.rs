//! The `replisnap snapshot` verb as the real binary against the HTTP endpoint: the id
//! printed, `--wait` polling until stored or failed, refusals and unreachable daemons as one
//! `error:` line, and the bearer token on `POST /snapshot` (the server refusing without it,
//! the verb sending it from `token_file` or `REPLISNAP_HTTP_TOKEN`).
//!
//! Owns only the verb's contract seen from outside; the server's own routes and hostile
//! clients are `tests/http.rs`. It must never start a real daemon or master: the daemon's
//! side is the `Control` double of `http/support.rs`.

// Shared with tests/http.rs, which uses the rest of it.
#[allow(dead_code)]
#[path = "http/support.rs"]
mod support;

use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::Arc;

use replisnap::http::{serve, serve_with, Control, Options, SnapshotRequestError, SnapshotStatus};
use replisnap::metrics::Metrics;
use support::{raw, req, start, Fake};

// ---- the `replisnap snapshot` verb, as the real binary ----

fn config_for(dir: &tempfile::TempDir, listen: &str) -> std::path::PathBuf {
    let p = dir.path().join("replisnap.toml");
    std::fs::write(
        &p,
        format!("[source]\naddress = \"127.0.0.1:6379\"\n\n[http]\nlisten = \"{listen}\"\n"),
    )
    .unwrap();
    p
}

fn replisnap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_replisnap"))
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn cli_snapshot_prints_the_id_and_waits_for_storage() {
    let fake = Fake::ready();
    let (server, _) = start(&fake);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_for(&dir, &server.local_addr().to_string());
    let cfg = cfg.to_str().unwrap();

    fake.will_start("20250101T000000Z", &[SnapshotStatus::Running]);
    let out = replisnap(&["snapshot", "--config", cfg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "20250101T000000Z\n");

    fake.will_start(
        "20250101T000100Z",
        &[
            SnapshotStatus::Running,
            SnapshotStatus::Running,
            SnapshotStatus::Running,
            SnapshotStatus::Stored,
        ],
    );
    let out = replisnap(&["snapshot", "--config", cfg, "--wait"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "20250101T000100Z\n");
    let polls = fake
        .status_calls
        .lock()
        .unwrap()
        .iter()
        .filter(|id| *id == "20250101T000100Z")
        .count();
    assert_eq!(polls, 4, "polled until stored");

    fake.will_start(
        "20250101T000200Z",
        &[
            SnapshotStatus::Running,
            SnapshotStatus::Failed("storage: /backups: No space left on device".into()),
        ],
    );
    let out = replisnap(&["snapshot", "--config", cfg, "--wait"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        text(&out.stderr),
        "error: snapshot 20250101T000200Z failed: storage: /backups: No space left on device\n"
    );

    fake.will_start("20250101T000300Z", &[SnapshotStatus::Running]);
    let out = replisnap(&["snapshot", "--config", cfg, "--wait", "--timeout", "500ms"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: snapshot 20250101T000300Z not stored after 500ms (still running in the daemon)\n"
    );
}

#[test]
fn cli_snapshot_refusals_and_unreachable_daemons_exit_1_with_one_line() {
    let fake = Fake::ready();
    let (server, _) = start(&fake);
    let addr = server.local_addr();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_for(&dir, &addr.to_string());
    let cfg = cfg.to_str().unwrap();

    fake.will_refuse(SnapshotRequestError::Busy {
        running: Some("20250101T000000Z".into()),
    });
    let out = replisnap(&["snapshot", "--config", cfg]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!("error: a snapshot is already running (20250101T000000Z) (daemon at {addr})\n")
    );

    fake.will_refuse(SnapshotRequestError::NotReady("no full sync yet".into()));
    let out = replisnap(&["snapshot", "--config", cfg, "--wait"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!("error: the daemon at {addr} cannot snapshot now: not ready: no full sync yet\n")
    );

    // A closed port: connection refused, named.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let cfg2 = dir.path().join("closed.toml");
    std::fs::write(
        &cfg2,
        format!("[source]\naddress = \"127.0.0.1:6379\"\n[http]\nlisten = \"{closed}\"\n"),
    )
    .unwrap();
    let out = replisnap(&["snapshot", "--config", cfg2.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with(&format!("error: cannot reach the daemon at {closed}: "))
            && err.lines().count() == 1,
        "{err}"
    );

    // Usage errors exit 2; a missing config exits 1 naming it (without --config, the
    // default path, when $REPLISNAP_CONFIG is unset).
    assert_eq!(replisnap(&["snapshot", "--bogus"]).status.code(), Some(2));
    if !std::path::Path::new("/etc/replisnap/replisnap.toml").exists() {
        let out = Command::new(env!("CARGO_BIN_EXE_replisnap"))
            .arg("snapshot")
            .env_remove("REPLISNAP_CONFIG")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(text(&out.stderr).contains("/etc/replisnap/replisnap.toml"));
    }
    let out = replisnap(&["snapshot", "--config", cfg, "--timeout", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    let out = replisnap(&["snapshot", "--config", "/nonexistent/replisnap.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("/nonexistent/replisnap.toml"));
}

#[test]
fn cli_snapshot_reaches_a_daemon_listening_on_every_address_through_loopback() {
    let fake = Fake::ready();
    let metrics = Arc::new(Metrics::new().unwrap());
    let control: Arc<dyn Control> = fake.clone();
    let server = serve("0.0.0.0:0".parse().unwrap(), metrics, control).unwrap();
    let port = server.local_addr().port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_for(&dir, &format!("0.0.0.0:{port}"));
    fake.will_start("20250101T000000Z", &[SnapshotStatus::Stored]);
    let out = replisnap(&["snapshot", "--config", cfg.to_str().unwrap(), "--wait"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "20250101T000000Z\n");
}

// ---- the bearer token, server and verb ----

#[test]
fn post_snapshot_requires_the_bearer_token_when_one_is_set() {
    let fake = Fake::ready();
    let metrics = Arc::new(Metrics::new().unwrap());
    let control: Arc<dyn Control> = fake.clone();
    let server = serve_with(
        "127.0.0.1:0".parse().unwrap(),
        metrics,
        control,
        Options {
            token: Some("s3cret-token".into()),
        },
    )
    .unwrap();
    let a = server.local_addr();
    let post = |auth: &str| {
        raw(
            a,
            format!(
                "POST /snapshot HTTP/1.1\r\nHost: t\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
    };
    let r = post("");
    assert_eq!(r.status, 401, "{}", r.head);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(post("Authorization: Bearer wrong\r\n").status, 401);
    assert_eq!(post("Authorization: Bearer s3cret-toke\r\n").status, 401);
    assert_eq!(
        post("Authorization: Basic czNjcmV0LXRva2Vu\r\n").status,
        401
    );
    fake.will_start("20250101T000000Z", &[SnapshotStatus::Stored]);
    let r = post("Authorization: Bearer s3cret-token\r\n");
    assert_eq!(r.status, 202, "{}", r.body);
    // Everything else stays open.
    assert_eq!(req(a, "GET", "/healthz").status, 200);
    assert_eq!(req(a, "GET", "/metrics").status, 200);

    // The verb sends it from the same config: a file, or the environment.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_for(&dir, &a.to_string());
    let out = replisnap(&["snapshot", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("bearer token") && err.lines().count() == 1,
        "{err}"
    );
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let mut c = std::fs::read_to_string(&cfg).unwrap();
    c.push_str(&format!("token_file = \"{}\"\n", token_file.display()));
    std::fs::write(&cfg, c).unwrap();
    fake.will_start("20250101T000001Z", &[SnapshotStatus::Stored]);
    let out = replisnap(&["snapshot", "--config", cfg.to_str().unwrap()]);
    assert_eq!(
        text(&out.stdout),
        "20250101T000001Z\n",
        "{}",
        text(&out.stderr)
    );
    let dir2 = tempfile::tempdir().unwrap();
    let cfg2 = config_for(&dir2, &a.to_string());
    fake.will_start("20250101T000002Z", &[SnapshotStatus::Stored]);
    let out = Command::new(env!("CARGO_BIN_EXE_replisnap"))
        .args(["snapshot", "--config", cfg2.to_str().unwrap()])
        .env("REPLISNAP_HTTP_TOKEN", "s3cret-token")
        .output()
        .unwrap();
    assert_eq!(
        text(&out.stdout),
        "20250101T000002Z\n",
        "{}",
        text(&out.stderr)
    );
    server.shutdown();
}
