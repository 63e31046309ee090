//! Restoring into a Redis/Valkey Cluster: the target's primaries found from any node
//! (`crate::cluster::discover`, with the target URL's credentials and TLS), one connection
//! per primary, and the [`Router`] that sends each key to the primary of its slot
//! (`crate::cluster::key_slot`).
//!
//! Owns the target side's topology: whether a target is a cluster node, the slot → primary
//! table, and the check afterwards that the slot map did not move under the restore. It
//! must never route by a slot map with a hole (refused before anything is written: a key of
//! an unserved slot would have nowhere to go), and never follow a MOVED reply (the
//! pipeline stops on it, naming the key; see `sink`).

use std::time::Duration;

use super::conn::{Conn, TargetUrl};
use super::RestoreError;
use crate::cluster::{discover, key_slot, ClusterSettings, Topology, SLOTS};
use crate::replication::tls::TlsSettings;

/// Which target a key goes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Router {
    /// One server: every key to target 0.
    One,
    /// A cluster: the target of each slot (16384 entries).
    Slots(Vec<usize>),
}

impl Router {
    pub fn target_of(&self, key: &[u8]) -> usize {
        match self {
            Router::One => 0,
            Router::Slots(t) => t.get(usize::from(key_slot(key))).copied().unwrap_or(0),
        }
    }

    /// Every slot routed to one of `targets` targets.
    pub fn check(&self, targets: usize) -> Result<(), RestoreError> {
        let bad = match self {
            Router::One => targets != 1,
            Router::Slots(t) => t.len() != usize::from(SLOTS) || t.iter().any(|&i| i >= targets),
        };
        if bad {
            return Err(RestoreError::Source(format!(
                "slot routes do not match the {targets} targets"
            )));
        }
        Ok(())
    }
}

/// A cluster to restore into: its topology, a connection per primary (in the order of
/// `topology.shards`), the route of every slot.
pub struct ClusterTarget {
    pub topology: Topology,
    pub conns: Vec<Conn>,
    pub router: Router,
}

/// Whether the server behind `conn` runs with `cluster-enabled yes` (`INFO cluster`); a
/// server that refuses the question is taken for a plain one.
pub fn is_cluster(conn: &mut Conn) -> bool {
    conn.text(&[b"INFO", b"cluster"])
        .is_ok_and(|i| i.lines().any(|l| l.trim() == "cluster_enabled:1"))
}

fn settings(url: &TargetUrl, tls: Option<&TlsSettings>, timeout: Duration) -> ClusterSettings {
    ClusterSettings {
        seeds: vec![url.address.clone()],
        username: url.username.clone(),
        password: url.password.clone(),
        tls: url.tls.then(|| tls.cloned().unwrap_or_default()),
        timeout,
    }
}

/// `a-b,c-d` for messages.
fn ranges(v: &[(u16, u16)]) -> String {
    v.iter()
        .map(|(a, b)| format!("{a}-{b}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Discover the cluster `url` names a node of and connect to each of its primaries. A slot
/// map with a hole is refused here, before anything is written.
pub fn connect(
    url: &TargetUrl,
    tls: Option<&TlsSettings>,
    timeout: Duration,
) -> Result<ClusterTarget, RestoreError> {
    let topology = discover(&settings(url, tls, timeout))?;
    let missing = topology.missing_slots();
    if !missing.is_empty() {
        return Err(RestoreError::IncompleteSlots {
            seed: url.address.clone(),
            slots: ranges(&missing),
        });
    }
    let mut route = vec![0usize; usize::from(SLOTS)];
    let mut conns = Vec::with_capacity(topology.shards.len());
    for (i, shard) in topology.shards.iter().enumerate() {
        for &(a, b) in &shard.slots {
            for s in a..=b {
                route[usize::from(s)] = i;
            }
        }
        let node = TargetUrl {
            address: shard.primary.address.clone(),
            ..url.clone()
        };
        conns.push(Conn::connect(&node, tls, timeout)?);
    }
    Ok(ClusterTarget {
        topology,
        conns,
        router: Router::Slots(route),
    })
}

/// Ask the cluster again after the restore: one line per shard whose primary or slots are
/// not what the keys were routed by (empty: the same).
pub fn moved_since(
    url: &TargetUrl,
    tls: Option<&TlsSettings>,
    timeout: Duration,
    before: &Topology,
) -> Result<Vec<String>, RestoreError> {
    let now = discover(&settings(url, tls, timeout))?;
    let mut out = Vec::new();
    for s in &before.shards {
        let same = now
            .shards
            .iter()
            .any(|n| n.slots == s.slots && n.primary.address == s.primary.address);
        if !same {
            out.push(format!(
                "slots {} were restored into {}, which no longer serves exactly them: the target resharded or failed over during the restore",
                ranges(&s.slots),
                s.primary.address
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_go_to_the_target_of_their_slot() {
        let mut t = vec![0usize; usize::from(SLOTS)];
        // "foo" hashes to slot 12182, "{user1000}.following" and its tag to 3443.
        t[12182] = 2;
        t[3443] = 1;
        let r = Router::Slots(t);
        assert_eq!(r.target_of(b"foo"), 2);
        assert_eq!(r.target_of(b"{user1000}.following"), 1);
        assert_eq!(r.target_of(b"{user1000}.followers"), 1);
        assert!(r.check(3).is_ok());
        assert!(r.check(2).is_err(), "a route to target 2 of 2");
        assert!(Router::Slots(vec![0; 10]).check(1).is_err());
        assert!(Router::One.check(1).is_ok());
        assert!(Router::One.check(2).is_err());
    }
}
