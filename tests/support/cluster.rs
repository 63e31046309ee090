//! A real Redis/Valkey cluster for tests: `cluster-enabled yes` servers on free loopback
//! ports, each in its own temp dir, slots spread evenly over the primaries, one or more
//! replicas per primary, and the operations tests make on it (routed writes, load over
//! every slot, manual failover, slot migration). Independent of `replisnap::cluster` (its
//! own CRC16, its own reading of `CLUSTER NODES`), so it can check that module.
#![allow(dead_code)]

use std::io;
use std::sync::Mutex;
use std::time::Duration;

use super::resp::Reply;
use super::server::{wait_until, ServerBin, TestServer};

/// `--cluster-node-timeout`: short enough for a lead test that kills a primary, long
/// enough not to fail a node over on a busy 2-core machine.
pub const NODE_TIMEOUT_MS: &str = "3000";
const SLOTS: u16 = 16384;
const SETTLE: Duration = Duration::from_secs(60);

pub struct TestCluster {
    pub bin: ServerBin,
    pub nodes: Vec<TestServer>,
    /// Node ids, by index into `nodes`.
    pub ids: Vec<String>,
    /// Node indices per shard, in creation order (shard i was given the i-th slot range).
    pub groups: Vec<Vec<usize>>,
    /// The slot ranges given at start, per shard.
    pub ranges: Vec<(u16, u16)>,
    /// Where writes go: the node index owning each slot, fixed by MOVED answers.
    route: Mutex<Vec<usize>>,
    /// Nodes killed by [`TestCluster::kill`]: left out of every check.
    down: Vec<bool>,
}

fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The slot of `key` (hash tags included), computed here, for routing.
pub fn slot_of(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|o| {
        let len = key[o + 1..].iter().position(|&b| b == b'}')?;
        (len > 0).then(|| &key[o + 1..o + 1 + len])
    });
    crc16(tagged.unwrap_or(key)) % SLOTS
}

fn s(r: &Reply) -> String {
    r.as_string().unwrap_or_default()
}

/// The slot ranges a `CLUSTER NODES` line claims (markers in brackets skipped).
fn line_slots(fields: &[&str]) -> Vec<(u16, u16)> {
    fields
        .iter()
        .skip(8)
        .filter(|f| !f.starts_with('['))
        .filter_map(|f| match f.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => f.parse().ok().map(|a| (a, a)),
        })
        .collect()
}

impl TestCluster {
    /// `shards` primaries with `replicas_per_shard` replicas each, every slot assigned,
    /// `cluster_state:ok` on every node and every replica in sync.
    pub fn start(bin: &ServerBin, shards: usize, replicas_per_shard: usize) -> io::Result<Self> {
        Self::start_with(bin, shards, replicas_per_shard, &|_| Vec::new())
    }

