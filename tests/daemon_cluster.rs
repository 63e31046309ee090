//! `replisnap run` with `[source] cluster = true` against a real 3-shard cluster (one
//! replica per shard): every shard followed from one seed, snapshot sets taken under
//! writes, each shard's RDB loaded into a fresh server of the same version giving that
//! shard primary's `DEBUG DIGEST`, a `CLUSTER FAILOVER` followed with the digests still
//! equal, shard-labelled metrics, `list` and `fetch` of sets, and a clean SIGTERM.

mod cluster_daemon;
mod daemon;
mod support;

#[path = "http/support.rs"]
#[allow(dead_code)]
mod http_support;

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cluster_daemon::{caught_up, take_set};
use daemon::{poll, Setup};
use http_support::{assert_exposition_parses, req, sample};
use replisnap::storage::set::SetManifest;
use support::cluster::TestCluster;
use support::TestServer;

/// The set is complete and each shard's RDB, loaded by a fresh server, has the digest of
/// the primary it names (writes stopped and replicas caught up before the set).
fn check_set(c: &TestCluster, setup: &Setup, set: &SetManifest) {
    assert!(set.complete, "{set:?}");
    assert_eq!(set.shards.len(), 3, "{set:?}");
    assert!(set.missing_slots.is_empty());
    let covered: u32 = set
        .shards
        .iter()
        .flat_map(|s| s.slots.iter())
        .map(|(a, b)| u32::from(*b) - u32::from(*a) + 1)
        .sum();
    assert_eq!(covered, 16384);
    for s in &set.shards {
        let sid = s.snapshot.as_ref().expect("stored");
        let primary = c
            .nodes
            .iter()
            .find(|n| n.addr() == s.primary)
            .unwrap_or_else(|| panic!("{} is not a node", s.primary));
        assert!(
            primary.info("replication").contains("role:master"),
            "set names {} as shard {}'s primary",
            s.primary,
            s.shard
        );
        let rdb = setup
            .storage_path()
            .join(format!("shards/{}/{sid}/dump.rdb", s.shard));
        // Loaded by a cluster node, as a shard seeded from this file would be: it takes
        // the slots of the keys it finds (no slot map yet) and answers their digest.
        let loaded = TestServer::start_with_rdb(
            &c.bin,
            &rdb,
            &[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ],
        )
        .expect("load shard RDB");
        let want = primary.digest();
        assert_eq!(loaded.digest(), want, "shard {} ({})", s.shard, c.bin.name);
        assert_eq!(s.digest, want, "manifest digest of shard {}", s.shard);
        assert_eq!(loaded.dbsize_all(), s.keys_total, "shard {}", s.shard);
    }
}

