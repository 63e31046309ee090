//! The restore side on real servers: a snapshot the daemon stored is fetched (checked on
//! the way, written 0600), verified offline and by loading it into a real server of the
//! source's version (`verify --server`); every kind of damage — one flipped byte, a truncated
//! file, a manifest whose digest differs, a damaged stored copy — is caught with a line
//! naming the snapshot and exit 1, while nothing unchecked is left under OUT; and `restore`
//! puts it into a live server (same version: the master's digest; a newer one: the same
//! keys), refusing a non-empty target unless told.

mod support;

mod daemon;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use daemon::{poll, Setup};
use replisnap::storage::Manifest;
use support::{replisnap, TestServer};

/// A master with strings, collections, a stream and keys with TTLs,
/// backed up once by the daemon; returns the setup, the master and the snapshot.
fn backed_up(name: &str) -> Option<(Setup, TestServer, Manifest)> {
    let bin = support::require(name)?;
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("master");
    for i in 0..500 {
        m.must(&["SET", &format!("k:{i}"), &format!("value-{i}")]);
    }
    for i in 0..300 {
        m.must(&["SADD", "set", &format!("member:{i}")]);
        m.must(&["HSET", "hash", &format!("f{i}"), &i.to_string()]);
        m.must(&["ZADD", "zset", &(i % 17).to_string(), &format!("m{i}")]);
        m.must(&["RPUSH", "list", &format!("e{i}")]);
        m.must(&[
            "XADD",
            "stream",
            &format!("{}-0", i + 1),
            "f",
            &i.to_string(),
        ]);
    }
    m.must(&["EXPIRE", "k:1", "100000"]);
    m.must(&["PEXPIRE", "k:2", "600000"]);
    m.must(&["SELECT", "3"]);
    m.must(&["SET", "in-db-3", "x"]);
    let setup = Setup::new(&m.addr(), "* * * * * *", "keep_last = 3");
    let mut d = setup.start("daemon.log");
    let mut found = None;
    let want = m
        .info_field("replication", "master_repl_offset")
        .and_then(|v| v.parse::<u64>().ok())
        .expect("offset");
    let ok = poll(Duration::from_secs(90), || {
        d.assert_running();
        found = setup
            .snapshots()
            .into_iter()
            .next()
            .filter(|s| s.source.offset >= want);
        found.is_some()
    });
    assert!(ok, "{name}: no snapshot:\n{}", d.log_text());
    let (st, log) = d.terminate(Duration::from_secs(60));
    assert!(st.success(), "{name}: exit {st}:\n{log}");
    let snap = found.expect("found");
    assert_eq!(
        snap.digest,
        m.digest(),
        "{name}: the manifest has the master's digest"
    );
    Some((setup, m, snap))
}

