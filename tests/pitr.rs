//! Point-in-time recovery end to end (issue 15): a real master under the differential
//! workload, `replisnap run` archiving its stream, quiet points recorded along the way
//! (time, `master_repl_offset`, `DEBUG DIGEST`); afterwards `fetch --at` each time and
//! `fetch --offset` each offset must give a file with that digest, and a fresh server of
//! the same version that loads it must answer the same `DEBUG DIGEST`. On redis 7.0 the
//! run also survives a kill -9 and a forced full resync (two histories, the gap between
//! them refused with the nearest restorable points named); valkey 9.1 archives to the
//! S3-protocol server.

mod daemon;
mod support;

#[path = "archive/check.rs"]
mod check;
#[path = "differential/gen.rs"]
#[allow(dead_code)]
mod gen;
#[path = "differential/gen_more.rs"]
#[allow(dead_code)]
mod gen_more;
#[path = "soak/oracle.rs"]
#[allow(dead_code)]
mod oracle;
#[path = "storage_s3/seaweed.rs"]
mod seaweed;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use check::{master_offset, wait_archived};
use daemon::{poll, Daemon, Setup};
use support::{Conn, ServerBin, TestServer};

const NEVER: &str = "0 0 0 1 1 *";

const AWS_ENV: [(&str, &str); 5] = [
    ("AWS_ACCESS_KEY_ID", seaweed::ACCESS_KEY),
    ("AWS_SECRET_ACCESS_KEY", seaweed::SECRET_KEY),
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("AWS_CONFIG_FILE", "/nonexistent"),
    ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
];

/// A quiet point: nothing written, everything applied and archived.
#[derive(Debug, Clone)]
struct Quiet {
    at_ms: i64,
    offset: i64,
    /// The master's live `DEBUG DIGEST`.
    digest: String,
    /// What a fresh server answers after loading the master's own `SAVE` file: what any
    /// RDB of the moment loads as. It differs from the live digest where no file can carry
    /// what a running master holds (a skiplist sorted set shrunk to listpack size with -0
    /// scores: every loader rebuilds it compact, -0 becoming 0; docs/decisions.md).
    loaded: String,
}

fn digest_as_held(bin: &ServerBin, rdb: &std::path::Path) -> String {
    oracle::digest_as_held(bin, rdb).unwrap_or_else(|e| panic!("{e}"))
}