fn backs_up_every_shard(name: &str) {
    let Some(bin) = support::require(name) else {
        return;
    };
    let c = TestCluster::start(&bin, 3, 1).expect("cluster");
    c.load_across_slots(200);
    let setup = Setup::new(&c.nodes[0].addr(), "0 0 0 1 1 *", "keep_last = 10");
    let text = fs::read_to_string(setup.config()).unwrap();
    fs::write(
        setup.config(),
        text.replacen("[source]\n", "[source]\ncluster = true\n", 1),
    )
    .unwrap();
    let mut d = setup.start("daemon.log");
    let http = setup.http_addr();
    let ready = poll(Duration::from_secs(90), || {
        std::net::TcpStream::connect(http).is_ok() && req(http, "GET", "/readyz").status == 200
    });
    assert!(ready, "{name}: not ready: {}", d.log_text());

    // Writes across every slot while a set is taken.
    let stop = AtomicBool::new(false);
    let first = std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                c.write(&["INCR", &format!("counter:{}", i % 500)]);
                c.write(&["SADD", &format!("busy:{}", i % 300), &i.to_string()]);
                i += 1;
            }
        });
        let set = take_set(&setup, &mut d);
        stop.store(true, Ordering::Relaxed);
        set
    });
    assert!(first.complete, "{name}: {first:?}");
    assert!(poll(Duration::from_secs(30), || caught_up(&setup, &c)));
    let quiet = take_set(&setup, &mut d);
    check_set(&c, &setup, &quiet);

    // Shard 0 fails over to its replica; writes go on; the shard is followed there.
    let old = quiet.shards[0].primary.clone();
    let new_primary = c.failover(0).addr();
    assert_ne!(old, new_primary);
    c.load_across_slots(50);
    for i in 0..200 {
        c.write(&["SET", &format!("after:{i}"), "x"]);
    }
    assert!(
        poll(Duration::from_secs(60), || caught_up(&setup, &c)),
        "{name}: not caught up after the failover: {}",
        d.log_text()
    );
    let after = take_set(&setup, &mut d);
    check_set(&c, &setup, &after);
    let s0 = after
        .shards
        .iter()
        .find(|s| s.shard == quiet.shards[0].shard)
        .expect("shard 0 still there");
    assert_eq!(s0.primary, new_primary, "{name}");
    assert_eq!(
        s0.replid,
        c.nodes
            .iter()
            .find(|n| n.addr() == new_primary)
            .unwrap()
            .info_field("replication", "master_replid")
            .unwrap_or_default()
    );

    // Metrics: one family per name, one series per shard.
    let m = req(http, "GET", "/metrics").body;
    assert_exposition_parses(&m);
    assert_eq!(m.matches("# TYPE replisnap_master_link_up ").count(), 1);
    assert_eq!(m.matches("# TYPE replisnap_build_info ").count(), 1);
    for s in &after.shards {
        let up = sample(
            &m,
            &format!("replisnap_master_link_up{{shard=\"{}\"}}", s.shard),
        );
        assert_eq!(up, Some(1.0), "{name}: shard {}", s.shard);
    }
    assert!(
        sample(&m, "replisnap_partial_resyncs_total{shard=\"0-5460\"}").unwrap_or(0.0) >= 1.0
            || sample(&m, "replisnap_full_resyncs_total{shard=\"0-5460\"}").unwrap_or(0.0) >= 2.0,
        "{name}: the failover shows as a resync of shard 0-5460"
    );

    // list and fetch of sets.
    let (code, out, err) = setup.verb(&["list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let listed: Vec<SetManifest> = serde_json::from_str(&out).expect("list --json");
    assert_eq!(listed.len(), 3, "{out}");
    assert_eq!(listed[0].id, after.id);
    let out_dir = setup.dir.path().join("fetched");
    let (code, out, err) = setup.verb(&["fetch", "latest", out_dir.to_str().unwrap(), "--verify"]);
    assert_eq!(code, 0, "{out}{err}");
    for s in &after.shards {
        let f = out_dir.join(format!("{}.rdb", s.shard));
        let loaded = TestServer::start_with_rdb(&bin, Path::new(&f), &[]).expect("load fetched");
        assert_eq!(
            loaded.digest(),
            s.digest,
            "{name}: fetched shard {}",
            s.shard
        );
    }

    let (status, log) = d.terminate(Duration::from_secs(30));
    assert!(status.success(), "{name}: {status:?}\n{log}");
}

/// Slot 0 moves from shard 0 to shard 1 under writes: the watcher sees the new slot map,
/// every shard is stopped and started again under its new name, and the next set holds
/// each primary's digest, named by the new ranges.
fn follows_a_slot_migration(name: &str) {
    let Some(bin) = support::require(name) else {
        return;
    };
    let c = TestCluster::start(&bin, 3, 1).expect("cluster");
    c.load_across_slots(200);
    let setup = Setup::new(&c.nodes[0].addr(), "0 0 0 1 1 *", "keep_last = 10");
    let text = fs::read_to_string(setup.config()).unwrap();
    fs::write(
        setup.config(),
        text.replacen(
            "[source]\n",
            "[source]\ncluster = true\ncluster_refresh_seconds = 1\n",
            1,
        ),
    )
    .unwrap();
    let mut d = setup.start("daemon.log");
    let http = setup.http_addr();
    let ready =
        || std::net::TcpStream::connect(http).is_ok() && req(http, "GET", "/readyz").status == 200;
    assert!(
        poll(Duration::from_secs(90), ready),
        "{name}: {}",
        d.log_text()
    );
    let before = take_set(&setup, &mut d);
    let names: Vec<&str> = before.shards.iter().map(|s| s.shard.as_str()).collect();
    assert_eq!(names[0], "0-5460", "{name}");
    // Slot 0 holds keys (load_across_slots spreads 1,000 keys over every shard; add some
    // to slot 0 itself with a hash tag of that slot).
    let tag = (0u32..)
        .map(|i| format!("{{t{i}}}"))
        .find(|t| support::cluster::slot_of(t.as_bytes()) == 0)
        .unwrap();
    for i in 0..20 {
        c.write(&["SET", &format!("{tag}:{i}"), "v"]);
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                c.write(&["INCR", &format!("counter:{}", i % 500)]);
                i += 1;
            }
        });
        c.migrate_slot(0, 0, 1);
        stop.store(true, Ordering::Relaxed);
    });
    let renamed = poll(Duration::from_secs(60), || {
        d.log_text().contains("cluster topology changed") && ready()
    });
    assert!(
        renamed,
        "{name}: no restart after the migration: {}",
        d.log_text()
    );
    assert!(poll(Duration::from_secs(60), || caught_up(&setup, &c)));
    let after = take_set(&setup, &mut d);
    // Slot 0 joined shard 1's range; shard 0 starts at 1; shard 2 kept its name.
    let r1 = &before.shards[1].shard;
    let r2 = &before.shards[2].shard;
    let mut want = vec!["1-5460".to_string(), format!("0-0_{r1}"), r2.clone()];
    want.sort();
    let mut names: Vec<String> = after.shards.iter().map(|s| s.shard.clone()).collect();
    names.sort();
    assert_eq!(names, want, "{name}");
    check_set(&c, &setup, &after);
    // The shard whose slots did not move resumed from its checkpoint with a partial
    // resync, not a new full sync.
    let m = req(http, "GET", "/metrics").body;
    let series = |k: &str| {
        sample(
            &m,
            &format!("replisnap_{k}_resyncs_total{{shard=\"{r2}\"}}"),
        )
    };
    assert_eq!(series("partial"), Some(1.0), "{name}: {m}");
    assert_eq!(series("full"), Some(0.0), "{name}");
    let (status, log) = d.terminate(Duration::from_secs(30));
    assert!(status.success(), "{name}: {status:?}\n{log}");
}

