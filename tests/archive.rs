//! The stream archive end to end (issue 15, writer side), with real servers and the real
//! `replisnap run` binary archiving to local storage: segments contiguous from the
//! history's start to the master's `master_repl_offset`, checksums good, bytes that parse
//! as the commands sent (transactions whole); a kill -9 loses no stored segment and the
//! archive continues in the same history after restart; a full resync starts a second
//! history and the gap between them is reported by `list --archive` (text and JSON).

mod daemon;
mod support;

#[path = "archive/check.rs"]
mod check;

#[path = "http/support.rs"]
#[allow(dead_code)]
mod http_support;

use std::collections::BTreeSet;
use std::time::Duration;

use check::{commands, count, transactions_whole, wait_archived};
use daemon::{poll, Setup};
use support::{Conn, TestServer};

const NEVER: &str = "0 0 0 1 1 *";

fn writes(m: &TestServer, tag: &str, sets: usize, txs: usize) {
    let mut c = Conn::connect(m.port(), Duration::from_secs(5)).expect("connect");
    let mut ok = |args: &[&[u8]]| {
        let r = c.cmd(args).expect("reply");
        assert!(
            !r.is_error(),
            "{:?}: {r:?}",
            String::from_utf8_lossy(args[0])
        );
    };
    for i in 0..sets {
        let k = format!("{tag}:{i}");
        ok(&[b"SET", k.as_bytes(), b"v"]);
    }
    for i in 0..txs {
        let k = format!("{tag}:n:{i}");
        ok(&[b"MULTI"]);
        ok(&[b"INCR", k.as_bytes()]);
        ok(&[b"INCR", k.as_bytes()]);
        ok(&[b"EXEC"]);
    }
}

fn setup(m: &TestServer) -> Setup {
    let s = Setup::new(&m.addr(), NEVER, "");
    s.append_config("[archive]\nenabled = true\nsegment_seconds = 1\n");
    s
}

fn keys(l: &replisnap::archive::ArchiveListing) -> BTreeSet<String> {
    l.histories
        .iter()
        .flat_map(|h| h.keys.iter().cloned())
        .collect()
}

