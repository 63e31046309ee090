//! The cluster source side (issue 16): discovering a real cluster's shards (CLUSTER SHARDS
//! on Redis 7.0+ and Valkey, CLUSTER NODES on Redis 6.2), following one shard's primary
//! across a `CLUSTER FAILOVER` with a library replica, and an incomplete slot map reported
//! as such. Real servers started by the tests (`support::cluster`).

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use replisnap::cluster::{discover, key_slot, ClusterError, ClusterSettings, ShardFollower};
use replisnap::replication::{Replica, ReplicaHandle, Settings};
use support::cluster::TestCluster;
use support::replica::assert_in_sync;
use support::TestServer;

fn settings(seeds: Vec<String>) -> ClusterSettings {
    ClusterSettings {
        seeds,
        username: None,
        password: None,
        tls: None,
        timeout: Duration::from_secs(5),
    }
}

fn discovery_on(name: &str) {
    let Some(bin) = support::require(name) else {
        return;
    };
    let c = TestCluster::start(&bin, 3, 1).expect("cluster");
    // A dead seed first, then a replica: any node answers for the cluster.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let replica_addr = c.replicas(2)[0].addr();
    let started = std::time::Instant::now();
    let t = discover(&settings(vec![dead, replica_addr])).expect("discover");
    eprintln!("{name}: discover took {} µs", started.elapsed().as_micros());
    eprintln!("{name}: {t:#?}");
    assert!(
        t.missing_slots().is_empty(),
        "{name}: {:?}",
        t.missing_slots()
    );
    let names: Vec<String> = t.shards.iter().map(|s| s.name()).collect();
    assert_eq!(names, ["0-5460", "5461-10921", "10922-16383"], "{name}");
    for (i, shard) in t.shards.iter().enumerate() {
        let p = c.shard_primary(i);
        assert_eq!(shard.primary.address, p.addr(), "{name}: shard {i} primary");
        assert_eq!(shard.primary.id, c.id_of(p), "{name}: shard {i} primary id");
        assert!(
            shard.primary.primary && shard.primary.healthy,
            "{name}: {shard:?}"
        );
        let r = c.replicas(i);
        assert_eq!(shard.replicas.len(), 1, "{name}: shard {i}");
        assert_eq!(
            shard.replicas[0].address,
            r[0].addr(),
            "{name}: shard {i} replica"
        );
        assert_eq!(
            shard.replicas[0].id,
            c.id_of(r[0]),
            "{name}: shard {i} replica id"
        );
        assert!(!shard.replicas[0].primary);
        assert_eq!(shard.slots, vec![c.ranges[i]], "{name}");
        // Valkey 8+ names its shards; Redis (through 8.2 here) does not.
        if bin.is_valkey() {
            let id = shard
                .shard_id
                .as_deref()
                .unwrap_or_else(|| panic!("{name}: no shard id"));
            assert_eq!(id.len(), 40, "{name}: {id}");
        } else {
            assert_eq!(shard.shard_id, None, "{name}");
        }
    }
    // Slots as the server computes them, and the owner of each.
    for key in [
        "foo",
        "{user1000}.following",
        "{user1000}.followers",
        "a{b}c",
        "",
        "{}x",
        "k:123456",
    ] {
        let ours = key_slot(key.as_bytes());
        let theirs = c.nodes[0]
            .must(&["CLUSTER", "KEYSLOT", key])
            .as_int()
            .unwrap();
        assert_eq!(i64::from(ours), theirs, "{name}: slot of {key:?}");
        let owner = t.shard_of_slot(ours).expect("a shard holds it");
        assert_eq!(
            owner.primary.address,
            c.shard_of_slot(ours).addr(),
            "{name}: {key:?}"
        );
    }
    // AUTH as a named user (ACL; the default user stays open for the harness).
    for n in &c.nodes {
        n.must(&["ACL", "SETUSER", "backup", "on", ">s3cret", "+@all", "~*"]);
    }
    let mut authed = settings(vec![c.nodes[0].addr()]);
    authed.username = Some("backup".into());
    authed.password = Some("s3cret".into());
    // The same shards and members (a replica's health may have changed in between).
    let members = |t: &replisnap::cluster::Topology| -> Vec<(String, Vec<String>)> {
        t.shards
            .iter()
            .map(|s| (s.name(), s.node_ids().map(str::to_string).collect()))
            .collect()
    };
    let again = discover(&authed).expect("discover with AUTH");
    assert_eq!(members(&again), members(&t), "{name}");
    authed.password = Some("wrong".into());
    let e = discover(&authed).unwrap_err().to_string();
    assert!(
        e.contains(&c.nodes[0].addr()) && e.contains("AUTH"),
        "{name}: {e}"
    );
    // A node with cluster support disabled is named, not taken for a one-shard cluster.
    let plain = TestServer::start(&bin, &[]).expect("plain server");
    match discover(&settings(vec![plain.addr(), c.nodes[0].addr()])) {
        Err(ClusterError::NotCluster { node, .. }) => assert_eq!(node, plain.addr()),
        other => panic!("{name}: a non-cluster seed gave {other:?}"),
    }
    let e = discover(&settings(vec![plain.addr()]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&plain.addr()) && e.contains("cluster = true"),
        "{e}"
    );
}