    /// [`TestCluster::start`] with further arguments for node `i` (e.g. its TLS port).
    pub fn start_with(
        bin: &ServerBin,
        shards: usize,
        replicas_per_shard: usize,
        extra: &dyn Fn(usize) -> Vec<String>,
    ) -> io::Result<Self> {
        assert!(shards >= 1);
        let per = 1 + replicas_per_shard;
        let mut nodes = Vec::new();
        for i in 0..shards * per {
            let more = extra(i);
            let mut args = vec![
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                NODE_TIMEOUT_MS,
                "--repl-diskless-sync-delay",
                "0",
            ];
            args.extend(more.iter().map(String::as_str));
            nodes.push(TestServer::start(bin, &args)?);
        }
        let ids: Vec<String> = nodes
            .iter()
            .map(|n| s(&n.must(&["CLUSTER", "MYID"])))
            .collect();
        let groups: Vec<Vec<usize>> = (0..shards)
            .map(|i| (i * per..(i + 1) * per).collect())
            .collect();
        let ranges: Vec<(u16, u16)> = (0..shards)
            .map(|i| {
                let a = i * SLOTS as usize / shards;
                let b = (i + 1) * SLOTS as usize / shards - 1;
                (a as u16, b as u16)
            })
            .collect();
        let ranged = bin.is_valkey() || bin.major_minor() >= (7, 0);
        for (g, &(a, b)) in groups.iter().zip(&ranges) {
            let p = &nodes[g[0]];
            // Distinct epochs up front, as `redis-cli --cluster create` does.
            p.must(&["CLUSTER", "SET-CONFIG-EPOCH", &(g[0] + 1).to_string()]);
            if ranged {
                p.must(&["CLUSTER", "ADDSLOTSRANGE", &a.to_string(), &b.to_string()]);
            } else {
                let slots: Vec<String> = (a..=b).map(|x| x.to_string()).collect();
                let mut args = vec!["CLUSTER", "ADDSLOTS"];
                args.extend(slots.iter().map(String::as_str));
                p.must(&args);
            }
        }
        // The first node's ports as it announces them (`ip:port@cport`): with TLS on the bus
        // the bus port follows the TLS port, not the plain one.
        let myself = s(&nodes[0].must(&["CLUSTER", "NODES"]));
        let (port, cport) = myself
            .lines()
            .find(|l| l.contains("myself"))
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|a| a.split(',').next())
            .and_then(|a| a.rsplit_once(':'))
            .and_then(|(_, pc)| pc.split_once('@'))
            .map(|(p, c)| (p.to_string(), c.to_string()))
            .ok_or_else(|| io::Error::other(format!("CLUSTER NODES myself: {myself}")))?;
        for n in &nodes[1..] {
            n.must(&["CLUSTER", "MEET", "127.0.0.1", &port, &cport]);
        }
        let c = TestCluster {
            bin: bin.clone(),
            route: Mutex::new(vec![0; SLOTS as usize]),
            down: vec![false; nodes.len()],
            nodes,
            ids,
            groups,
            ranges,
        };
        c.settle("every node knows every other", |n| {
            let t = s(&n.must(&["CLUSTER", "NODES"]));
            t.lines().count() == c.nodes.len() && !t.contains("handshake")
        })?;
        for g in &c.groups {
            for &r in &g[1..] {
                c.nodes[r].must(&["CLUSTER", "REPLICATE", &c.ids[g[0]]]);
            }
        }
        c.wait_healthy()?;
        for (i, g) in c.groups.iter().enumerate() {
            c.set_route(i, g[0]);
        }
        Ok(c)
    }

    /// Wait until `f` holds on every node.
    fn settle(&self, what: &str, f: impl Fn(&TestServer) -> bool) -> io::Result<()> {
        if wait_until(SETTLE, || self.alive().all(&f)) {
            return Ok(());
        }
        let views: Vec<String> = self
            .alive()
            .map(|n| {
                let log = n.log();
                let tail: Vec<&str> = log.lines().rev().take(6).collect();
                format!(
                    "{}:\n{}log tail:\n{}",
                    n.addr(),
                    s(&n.must(&["CLUSTER", "NODES"])),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect();
        Err(io::Error::other(format!(
            "{}: cluster not settled after {SETTLE:?}: {what}\n{}",
            self.bin.name,
            views.join("\n")
        )))
    }

    /// The nodes not killed.
    pub fn alive(&self) -> impl Iterator<Item = &TestServer> {
        self.nodes
            .iter()
            .zip(&self.down)
            .filter(|(_, d)| !**d)
            .map(|(n, _)| n)
    }

    /// SIGKILL node `n`; it is left out of every later check.
    pub fn kill(&mut self, n: usize) {
        self.nodes[n].kill();
        self.down[n] = true;
    }

    /// `cluster_state:ok` everywhere, every node sees every replica as one, and every
    /// replica's link is up and out of its sync (killed nodes left out).
    pub fn wait_healthy(&self) -> io::Result<()> {
        let alive = |g: &Vec<usize>| g.iter().filter(|&&n| !self.down[n]).count();
        let replicas: usize = self.groups.iter().map(|g| alive(g).saturating_sub(1)).sum();
        let dead: Vec<&str> = (0..self.nodes.len())
            .filter(|&n| self.down[n])
            .map(|n| self.ids[n].as_str())
            .collect();
        self.settle("cluster_state:ok, replicas known and in sync", |n| {
            let info = s(&n.must(&["CLUSTER", "INFO"]));
            let text = s(&n.must(&["CLUSTER", "NODES"]));
            let nodes: Vec<&str> = text
                .lines()
                .filter(|l| !dead.iter().any(|d| l.starts_with(d)))
                .collect();
            let slaves = nodes
                .iter()
                .filter(|l| l.split(' ').nth(2).is_some_and(|f| f.contains("slave")))
                .count();
            let fine = nodes
                .iter()
                .all(|l| !l.contains("fail") && !l.contains("handshake"));
            let role = n.info("replication");
            let synced = role.contains("role:master")
                || (role.contains("master_link_status:up")
                    && role.contains("master_sync_in_progress:0"));
            info.contains("cluster_state:ok") && slaves == replicas && fine && synced
        })
    }

    /// The node that is shard `i`'s primary now (its group member answering role master).
    pub fn primary_index(&self, i: usize) -> usize {
        *self.groups[i]
            .iter()
            .find(|&&n| !self.down[n] && self.nodes[n].info("replication").contains("role:master"))
            .unwrap_or_else(|| panic!("shard {i} has no primary"))
    }

    pub fn shard_primary(&self, i: usize) -> &TestServer {
        &self.nodes[self.primary_index(i)]
    }

    /// The current primary of every shard, in shard order.
    pub fn primaries(&self) -> Vec<&TestServer> {
        (0..self.groups.len())
            .map(|i| self.shard_primary(i))
            .collect()
    }

    /// The replicas of shard `i` now.
    pub fn replicas(&self, i: usize) -> Vec<&TestServer> {
        let p = self.primary_index(i);
        self.groups[i]
            .iter()
            .filter(|&&n| n != p)
            .map(|&n| &self.nodes[n])
            .collect()
    }

    /// Every node's address.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr()).collect()
    }

    pub fn id_of(&self, n: &TestServer) -> &str {
        let i = self
            .nodes
            .iter()
            .position(|m| m.port() == n.port())
            .expect("a node of this cluster");
        &self.ids[i]
    }

    /// The primary that says itself (`myself,master`) it owns `slot`.
    pub fn shard_of_slot(&self, slot: u16) -> &TestServer {
        self.alive()
            .find(|n| {
                let t = s(&n.must(&["CLUSTER", "NODES"]));
                t.lines().any(|l| {
                    let f: Vec<&str> = l.split(' ').collect();
                    f.len() >= 8
                        && f[2].contains("myself")
                        && f[2].contains("master")
                        && line_slots(&f).iter().any(|&(a, b)| a <= slot && slot <= b)
                })
            })
            .unwrap_or_else(|| panic!("no primary owns slot {slot}"))
    }

    fn set_route(&self, shard: usize, node: usize) {
        let (a, b) = self.ranges[shard];
        let mut r = self.route.lock().unwrap();
        for x in a..=b {
            r[x as usize] = node;
        }
    }

    fn node_by_addr(&self, addr: &str) -> Option<usize> {
        let port: u16 = addr.rsplit_once(':')?.1.parse().ok()?;
        self.nodes.iter().position(|n| n.port() == port)
    }

    /// Run a keyed command (`args[1]` is the key) on the node owning its slot, following
    /// MOVED and ASK, retrying through a failover (TRYAGAIN, CLUSTERDOWN, closed links)
    /// for up to 30 s. Panics on any other error reply.
    pub fn write(&self, args: &[&str]) -> Reply {
        let slot = slot_of(args[1].as_bytes()) as usize;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut last = String::new();
        while std::time::Instant::now() < deadline {
            let at = self.route.lock().unwrap()[slot];
            match self.nodes[at].cmd_str(args) {
                Ok(Reply::Error(e)) if e.starts_with("MOVED ") => {
                    if let Some(n) = e.split(' ').nth(2).and_then(|a| self.node_by_addr(a)) {
                        self.route.lock().unwrap()[slot] = n;
                        continue;
                    }
                    last = e;
                }
                Ok(Reply::Error(e)) if e.starts_with("ASK ") => {
                    let to = e.split(' ').nth(2).and_then(|a| self.node_by_addr(a));
                    if let Some(n) = to {
                        let mut c = self.nodes[n].connect().expect("connect for ASK");
                        c.cmd(&[b"ASKING".as_slice()]).expect("ASKING");
                        let v: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
                        match c.cmd(&v) {
                            Ok(Reply::Error(e)) => last = e,
                            Ok(r) => return r,
                            Err(e) => last = e.to_string(),
                        }
                    }
                }
                Ok(Reply::Error(e))
                    if ["TRYAGAIN", "CLUSTERDOWN", "LOADING", "READONLY"]
                        .iter()
                        .any(|p| e.starts_with(p)) =>
                {
                    last = e
                }
                Ok(Reply::Error(e)) => panic!("{}: {args:?} -> error {e}", self.bin.name),
                Ok(r) => return r,
                Err(e) => {
                    // A dead node: ask the next live one, which answers MOVED.
                    let next = (1..self.nodes.len())
                        .map(|d| (at + d) % self.nodes.len())
                        .find(|&n| !self.down[n])
                        .unwrap_or(at);
                    self.route.lock().unwrap()[slot] = next;
                    last = e.to_string();
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{}: {args:?} not written within 30 s: {last}",
            self.bin.name
        )
    }

    /// `n` keys of each of strings (some with a TTL), hashes, lists, sets, sorted sets and
    /// (every 10th) streams, spread over every slot.
    pub fn load_across_slots(&self, n: usize) {
        for i in 0..n {
            let i = i.to_string();
            self.write(&["SET", &format!("str:{i}"), &format!("value-{i}")]);
            if i.ends_with('7') {
                self.write(&["PEXPIRE", &format!("str:{i}"), "86400000"]);
            }
            self.write(&["HSET", &format!("hash:{i}"), "a", &i, "b", "2"]);
            self.write(&["RPUSH", &format!("list:{i}"), "x", &i, "z"]);
            self.write(&["SADD", &format!("set:{i}"), "m1", &i]);
            // Scores each server version prints differently into its listpack (d2string).
            self.write(&[
                "ZADD",
                &format!("zset:{i}"),
                "1.5",
                "a",
                &i,
                "b",
                "0.1",
                "c",
                "1e17",
                "d",
            ]);
            if i.ends_with('0') {
                self.write(&["XADD", &format!("stream:{i}"), "*", "f", &i]);
            }
        }
    }

    /// `CLUSTER FAILOVER` on a replica of shard `i`; waits until it is the primary, the old
    /// one its replica in sync, and the cluster ok everywhere. Returns the new primary.
    pub fn failover(&self, i: usize) -> &TestServer {
        let old = self.primary_index(i);
        let new = *self.groups[i]
            .iter()
            .find(|&&n| n != old)
            .expect("shard has a replica");
        self.nodes[new].must(&["CLUSTER", "FAILOVER"]);
        let promoted = wait_until(SETTLE, || {
            self.nodes[new].info("replication").contains("role:master")
        });
        assert!(
            promoted,
            "{}: {} not promoted",
            self.bin.name,
            self.nodes[new].addr()
        );
        let new_id = self.ids[new].clone();
        let (a, _) = self.ranges[i];
        self.settle("every node names the new primary", |n| {
            self.owner_seen_by(n, a).as_deref() == Some(new_id.as_str())
        })
        .expect("failover settles");
        self.wait_healthy().expect("healthy after failover");
        self.set_route(i, new);
        &self.nodes[new]
    }

    /// The node id `n` believes owns `slot`.
    pub fn owner_seen_by(&self, n: &TestServer, slot: u16) -> Option<String> {
        let t = s(&n.cmd_str(&["CLUSTER", "NODES"]).ok()?);
        t.lines().find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() >= 8 && line_slots(&f).iter().any(|&(a, b)| a <= slot && slot <= b))
                .then(|| f[0].to_string())
        })
    }

    /// Wait until a live node of shard `i` is its primary and the cluster is healthy again
    /// (after [`TestCluster::kill`] of its primary); returns it.
    pub fn wait_promoted(&self, i: usize) -> &TestServer {
        let promoted = wait_until(SETTLE, || {
            self.groups[i].iter().any(|&n| {
                !self.down[n] && self.nodes[n].info("replication").contains("role:master")
            })
        });
        assert!(
            promoted,
            "{}: no replica of shard {i} promoted",
            self.bin.name
        );
        self.wait_healthy().expect("healthy after promotion");
        let p = self.primary_index(i);
        self.set_route(i, p);
        &self.nodes[p]
    }

    /// Move `slot` from shard `from` to shard `to` the classic way: SETSLOT IMPORTING and
    /// MIGRATING, MIGRATE every key, SETSLOT NODE on every primary; waits until every node
    /// names the new owner.
    pub fn migrate_slot(&self, slot: u16, from: usize, to: usize) {
        let (f, t) = (self.primary_index(from), self.primary_index(to));
        let (fs, ts) = (&self.nodes[f], &self.nodes[t]);
        let sl = slot.to_string();
        ts.must(&["CLUSTER", "SETSLOT", &sl, "IMPORTING", &self.ids[f]]);
        fs.must(&["CLUSTER", "SETSLOT", &sl, "MIGRATING", &self.ids[t]]);
        let port = ts.port().to_string();
        loop {
            let keys = fs.must(&["CLUSTER", "GETKEYSINSLOT", &sl, "100"]);
            let keys: Vec<String> = keys.as_array().unwrap_or(&[]).iter().map(s).collect();
            if keys.is_empty() {
                break;
            }
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "10000", "KEYS"];
            args.extend(keys.iter().map(String::as_str));
            fs.must(&args);
        }
        let mut order = vec![t, f];
        order.extend(
            (0..self.groups.len())
                .map(|i| self.primary_index(i))
                .filter(|p| *p != t && *p != f),
        );
        for p in order {
            self.nodes[p].must(&["CLUSTER", "SETSLOT", &sl, "NODE", &self.ids[t]]);
        }
        let owner = self.ids[t].clone();
        self.settle("every node names the slot's new owner", |n| {
            self.owner_seen_by(n, slot).as_deref() == Some(owner.as_str())
        })
        .expect("migration settles");
        self.route.lock().unwrap()[slot as usize] = t;
    }

    /// Unassign slots `a..=b` on every node (an incomplete slot map).
    pub fn del_slots(&self, a: u16, b: u16) {
        let slots: Vec<String> = (a..=b).map(|x| x.to_string()).collect();
        let mut args = vec!["CLUSTER", "DELSLOTS"];
        args.extend(slots.iter().map(String::as_str));
        for n in self.alive() {
            n.must(&args);
        }
    }
}