#[test]
fn the_stream_is_archived_whole_survives_kill9_and_a_full_resync_starts_a_history() {
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("master");
    m.must(&["SET", "before", "sync"]);
    let setup = setup(&m);
    let st = setup.storage();
    let mut d = setup.start("run1.log");
    let synced = poll(Duration::from_secs(30), || {
        d.assert_running();
        setup.state_dir().join("archive-state.json").exists()
    });
    assert!(synced, "no history recorded:\n{}", d.log_text());
    // A diskless master streams only once it reads an ACK after the payload's end (our
    // first may come too early; the next is a second later): until then writes wait in its
    // buffer. One write archived shows the stream flows.
    m.must(&["SET", "warm", "1"]);
    let _ = wait_archived(&st, &m, Duration::from_secs(30));

    // Two bursts more than a segment apart: at least two segments by time.
    writes(&m, "a", 300, 10);
    std::thread::sleep(Duration::from_millis(1500));
    writes(&m, "b", 300, 10);
    let l = wait_archived(&st, &m, Duration::from_secs(30));
    assert_eq!(l.histories.len(), 1, "{l:?}");
    assert!(l.gaps.is_empty(), "{:?}", l.gaps);
    assert!(l.histories[0].segments >= 2, "{l:?}\n{}", d.log_text());
    let cmds = commands(&st, &l.histories[0]);
    assert_eq!(count(&cmds, "SET"), 601);
    assert_eq!((count(&cmds, "MULTI"), count(&cmds, "EXEC")), (20, 20));
    assert_eq!(count(&cmds, "INCR"), 40);
    transactions_whole(&cmds);
    // Metrics (SPEC §5): segments stored, and the lag back to 0 once all is stored.
    let metrics_ok = poll(Duration::from_secs(5), || {
        let text = http_support::req(setup.http_addr(), "GET", "/metrics").body;
        let get = |s: &str| http_support::sample(&text, s);
        get("replisnap_archive_segments_total{result=\"ok\"}") >= Some(2.0)
            && get("replisnap_archive_segments_total{result=\"error\"}") == Some(0.0)
            && get("replisnap_archive_lag_bytes") == Some(0.0)
            && get("replisnap_archive_lag_seconds") == Some(0.0)
    });
    assert!(
        metrics_ok,
        "{}",
        http_support::req(setup.http_addr(), "GET", "/metrics").body
    );

    // A stored snapshot, so the restart resumes with a partial resync.
    let (code, out, err) = setup.verb(&["snapshot", "--wait"]);
    assert_eq!(code, 0, "{out}{err}");
    writes(&m, "c", 200, 5);
    let before = wait_archived(&st, &m, Duration::from_secs(30));
    let stored_before = keys(&before);
    let history = before.histories[0].name.clone();
    let log = d.kill9();
    assert!(!log.contains("panicked"), "{log}");
    let after_kill = keys(&replisnap::archive::list(&st).expect("list"));
    assert!(
        stored_before.is_subset(&after_kill),
        "a stored segment vanished"
    );

    // As if killed between storing a segment and recording it: the state file behind the
    // storage. The stored listing wins; nothing is stored twice.
    let state = setup.state_dir().join("archive-state.json");
    let mut rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state).expect("state")).expect("state JSON");
    // (It may already be: a segment listed a moment before the kill may not be recorded.)
    assert!(rec["end"].as_i64() <= Some(before.histories[0].end_offset));
    rec["end"] = before.histories[0].first_offset.into();
    std::fs::write(&state, rec.to_string()).expect("rewrite state");
    writes(&m, "d", 100, 0);
    let mut d = setup.start("run2.log");
    writes(&m, "e", 100, 5);
    let l = wait_archived(&st, &m, Duration::from_secs(60));
    d.assert_running();
    assert!(d.log_text().contains("partial resync"), "{}", d.log_text());
    assert_eq!(
        l.histories.len(),
        1,
        "the restart must continue the history: {l:?}"
    );
    assert_eq!(l.histories[0].name, history);
    assert!(l.gaps.is_empty(), "{:?}", l.gaps);
    assert!(stored_before.is_subset(&keys(&l)));
    let cmds = commands(&st, &l.histories[0]);
    // Every write exactly once: the bytes resent after the restart are not stored twice.
    assert_eq!(count(&cmds, "SET"), 1 + 600 + 200 + 100 + 100);
    assert_eq!(count(&cmds, "EXEC"), 30);
    transactions_whole(&cmds);

    // A forced full resync: the master replicates another server (new data, new replid),
    // then becomes a master again.
    let other = TestServer::start(&bin, &[]).expect("second server");
    other.must(&["SET", "other", "1"]);
    m.must(&["REPLICAOF", "127.0.0.1", &other.port().to_string()]);
    let up = poll(Duration::from_secs(30), || {
        m.info_field("replication", "master_link_status").as_deref() == Some("up")
    });
    assert!(up, "the master did not sync from the second server");
    m.must(&["REPLICAOF", "NO", "ONE"]);
    let full_syncs = poll(Duration::from_secs(30), || {
        replisnap::archive::list(&st).is_ok_and(|l| l.histories.len() >= 2)
    });
    assert!(full_syncs, "no second history:\n{}", d.log_text());
    let _ = wait_archived(&st, &m, Duration::from_secs(30));
    writes(&m, "f", 100, 2);
    let l = wait_archived(&st, &m, Duration::from_secs(60));
    let between: Vec<_> = l.gaps.iter().filter(|g| g.next_history.is_some()).collect();
    assert_eq!(between.len(), l.histories.len() - 1, "{l:?}");
    assert_eq!(between.len(), l.gaps.len(), "a gap inside a history: {l:?}");
    let newest = l.histories.last().unwrap();
    let cmds = commands(&st, newest);
    assert_eq!(
        count(&cmds, "SET"),
        100,
        "the newest history holds the writes after it: {l:?} {:?}",
        cmds.iter()
            .map(|c| String::from_utf8_lossy(&c[0]).into_owned())
            .collect::<Vec<_>>()
    );
    for h in &l.histories {
        transactions_whole(&commands(&st, h));
    }

    // SIGTERM stores the open segment: writes just before it are archived.
    writes(&m, "g", 50, 0);
    let want = check::master_offset(&m);
    std::thread::sleep(Duration::from_millis(300));
    let (status, log) = d.terminate(Duration::from_secs(30));
    assert!(status.success(), "{log}");
    let l = replisnap::archive::list(&st).expect("list");
    let end = l.histories.iter().map(|h| h.end_offset).max();
    assert!(
        end >= Some(want),
        "end {end:?} < master {want} after SIGTERM:\n{log}"
    );

    let (code, out, err) = setup.verb(&["list", "--archive"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&history) && out.contains("gap: history"),
        "{out}"
    );
    let (code, out, err) = setup.verb(&["list", "--archive", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(
        v["histories"].as_array().map(Vec::len),
        Some(l.histories.len())
    );
    assert_eq!(v["gaps"].as_array().map(Vec::len), Some(l.gaps.len()));
}

#[path = "storage_s3/seaweed.rs"]
mod seaweed;

const AWS_ENV: [(&str, &str); 5] = [
    ("AWS_ACCESS_KEY_ID", seaweed::ACCESS_KEY),
    ("AWS_SECRET_ACCESS_KEY", seaweed::SECRET_KEY),
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("AWS_CONFIG_FILE", "/nonexistent"),
    ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
];

#[test]
fn the_stream_is_archived_to_s3_write_once() {
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let Some(sw) = seaweed::server() else {
        return;
    };
    let bucket = sw.new_bucket("archive");
    let st = sw.storage_in(&bucket, "pitr/", |_| {});
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("master");
    let setup = setup(&m);
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
    let mut d = setup.start_with_env("s3.log", &AWS_ENV);
    let synced = poll(Duration::from_secs(30), || {
        d.assert_running();
        setup.state_dir().join("archive-state.json").exists()
    });
    assert!(synced, "no history recorded:\n{}", d.log_text());
    m.must(&["SET", "warm", "1"]);
    let _ = wait_archived(&st, &m, Duration::from_secs(30));
    writes(&m, "a", 300, 10);
    std::thread::sleep(Duration::from_millis(1500));
    writes(&m, "b", 300, 10);
    let l = wait_archived(&st, &m, Duration::from_secs(30));
    assert_eq!(l.histories.len(), 1, "{l:?}");
    assert!(l.gaps.is_empty() && l.unknown.is_empty(), "{l:?}");
    assert!(l.histories[0].segments >= 2, "{l:?}");
    let cmds = commands(&st, &l.histories[0]);
    assert_eq!(count(&cmds, "SET"), 601);
    assert_eq!(count(&cmds, "EXEC"), 20);
    transactions_whole(&cmds);
    // Write once: a stored segment is never overwritten (If-None-Match: *).
    let key = &l.histories[0].keys[0];
    let before = st.get_object(key, 1 << 30).unwrap().unwrap();
    use replisnap::storage::Storage;
    assert!(matches!(
        st.put_object(key, b"other"),
        Err(replisnap::storage::StorageError::Exists { .. })
    ));
    assert_eq!(st.get_object(key, 1 << 30).unwrap().unwrap(), before);
    writes(&m, "c", 20, 0);
    let want = check::master_offset(&m);
    let (status, log) = d.terminate(Duration::from_secs(30));
    assert!(status.success(), "{log}");
    let l = replisnap::archive::list(&st).expect("list");
    assert!(l.histories[0].end_offset >= want, "{l:?} < {want}\n{log}");
}

/// A Redis 8 master with its rdb channel (the default there): the full sync's RDB comes on
/// a second connection while the stream is buffered and replayed after the load. The
/// archive's history starts at that sync's offset and holds the writes made while the RDB
/// was still arriving, each exactly once.
#[test]
fn a_dual_channel_full_sync_starts_the_history_and_its_buffered_stream_is_archived() {
    let Some(bin) = support::require("redis-8.6") else {
        return;
    };
    let m = TestServer::start(
        &bin,
        &[
            "--repl-diskless-sync",
            "yes",
            "--repl-diskless-sync-delay",
            "0",
            "--repl-rdb-channel",
            "yes",
        ],
    )
    .expect("master");
    writes(&m, "pre", 5000, 0);
    // 50 µs a key: a quarter of a second of transfer for the writes below to land in.
    m.must(&["CONFIG", "SET", "rdb-key-save-delay", "50"]);
    let setup = setup(&m);
    let st = setup.storage();
    let mut d = setup.start("dual.log");
    let started = poll(Duration::from_secs(30), || {
        d.assert_running();
        m.log().contains("(rdb-channel)")
    });
    assert!(
        started,
        "no rdb-channel sync:\n{}\n{}",
        m.log(),
        d.log_text()
    );
    writes(&m, "during", 300, 10);
    let synced = poll(Duration::from_secs(60), || {
        d.assert_running();
        d.log_text().contains("dual-channel full sync done")
    });
    assert!(synced, "{}", d.log_text());
    m.must(&["CONFIG", "SET", "rdb-key-save-delay", "0"]);
    writes(&m, "after", 100, 0);
    let l = wait_archived(&st, &m, Duration::from_secs(30));
    assert_eq!(l.histories.len(), 1, "{l:?}");
    assert!(l.gaps.is_empty(), "{:?}", l.gaps);
    let cmds = commands(&st, &l.histories[0]);
    let sets = |tag: &str| {
        cmds.iter()
            .filter(|c| c.len() == 3 && c[0] == b"SET" && c[1].starts_with(tag.as_bytes()))
            .count()
    };
    // Writes before the sync are in its RDB, not in the archive; the others once each.
    assert_eq!(sets("pre:"), 0);
    assert_eq!(sets("during:"), 300);
    assert_eq!(sets("after:"), 100);
    assert_eq!(count(&cmds, "INCR"), 20);
    transactions_whole(&cmds);
    let (st_code, log) = d.terminate(Duration::from_secs(60));
    assert!(st_code.success(), "{log}");
}