#[test]
fn discovery_redis_6_2_cluster_nodes() {
    discovery_on("redis-6.2");
}

#[test]
fn discovery_redis_7_0() {
    discovery_on("redis-7.0");
}

#[test]
fn discovery_redis_8_2() {
    discovery_on("redis-8.2");
}

#[test]
fn discovery_valkey_9_1() {
    discovery_on("valkey-9.1");
}

/// A library replica resolving shard 0's primary through a `ShardFollower` follows it
/// through `CLUSTER FAILOVER` under writes, with a partial resync on the promoted node.
fn following_on(name: &str) {
    let Some(bin) = support::require(name) else {
        return;
    };
    let c = TestCluster::start(&bin, 3, 1).expect("cluster");
    c.load_across_slots(300);
    let t = discover(&settings(vec![c.nodes[1].addr()])).expect("discover");
    let follower = ShardFollower::new(settings(vec![c.nodes[1].addr()]), &t.shards[0]);
    let first = c.shard_primary(0);
    assert_eq!(follower.primary().expect("primary"), first.addr());
    let (mut r, h) = Replica::new(Settings {
        address: "unused: the resolver answers".into(),
        username: None,
        password: None,
        announce_port: 6391,
        psync_command: "PSYNC".into(),
        connect_timeout: Duration::from_secs(5),
        tls: None,
    });
    r.set_resolver(Box::new(move || {
        follower.primary().map_err(|e| e.to_string())
    }));
    let replica = std::thread::spawn(move || r.run());
    support::wait_for("first sync", Duration::from_secs(30), || {
        h.status.ready.load(Ordering::Relaxed)
    });
    assert_eq!(*h.status.master_address.lock().unwrap(), first.addr());
    let stop = AtomicBool::new(false);
    let new = std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let k = format!("w:{i}");
                c.write(&["SET", &k, &i.to_string()]);
                c.write(&["HINCRBY", &format!("h:{}", i % 50), "n", "1"]);
                c.write(&["RPUSH", &format!("l:{}", i % 30), &k]);
                i += 1;
            }
        });
        std::thread::sleep(Duration::from_millis(500));
        let asked = std::time::Instant::now();
        let new = c.failover(0);
        let settled = asked.elapsed();
        support::wait_for(
            "the replica on the new primary",
            Duration::from_secs(30),
            || {
                h.status.link_up.load(Ordering::Relaxed)
                    && *h.status.master_address.lock().unwrap() == new.addr()
            },
        );
        eprintln!(
            "{name}: CLUSTER FAILOVER settled in {} ms; replica linked to the new primary {} ms after it was asked",
            settled.as_millis(),
            asked.elapsed().as_millis()
        );
        std::thread::sleep(Duration::from_millis(1000));
        stop.store(true, Ordering::Relaxed);
        new
    });
    assert_ne!(new.port(), first.port(), "{name}: the primary changed");
    assert_in_sync(new, &h, &bin, &format!("{name}: on the new primary"));
    assert_eq!(
        *h.status.master_address.lock().unwrap(),
        new.addr(),
        "{name}"
    );
    let full = h.status.full_syncs.load(Ordering::Relaxed);
    let partial = h.status.partial_syncs.load(Ordering::Relaxed);
    eprintln!(
        "{name}: full syncs {full}, partial syncs {partial}, link errors {}",
        h.status.link_errors.load(Ordering::Relaxed)
    );
    assert_eq!(
        full, 1,
        "{name}: the failover was continued, not synced again"
    );
    assert!(partial >= 1, "{name}: a partial resync on the new primary");
    assert!(new.dbsize_all() > 0, "{name}: the shard holds data");
    h.stop();
    replica.join().expect("replica thread");
}