fn fetch_and_verify_on(name: &str) {
    let Some((setup, m, snap)) = backed_up(name) else {
        return;
    };
    let out = setup.dir.path().join("restored.rdb");
    let man = setup.dir.path().join("restored.manifest.json");
    let (code, stdout, stderr) = setup.verb(&[
        "fetch",
        "latest",
        out.to_str().unwrap(),
        "--manifest",
        man.to_str().unwrap(),
        "--verify",
        "--json",
    ]);
    assert_eq!(code, 0, "{name}: fetch: {stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("fetch --json");
    assert_eq!(doc["id"], snap.id.as_str());
    assert_eq!(doc["bytes"], snap.rdb.bytes);
    assert_eq!(doc["verified"], true);
    let meta = std::fs::metadata(&out).expect("OUT written");
    assert_eq!(meta.len(), snap.rdb.bytes);
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "{name}: OUT is owner-only"
    );
    let fresh = TestServer::start_with_rdb(m.bin(), &out, &[]).expect("loads the fetched file");
    assert_eq!(
        fresh.digest(),
        m.digest(),
        "{name}: the fetched file is the master's data"
    );

    // The stored snapshot, offline and in a real server of the source's version.
    let server = m.bin().path.to_str().unwrap().to_string();
    let (code, stdout, stderr) = setup.verb(&["verify", snap.id.as_str(), "--server", &server]);
    assert_eq!(code, 0, "{name}: verify --server: {stderr}");
    assert!(
        stdout.starts_with(&format!("{}: ok", snap.id.as_str())) && stdout.contains("loaded by"),
        "{name}: {stdout}"
    );
    // And the fetched file against its manifest.
    let (code, stdout, stderr) = replisnap(&[
        "verify",
        out.to_str().unwrap(),
        "--manifest",
        man.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{name}: verify FILE: {stderr}");
    let reports: serde_json::Value = serde_json::from_str(&stdout).expect("verify --json");
    assert_eq!(reports[0]["digest"], snap.digest.as_str());
    assert_eq!(reports[0]["keys"], snap.keys_total);
    assert_eq!(reports[0]["problems"].as_array().map(Vec::len), Some(0));
}

#[test]
fn fetch_and_verify_redis_6_2() {
    fetch_and_verify_on("redis-6.2");
}

#[test]
fn fetch_and_verify_redis_7_0() {
    fetch_and_verify_on("redis-7.0");
}

#[test]
fn fetch_and_verify_redis_8_2() {
    fetch_and_verify_on("redis-8.2");
}

#[test]
fn fetch_and_verify_valkey_8_1() {
    fetch_and_verify_on("valkey-8.1");
}

#[test]
fn fetch_and_verify_valkey_9_1() {
    fetch_and_verify_on("valkey-9.1");
}

fn verify_file(file: &Path, manifest: &Path) -> (i32, String) {
    let (code, _, stderr) = replisnap(&[
        "verify",
        file.to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
    ]);
    (code, stderr)
}

#[test]
fn damage_is_caught_and_named() {
    let Some((setup, _m, snap)) = backed_up("redis-7.0") else {
        return;
    };
    let dir = setup.dir.path();
    let good = dir.join("good.rdb");
    let man = dir.join("good.manifest.json");
    let (code, _, stderr) = setup.verb(&[
        "fetch",
        snap.id.as_str(),
        good.to_str().unwrap(),
        "--manifest",
        man.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "fetch: {stderr}");
    let bytes = std::fs::read(&good).unwrap();

    // One flipped byte in the middle of the data.
    let mut flipped = bytes.clone();
    let at = flipped.len() / 2;
    flipped[at] ^= 0x20;
    let f = dir.join("flipped.rdb");
    std::fs::write(&f, &flipped).unwrap();
    let (code, err) = verify_file(&f, &man);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("sha256") && err.contains("manifest says"),
        "{err}"
    );
    assert!(err.lines().all(|l| l.starts_with("error: ")), "{err}");

    // Truncated.
    let t = dir.join("truncated.rdb");
    std::fs::write(&t, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let (code, err) = verify_file(&t, &man);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("does not parse"), "{err}");
    assert!(
        err.contains(&format!("manifest says {}", snap.rdb.bytes)),
        "{err}"
    );

    // A manifest whose digest differs from the file's.
    let mut other: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&man).unwrap()).unwrap();
    other["digest"] = serde_json::Value::String("0".repeat(40));
    let bad_man = dir.join("bad.manifest.json");
    std::fs::write(&bad_man, serde_json::to_vec(&other).unwrap()).unwrap();
    let (code, err) = verify_file(&good, &bad_man);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("digest") && err.contains(&"0".repeat(40)),
        "{err}"
    );

    // A damaged copy in storage: fetch refuses and leaves nothing under OUT; verify --all
    // names the snapshot.
    let stored = setup.storage_path().join(snap.id.as_str()).join("dump.rdb");
    let mut perms = std::fs::metadata(&stored).unwrap().permissions();
    perms.set_mode(0o600);
    std::fs::set_permissions(&stored, perms).unwrap();
    std::fs::write(&stored, &flipped).unwrap();
    let out = dir.join("never.rdb");
    let (code, _, stderr) = setup.verb(&["fetch", snap.id.as_str(), out.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(snap.id.as_str()), "{stderr}");
    assert!(!out.exists(), "nothing unchecked under OUT");
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("never.rdb"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary left: {leftovers:?}");
    let (code, _, stderr) = setup.verb(&["verify", "--all"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with(&format!("error: {}: ", snap.id.as_str()))),
        "{stderr}"
    );
    // Bad usage is 2.
    let (code, _, _) = replisnap(&["verify"]);
    assert_eq!(code, 2);
}

fn restore_on(name: &str) {
    let Some((setup, m, snap)) = backed_up(name) else {
        return;
    };
    let target = TestServer::start(m.bin(), &[]).expect("target server");
    let to = format!("redis://{}", target.addr());
    let (code, stdout, stderr) = setup.verb(&["restore", "latest", "--to", &to, "--json"]);
    assert_eq!(code, 0, "{name}: restore: {stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("restore --json");
    assert_eq!(doc["keys_restored"], snap.keys_total, "{name}: {doc}");
    assert_eq!(
        target.digest(),
        m.digest(),
        "{name}: the target holds the master's data"
    );
    assert_eq!(target.dbsize_all(), m.dbsize_all());
    // Not into a server that holds keys, unless told.
    let (code, _, stderr) = setup.verb(&["restore", "latest", "--to", &to]);
    assert_eq!(code, 1, "{name}: {stderr}");
    assert!(
        stderr.contains("holds") && stderr.contains("--flush"),
        "{stderr}"
    );
    let (code, _, stderr) = setup.verb(&["restore", "latest", "--to", &to, "--if-target-empty"]);
    assert_eq!(code, 0, "{name}: {stderr}");
    assert!(stderr.contains("nothing to do"), "{stderr}");
    target.must(&["SET", "stray", "x"]);
    let (code, _, stderr) = setup.verb(&["restore", "latest", "--to", &to, "--flush"]);
    assert_eq!(code, 0, "{name}: --flush: {stderr}");
    assert_eq!(target.digest(), m.digest(), "{name}: after --flush");
}

#[test]
fn restore_redis_6_2() {
    restore_on("redis-6.2");
}

#[test]
fn restore_redis_7_0() {
    restore_on("redis-7.0");
}

#[test]
fn restore_redis_8_2() {
    restore_on("redis-8.2");
}

#[test]
fn restore_valkey_9_1() {
    restore_on("valkey-9.1");
}

#[test]
fn restore_a_redis_7_0_snapshot_into_valkey_9_1() {
    let Some(valkey) = support::require("valkey-9.1") else {
        return;
    };
    let Some((setup, m, _snap)) = backed_up("redis-7.0") else {
        return;
    };
    let file = setup.dir.path().join("from-redis.rdb");
    let (code, _, stderr) = setup.verb(&["fetch", "latest", file.to_str().unwrap()]);
    assert_eq!(code, 0, "fetch: {stderr}");
    let target = TestServer::start(&valkey, &[]).expect("valkey");
    let to = format!("redis://{}", target.addr());
    let (code, stdout, stderr) =
        replisnap(&["restore", "--from", file.to_str().unwrap(), "--to", &to]);
    assert_eq!(code, 0, "restore: {stderr}");
    assert!(stdout.contains("digest checked"), "{stdout}");
    assert_eq!(target.dbsize_all(), m.dbsize_all());
    m.must(&["SELECT", "0"]); // backed_up left this connection in db 3
    for k in ["k:7", "hash", "zset", "list", "set", "stream"] {
        let t = m.must(&["TYPE", k]);
        assert_eq!(target.must(&["TYPE", k]), t, "{k}");
    }
    assert_eq!(
        target.must(&["HGET", "hash", "f7"]),
        m.must(&["HGET", "hash", "f7"])
    );
    assert_eq!(
        target.must(&["XLEN", "stream"]),
        m.must(&["XLEN", "stream"])
    );
}

#[test]
fn restore_over_tls_as_an_acl_user() {
    let Some((setup, m, _snap)) = backed_up("redis-7.0") else {
        return;
    };
    let pki = tempfile::tempdir().unwrap();
    support::pki::make_pki(pki.path(), "ca");
    let p = |f: &str| pki.path().join(f).to_string_lossy().into_owned();
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let target = TestServer::start(
        m.bin(),
        &[
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            &p("server.crt"),
            "--tls-key-file",
            &p("server.key"),
            "--tls-ca-cert-file",
            &p("ca.crt"),
            "--tls-auth-clients",
            "optional",
        ],
    )
    .expect("TLS target");
    target.must(&[
        "ACL",
        "SETUSER",
        "restorer",
        "on",
        ">s3cret%pw",
        "~*",
        "&*",
        "+@all",
    ]);
    // The password's % is escaped in the URL as %25.
    let to = format!("rediss://restorer:s3cret%25pw@127.0.0.1:{tls_port}");
    let (code, _, stderr) = setup.verb(&["restore", "latest", "--to", &to]);
    assert_eq!(code, 1, "no CA given: the certificate is not trusted");
    assert!(stderr.contains("127.0.0.1"), "{stderr}");
    let wrong = format!("rediss://restorer:wrong@127.0.0.1:{tls_port}");
    let (code, _, stderr) = setup.verb(&[
        "restore",
        "latest",
        "--to",
        &wrong,
        "--tls-ca-file",
        &p("ca.crt"),
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("AUTH"), "{stderr}");
    let (code, stdout, stderr) = setup.verb(&[
        "restore",
        "latest",
        "--to",
        &to,
        "--tls-ca-file",
        &p("ca.crt"),
    ]);
    assert_eq!(code, 0, "restore over TLS: {stderr}");
    assert!(stdout.contains("digest checked"), "{stdout}");
    assert_eq!(target.digest(), m.digest());
}