#[test]
fn redis_7_0_follows_a_slot_migration() {
    follows_a_slot_migration("redis-7.0");
}

#[test]
fn valkey_9_1_follows_a_slot_migration() {
    follows_a_slot_migration("valkey-9.1");
}

#[test]
fn redis_7_0_cluster() {
    backs_up_every_shard("redis-7.0");
}

#[test]
fn redis_8_2_cluster() {
    backs_up_every_shard("redis-8.2");
}

#[test]
fn valkey_9_1_cluster() {
    backs_up_every_shard("valkey-9.1");
}

#[test]
fn redis_6_2_cluster() {
    backs_up_every_shard("redis-6.2");
}

/// Two processes share one cluster (`cluster_instances = 2`, `--instance 0` and `1`): each
/// follows its own shards, both write into one storage, and one complete set manifest
/// names all three shards; each shard's file has its primary's digest.
#[test]
fn two_instances_make_one_set() {
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let c = TestCluster::start(&bin, 3, 1).expect("cluster");
    c.load_across_slots(150);
    let mut setups = Vec::new();
    let mut daemons = Vec::new();
    for k in 0..2 {
        let s = Setup::new(&c.nodes[0].addr(), "*/3 * * * * *", "keep_last = 50");
        let mut text = fs::read_to_string(s.config()).unwrap().replacen(
            "[source]\n",
            "[source]\ncluster = true\ncluster_instances = 2\n",
            1,
        );
        if k == 1 {
            // One storage for both: instance 1 writes where instance 0 does.
            let theirs = setups.first().map(|s: &Setup| s.storage_path()).unwrap();
            text = text.replace(
                &s.storage_path().display().to_string(),
                &theirs.display().to_string(),
            );
        }
        fs::write(s.config(), text).unwrap();
        setups.push(s);
    }
    for (k, s) in setups.iter().enumerate() {
        let log = format!("daemon-{k}.log");
        let d = daemon::Daemon {
            child: std::process::Command::new(env!("CARGO_BIN_EXE_replisnap"))
                .args(["run", "--instance", &k.to_string(), "--config"])
                .arg(s.config())
                .env("RUST_LOG", "info,tokio_cron_scheduler=warn")
                .env_remove("NOTIFY_SOCKET")
                .stdout(std::process::Stdio::null())
                .stderr(fs::File::create(s.dir.path().join(&log)).unwrap())
                .spawn()
                .unwrap(),
            log: s.dir.path().join(&log),
        };
        daemons.push(d);
    }
    let storage = setups[0].storage_path();
    let mut found: Option<SetManifest> = None;
    let done = poll(Duration::from_secs(90), || {
        let Ok(rd) = fs::read_dir(storage.join("sets")) else {
            return false;
        };
        for e in rd.flatten() {
            if let Ok(b) = fs::read(e.path().join("manifest.json")) {
                let m: SetManifest = serde_json::from_slice(&b).unwrap();
                if m.complete {
                    found = Some(m);
                    return true;
                }
            }
        }
        false
    });
    for d in &mut daemons {
        d.assert_running();
    }
    assert!(
        done,
        "no complete set: {}\n{}",
        daemons[0].log_text(),
        daemons[1].log_text()
    );
    let set = found.unwrap();
    assert_eq!(set.shards.len(), 3, "{set:?}");
    let parts: Vec<String> = fs::read_dir(storage.join("sets").join(set.id.as_str()))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(parts.contains(&"part-0-of-2.json".to_string()), "{parts:?}");
    assert!(parts.contains(&"part-1-of-2.json".to_string()), "{parts:?}");
    // Instance 0 followed shards 0 and 2, instance 1 shard 1.
    assert!(
        daemons[0].log_text().contains("shards=2 of=3"),
        "{}",
        daemons[0].log_text()
    );
    assert!(
        daemons[1].log_text().contains("shards=1 of=3"),
        "{}",
        daemons[1].log_text()
    );
    // Stop the writes' effects: compare each shard's file with its primary now (no writes
    // ran since the load, so every set holds the same data).
    check_set(&c, &setups[0], &set);
    for d in daemons {
        let (status, log) = d.terminate(Duration::from_secs(30));
        assert!(status.success(), "{status:?}\n{log}");
    }
}