#[test]
fn following_a_failover_redis_6_2() {
    following_on("redis-6.2");
}

#[test]
fn following_a_failover_redis_7_0() {
    following_on("redis-7.0");
}

#[test]
fn following_a_failover_redis_8_2() {
    following_on("redis-8.2");
}

#[test]
fn following_a_failover_valkey_9_1() {
    following_on("valkey-9.1");
}

/// A shard's slots deleted: the map is reported incomplete, the other shards stand, and a
/// follower of the emptied shard is told the shard is gone.
fn incomplete_on(name: &str) {
    let Some(bin) = support::require(name) else {
        return;
    };
    let c = TestCluster::start(&bin, 3, 0).expect("cluster");
    let before = discover(&settings(vec![c.nodes[0].addr()])).expect("discover");
    let follower = ShardFollower::new(settings(c.addrs()), &before.shards[1]);
    let (a, b) = c.ranges[1];
    c.del_slots(a, b);
    let t = discover(&settings(vec![c.nodes[0].addr()])).expect("discover incomplete");
    assert_eq!(t.missing_slots(), vec![(a, b)], "{name}");
    let names: Vec<String> = t.shards.iter().map(|s| s.name()).collect();
    assert_eq!(names, ["0-5460", "10922-16383"], "{name}");
    match follower.primary() {
        Err(ClusterError::ShardGone { shard }) => assert_eq!(shard, "5461-10921"),
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn an_incomplete_slot_map_redis_6_2() {
    incomplete_on("redis-6.2");
}

#[test]
fn an_incomplete_slot_map_valkey_9_1() {
    incomplete_on("valkey-9.1");
}

/// A replica of shard 0 on its own thread, its primary asked of `follower` before each
/// connection.
fn follow(follower: ShardFollower) -> (ReplicaHandle, std::thread::JoinHandle<()>) {
    let (mut r, h) = Replica::new(Settings {
        address: "unused: the resolver answers".into(),
        username: None,
        password: None,
        announce_port: 6391,
        psync_command: "PSYNC".into(),
        connect_timeout: Duration::from_secs(5),
        tls: None,
    });
    r.set_resolver(Box::new(move || {
        follower.primary().map_err(|e| e.to_string())
    }));
    let t = std::thread::spawn(move || r.run());
    support::wait_for("first sync", Duration::from_secs(30), || {
        h.status.ready.load(Ordering::Relaxed)
    });
    (h, t)
}

/// Writes of several types over every slot until `stop`; keys with `tag` land in its slot.
fn writes(c: &TestCluster, stop: &AtomicBool, tag: &str) {
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let k = format!("w:{i}");
        c.write(&["SET", &k, &i.to_string()]);
        c.write(&["HINCRBY", &format!("h:{}", i % 50), "n", "1"]);
        c.write(&["RPUSH", &format!("{{{tag}}}:l:{}", i % 7), &k]);
        i += 1;
    }
}

/// Shard 0's primary killed: while the cluster marks it failed the follower says so (an
/// error, the replica backs off and is linked nowhere); after the automatic failover the
/// replica is on the promoted replica with the same data.
fn killed_primary_on(name: &str) {
    let Some(bin) = support::require(name) else {
        return;
    };
    let mut c = TestCluster::start(&bin, 3, 1).expect("cluster");
    c.load_across_slots(200);
    let t = discover(&settings(c.addrs())).expect("discover");
    let (h, replica) = follow(ShardFollower::new(settings(c.addrs()), &t.shards[0]));
    let probe = ShardFollower::new(settings(c.addrs()), &t.shards[0]);
    let old = c.primary_index(0);
    let old_addr = c.nodes[old].addr();
    // The replica waits to take over until the failed primary has been seen reported, so
    // that window is not a race with the election on a busy machine.
    let held = c.replicas(0)[0].addr();
    c.replicas(0)[0].must(&["CONFIG", "SET", "cluster-replica-no-failover", "yes"]);
    c.kill(old);
    let mut answers = Vec::new();
    let mut note = |a: String| {
        if answers.last() != Some(&a) {
            answers.push(a);
        }
    };
    let reported = support::wait_until(Duration::from_secs(60), || match probe.primary() {
        Err(ClusterError::PrimaryFailed { address, .. }) => address == old_addr,
        Ok(a) => {
            note(a);
            false
        }
        Err(e) => {
            note(e.to_string());
            false
        }
    });
    assert!(
        reported,
        "{name}: the failed primary was never reported: {answers:?}"
    );
    assert!(
        !h.status.link_up.load(Ordering::Relaxed),
        "{name}: linked to a failed primary"
    );
    let replica_node = c
        .alive()
        .find(|n| n.addr() == held)
        .expect("the held replica");
    replica_node.must(&["CONFIG", "SET", "cluster-replica-no-failover", "no"]);
    let promoted = support::wait_until(Duration::from_secs(60), || {
        probe.primary().is_ok_and(|a| a == held)
    });
    assert!(promoted, "{name}: the replica was never named primary");
    let new = c.wait_promoted(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| writes(&c, &stop, "a"));
        std::thread::sleep(Duration::from_millis(1000));
        stop.store(true, Ordering::Relaxed);
    });
    assert_in_sync(new, &h, &bin, &format!("{name}: on the promoted replica"));
    assert_eq!(*h.status.master_address.lock().unwrap(), new.addr());
    assert!(h.status.link_errors.load(Ordering::Relaxed) >= 1);
    eprintln!(
        "{name} killed primary: full syncs {}, partial syncs {}, link errors {}",
        h.status.full_syncs.load(Ordering::Relaxed),
        h.status.partial_syncs.load(Ordering::Relaxed),
        h.status.link_errors.load(Ordering::Relaxed)
    );
    h.stop();
    replica.join().expect("replica thread");
}