fn master_round_trip(m: &TestServer) -> String {
    oracle::master_round_trip(m).unwrap_or_else(|e| panic!("{e}"))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `n` commands of the differential workload (transactions included).
fn workload(m: &TestServer, rng: &mut gen::Rng, n: usize) {
    let bin = m.bin();
    let (major, minor) = bin.major_minor();
    let caps = gen_more::Caps {
        major,
        minor,
        valkey: bin.is_valkey(),
    };
    let field_ttl = if bin.is_valkey() {
        major >= 9
    } else {
        major >= 8
    };
    let mut c = Conn::connect(m.port(), Duration::from_secs(5)).expect("connect");
    let mut sent = 0;
    while sent < n {
        let mut cmds = Vec::new();
        if rng.below(30) == 0 {
            cmds.push(vec![b"MULTI".to_vec()]);
            for _ in 0..2 + rng.below(4) {
                cmds.push(gen::command(rng, caps, field_ttl));
            }
            cmds.push(vec![b"EXEC".to_vec()]);
        } else {
            cmds.push(gen::command(rng, caps, field_ttl));
        }
        for cmd in &cmds {
            let args: Vec<&[u8]> = cmd.iter().map(Vec::as_slice).collect();
            // Refusals (WRONGTYPE, …) are part of the workload: the master propagates nothing.
            c.cmd(&args).expect("reply");
        }
        sent += cmds.len();
    }
}

/// Wait until the archive holds the master's offset, then record the point.
fn quiet_point(m: &TestServer, st: &dyn replisnap::storage::Storage) -> Quiet {
    let _ = wait_archived(st, m, Duration::from_secs(60));
    // Past the archive's sampling interval after the last command.
    std::thread::sleep(Duration::from_millis(250));
    let offset = master_offset(m);
    let digest = m.digest();
    let at_ms = now_ms();
    let loaded = master_round_trip(m);
    assert_eq!(master_offset(m), offset, "SAVE moved the offset");
    std::thread::sleep(Duration::from_millis(250));
    Quiet {
        at_ms,
        offset,
        digest,
        loaded,
    }
}

/// One more write archived after the last point: the archive then holds the time after
/// it too (an idle master's PINGs do the same within `repl-ping-replica-period`). A time
/// past the newest archived byte is refused: nothing says what happened after it.
fn seal(m: &TestServer, st: &dyn replisnap::storage::Storage) {
    m.must(&["SET", "pitr:sealed", "1"]);
    let _ = wait_archived(st, m, Duration::from_secs(60));
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("time")
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// `fetch --json` of a point; the JSON document.
fn fetch(setup: &Setup, env: &[(&str, &str)], point: &[&str], out: &str) -> serde_json::Value {
    let mut args = vec!["fetch", "--json", "--verify"];
    args.extend_from_slice(point);
    args.push(out);
    let (code, stdout, stderr) = setup.verb_with_env(&args, env);
    assert_eq!(code, 0, "fetch {point:?}: {stdout}{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Every recorded point, by time and by offset, gives its digest; a fresh server loading
/// the file of the last one answers it too.
fn check_points(setup: &Setup, env: &[(&str, &str)], bin: &ServerBin, points: &[Quiet]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut replayed = 0;
    for (i, q) in points.iter().enumerate() {
        let by_time = dir.path().join(format!("t{i}.rdb"));
        let v = fetch(
            setup,
            env,
            &["--at", &rfc3339(q.at_ms)],
            by_time.to_str().unwrap(),
        );
        // As loaded (the digest we report, a fresh server's) the file is what the master's
        // own file loads as; read back as held it is the master's live state (or, where
        // the base snapshot was itself loaded, that same loaded form).
        assert_eq!(v["digest"], q.loaded.as_str(), "--at point {i} {q:?}: {v}");
        let held = digest_as_held(bin, &by_time);
        assert!(
            held == q.digest || held == q.loaded,
            "--at point {i} as held: {held} {q:?}"
        );
        assert_eq!(v["verified"], true);
        let by_offset = dir.path().join(format!("o{i}.rdb"));
        let o = q.offset.to_string();
        let v = fetch(setup, env, &["--offset", &o], by_offset.to_str().unwrap());
        assert_eq!(
            v["digest"],
            q.loaded.as_str(),
            "--offset point {i} {q:?}: {v}"
        );
        let held = digest_as_held(bin, &by_offset);
        assert!(
            held == q.digest || held == q.loaded,
            "--offset point {i} as held: {held} {q:?}"
        );
        assert_eq!(v["offset"], q.offset, "{v}");
        assert!(
            v["base_offset"].as_i64() <= Some(q.offset),
            "the base snapshot lies before the point: {v}"
        );
        replayed += v["commands_replayed"].as_u64().expect("commands_replayed");
        if i == 0 || i + 1 == points.len() {
            let fresh = TestServer::start_with_rdb(bin, &by_offset, &[]).expect("load");
            assert_eq!(fresh.digest(), q.loaded, "a fresh server loading point {i}");
        }
    }
    assert!(
        points.len() < 2 || replayed > 0,
        "every point was a snapshot: nothing replayed"
    );
}

fn start(setup: &Setup, log: &str, env: &[(&str, &str)]) -> Daemon {
    let mut d = setup.start_with_env(log, env);
    let synced = poll(Duration::from_secs(30), || {
        d.assert_running();
        setup.state_dir().join("archive-state.json").exists()
    });
    assert!(synced, "no history recorded:\n{}", d.log_text());
    d
}

fn snapshot(setup: &Setup, env: &[(&str, &str)]) {
    let (code, out, err) = setup.verb_with_env(&["snapshot", "--wait"], env);
    assert_eq!(code, 0, "snapshot --wait: {out}{err}");
}

#[test]
fn points_in_time_on_redis_7_0_through_kill9_and_a_full_resync() {
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("master");
    let setup = Setup::new(&m.addr(), NEVER, "");
    setup.append_config("[archive]\nenabled = true\nsegment_seconds = 1\n");
    let st = setup.storage();
    let mut rng = gen::Rng(0x5eed_0015);
    workload(&m, &mut rng, 300);
    let d = start(&setup, "run1.log", &[]);
    m.must(&["SET", "warm", "1"]);
    let _ = wait_archived(&st, &m, Duration::from_secs(30));
    snapshot(&setup, &[]);
    let mut points = vec![quiet_point(&m, &st)];
    for round in 0..4 {
        workload(&m, &mut rng, 400);
        points.push(quiet_point(&m, &st));
        if round == 1 {
            snapshot(&setup, &[]);
        }
    }
    // kill -9, writes while down, restart: the history continues.
    let log = d.kill9();
    assert!(!log.contains("panicked"), "{log}");
    workload(&m, &mut rng, 200);
    let mut d = start(&setup, "run2.log", &[]);
    workload(&m, &mut rng, 200);
    points.push(quiet_point(&m, &st));
    d.assert_running();
    let l = replisnap::archive::list(&st).expect("list");
    assert_eq!(l.histories.len(), 1, "{l:?}\n{}", d.log_text());
    assert!(l.gaps.is_empty(), "{:?}", l.gaps);
    seal(&m, &st);
    check_points(&setup, &[], &bin, &points);

    // A forced full resync: the master replicates another server, then is a master again.
    // The time before it lies after the first history's newest command: not restorable.
    let in_gap = now_ms();
    std::thread::sleep(Duration::from_millis(200));
    let other = TestServer::start(&bin, &[]).expect("second server");
    other.must(&["SET", "other", "1"]);
    m.must(&["REPLICAOF", "127.0.0.1", &other.port().to_string()]);
    let up = poll(Duration::from_secs(30), || {
        m.info_field("replication", "master_link_status").as_deref() == Some("up")
    });
    assert!(up, "the master did not sync from the second server");
    m.must(&["REPLICAOF", "NO", "ONE"]);
    let two = poll(Duration::from_secs(30), || {
        replisnap::archive::list(&st).is_ok_and(|l| l.histories.len() == 2)
    });
    assert!(two, "no second history:\n{}", d.log_text());
    workload(&m, &mut rng, 200);
    let unrestorable = quiet_point(&m, &st);
    // Writes between that point and the new history's first snapshot: no snapshot of the
    // history lies at or before the point (one at its very offset would make it
    // restorable).
    workload(&m, &mut rng, 200);
    let _ = wait_archived(&st, &m, Duration::from_secs(60));
    snapshot(&setup, &[]);
    workload(&m, &mut rng, 300);
    let second = quiet_point(&m, &st);
    seal(&m, &st);
    let l = replisnap::archive::list(&st).expect("list");
    assert_eq!(l.histories.len(), 2, "{l:?}");
    assert_eq!(
        l.gaps.iter().filter(|g| g.next_history.is_some()).count(),
        1,
        "the gap between the histories is listed: {l:?}"
    );
    check_points(&setup, &[], &bin, std::slice::from_ref(&second));
    // The first history's points are still restorable, by time and (with --history) by
    // offset: offsets of the two histories overlap.
    let first = &points[2];
    let out = setup.storage_path().join("h1.rdb");
    let v = fetch(
        &setup,
        &[],
        &[
            "--offset",
            &first.offset.to_string(),
            "--history",
            &l.histories[0].name,
        ],
        out.to_str().unwrap(),
    );
    assert_eq!(v["digest"], first.loaded.as_str(), "{v}");
    for (point, why) in [
        (
            vec!["--at".to_string(), rfc3339(unrestorable.at_ms)],
            "no snapshot of the history before it",
        ),
        (
            vec![
                "--offset".to_string(),
                unrestorable.offset.to_string(),
                "--history".to_string(),
                l.histories[1].name.clone(),
            ],
            "cannot be restored",
        ),
        (
            vec!["--at".to_string(), rfc3339(in_gap)],
            "after the newest archived command",
        ),
    ] {
        let mut args = vec!["fetch"];
        args.extend(point.iter().map(String::as_str));
        let out = setup.storage_path().join("nope.rdb");
        args.push(out.to_str().unwrap());
        let (code, stdout, stderr) = setup.verb(&args);
        assert_eq!(code, 1, "{point:?} must be refused: {stdout}{stderr}");
        assert!(
            stderr.contains(why) && stderr.contains("restorable: history"),
            "{point:?}: {stderr}"
        );
        assert!(!out.exists(), "no file for a refused point");
    }
    let (status, log) = d.terminate(Duration::from_secs(30));
    assert!(status.success(), "{log}");

    // The whole archive reads back good.
    let (code, out, err) = setup.verb(&["verify", "--archive"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.matches(", good").count(), 2, "{out}");
    // Retention keeping only the newest snapshot: the first history serves no point any
    // more and goes; the second keeps what follows its snapshot, which still restores.
    setup.append_config("[retention]\nkeep_last = 1\n");
    let (code, out, err) = setup.verb(&["retention"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("archive segments"), "{out}");
    let l = replisnap::archive::list(&st).expect("list");
    assert_eq!(l.histories.len(), 1, "{l:?}");
    let kept = setup.snapshots();
    assert_eq!(kept.len(), 1);
    assert!(
        l.histories[0].first_offset <= kept[0].source.offset as i64,
        "{l:?}"
    );
    let out = setup.storage_path().join("after-retention.rdb");
    let v = fetch(
        &setup,
        &[],
        &["--offset", &second.offset.to_string()],
        out.to_str().unwrap(),
    );
    assert_eq!(v["digest"], second.loaded.as_str(), "{v}");
    let (code, _, err) = setup.verb(&["verify", "--archive"]);
    assert_eq!(code, 0, "{err}");
}

fn plain_run(name: &str, s3: bool) {
    let Some(bin) = support::require(name) else {
        return;
    };
    let sw = if s3 {
        match seaweed::server() {
            Some(sw) => Some(sw),
            None => return,
        }
    } else {
        None
    };
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("master");
    let setup = Setup::new(&m.addr(), NEVER, "");
    setup.append_config("[archive]\nenabled = true\nsegment_seconds = 1\n");
    let mut env: Vec<(&str, &str)> = Vec::new();
    let st: Box<dyn replisnap::storage::Storage> = match &sw {
        Some(sw) => {
            let bucket = sw.new_bucket("pitr");
            let text = std::fs::read_to_string(setup.config()).expect("config");
            let local = format!(
                "[storage]\nkind = \"local\"\npath = \"{}\"\n",
                setup.storage_path().display()
            );
            assert!(text.contains(&local));
            let s3 = format!(
                "[storage]\nkind = \"s3\"\nbucket = \"{bucket}\"\nprefix = \"pitr/\"\n\
                 region = \"us-east-1\"\nendpoint = \"{}\"\nforce_path_style = true\nlease_seconds = 15\n",
                sw.endpoint
            );
            std::fs::write(setup.config(), text.replace(&local, &s3)).expect("write config");
            env.extend(AWS_ENV);
            Box::new(sw.storage_in(&bucket, "pitr/", |_| {}))
        }
        None => Box::new(setup.storage()),
    };
    let mut rng = gen::Rng(0x5eed_0016 ^ name.len() as u64);
    workload(&m, &mut rng, 300);
    let d = start(&setup, "run.log", &env);
    m.must(&["SET", "warm", "1"]);
    let _ = wait_archived(st.as_ref(), &m, Duration::from_secs(30));
    snapshot(&setup, &env);
    let mut points = vec![quiet_point(&m, st.as_ref())];
    for _ in 0..3 {
        workload(&m, &mut rng, 400);
        points.push(quiet_point(&m, st.as_ref()));
    }
    seal(&m, st.as_ref());
    check_points(&setup, &env, &bin, &points);
    // `restore --at` pushes the point into a live server: its DEBUG DIGEST is the master's
    // at that time.
    let q = &points[1];
    let target = TestServer::start(&bin, &[]).expect("restore target");
    let to = format!("redis://127.0.0.1:{}", target.port());
    let (code, out, err) = setup.verb_with_env(
        &["restore", "--at", &rfc3339(q.at_ms), "--to", &to, "--json"],
        &env,
    );
    assert_eq!(code, 0, "restore --at: {out}{err}");
    // RESTORE builds each key as a loader does: the master's own file's digest.
    assert_eq!(target.digest(), q.loaded, "restored point: {out}{err}");
    let (code, out, err) = setup.verb_with_env(&["verify", "--archive"], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(", good"), "{out}");
    let (status, log) = d.terminate(Duration::from_secs(30));
    assert!(status.success(), "{log}");
}

#[test]
fn points_in_time_on_redis_8_2() {
    plain_run("redis-8.2", false);
}

#[test]
fn points_in_time_on_valkey_9_1_in_s3() {
    plain_run("valkey-9.1", true);
}