#[test]
fn a_killed_primary_redis_7_0() {
    killed_primary_on("redis-7.0");
}

#[test]
fn a_killed_primary_valkey_9_1() {
    killed_primary_on("valkey-9.1");
}

/// A slot of shard 0 migrated to shard 1 under writes (some to that slot, through ASK):
/// the shard-0 replica applies the source's deletions and keeps its primary's digest, and
/// the follower sees the shard's new slot ranges.
fn migration_on(name: &str) {
    let Some(bin) = support::require(name) else {
        return;
    };
    let c = TestCluster::start(&bin, 3, 1).expect("cluster");
    c.load_across_slots(300);
    let t = discover(&settings(c.addrs())).expect("discover");
    let follower = ShardFollower::new(settings(c.addrs()), &t.shards[0]);
    let probe = ShardFollower::new(settings(c.addrs()), &t.shards[0]);
    let (h, replica) = follow(follower);
    // A slot of shard 0 inside its range, holding loaded keys.
    let tag = (0..300)
        .map(|i| format!("str:{i}"))
        .find(|k| (100..5000).contains(&key_slot(k.as_bytes())))
        .expect("a key of shard 0");
    let slot = key_slot(tag.as_bytes());
    for i in 0..50 {
        c.write(&["SET", &format!("{{{tag}}}:{i}"), "x"]);
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| writes(&c, &stop, &tag));
        std::thread::sleep(Duration::from_millis(300));
        c.migrate_slot(slot, 0, 1);
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
    });
    let p0 = c.shard_primary(0);
    let p1 = c.shard_primary(1);
    let moved = p1.must(&["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()]);
    assert!(moved.as_int().unwrap() >= 51, "{name}: {moved:?}");
    let left = p0.must(&["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()]);
    assert_eq!(left.as_int(), Some(0), "{name}");
    assert_in_sync(
        p0,
        &h,
        &bin,
        &format!("{name}: after migrating slot {slot}"),
    );
    let shard = probe.shard().expect("shard 0 now");
    assert_eq!(
        shard.name(),
        format!("0-{}_{}-5460", slot - 1, slot + 1),
        "{name}"
    );
    assert!(!shard.holds_slot(slot));
    assert_eq!(
        h.status.full_syncs.load(Ordering::Relaxed),
        1,
        "{name}: forced resyncs {}: {}",
        h.status.forced_resyncs.load(Ordering::Relaxed),
        h.status.last_forced_reason.lock().unwrap()
    );
    h.stop();
    replica.join().expect("replica thread");
}

#[test]
fn a_slot_migration_redis_6_2() {
    migration_on("redis-6.2");
}

#[test]
fn a_slot_migration_valkey_9_1() {
    migration_on("valkey-9.1");
}

/// A cluster with TLS on every node (client port, cluster bus and replication): asked over
/// TLS, discovery answers the nodes' TLS ports, and a replica follows shard 0 over TLS.
fn tls_on(name: &str) {
    let Some(bin) = support::require(name) else {
        return;
    };
    let pki = tempfile::tempdir().unwrap();
    let d = pki.path().to_path_buf();
    support::pki::make_pki(&d, "ca");
    let ports: Vec<u16> = (0..6)
        .map(|_| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        })
        .collect();
    let p = |f: &str| d.join(f).to_string_lossy().into_owned();
    let c = TestCluster::start_with(&bin, 3, 1, &|i| {
        [
            "--tls-port",
            &ports[i].to_string(),
            "--tls-cert-file",
            &p("server.crt"),
            "--tls-key-file",
            &p("server.key"),
            "--tls-ca-cert-file",
            &p("ca.crt"),
            "--tls-auth-clients",
            "no",
            "--tls-cluster",
            "yes",
            "--tls-replication",
            "yes",
        ]
        .map(String::from)
        .to_vec()
    })
    .expect("TLS cluster");
    let tls_of = |n: &TestServer| {
        let i = c.nodes.iter().position(|m| m.port() == n.port()).unwrap();
        format!("127.0.0.1:{}", ports[i])
    };
    let mut s = settings(vec![format!("127.0.0.1:{}", ports[3])]);
    s.tls = Some(replisnap::replication::tls::TlsSettings {
        ca_file: Some(d.join("ca.crt")),
        cert_file: None,
        key_file: None,
        server_name: None,
        insecure_skip_verify: false,
    });
    let t = discover(&s).expect("discover over TLS");
    eprintln!("{name} over TLS: {t:#?}");
    assert!(t.missing_slots().is_empty());
    for (i, shard) in t.shards.iter().enumerate() {
        assert_eq!(
            shard.primary.address,
            tls_of(c.shard_primary(i)),
            "{name}: shard {i}"
        );
        assert_eq!(
            shard.replicas[0].address,
            tls_of(c.replicas(i)[0]),
            "{name}: shard {i}"
        );
    }
    c.load_across_slots(100);
    let follower = ShardFollower::new(s.clone(), &t.shards[0]);
    let (mut r, h) = Replica::new(Settings {
        address: "unused: the resolver answers".into(),
        username: None,
        password: None,
        announce_port: 6391,
        psync_command: "PSYNC".into(),
        connect_timeout: Duration::from_secs(5),
        tls: s.tls.clone(),
    });
    r.set_resolver(Box::new(move || {
        follower.primary().map_err(|e| e.to_string())
    }));
    let replica = std::thread::spawn(move || r.run());
    assert_in_sync(c.shard_primary(0), &h, &bin, &format!("{name}: over TLS"));
    assert_eq!(
        *h.status.master_address.lock().unwrap(),
        tls_of(c.shard_primary(0))
    );
    h.stop();
    replica.join().expect("replica thread");
}

#[test]
fn tls_redis_7_0() {
    tls_on("redis-7.0");
}
