//! Where a Redis Cluster / Valkey Cluster / ElastiCache cluster-mode keyspace lives: its
//! shards (slot ranges, primary, replicas), asked of the cluster's own nodes, and which
//! node is a shard's primary now, asked again before each connection so a failover is
//! followed ([`ShardFollower`]).
//!
//! Owns the questions (`CLUSTER SHARDS`, or `CLUSTER NODES` where the server does not know
//! it: Redis 6.2) and the reading of the answers; nothing of the replication link. A leaf
//! over [`crate::replication::link::Link`] and [`crate::resp::Frame`], like
//! `replication/sentinel.rs`, with the same auth, TLS and timeout handling.
//!
//! It must never guess: no node answering is an error naming each one's failure, a shard
//! whose primary is marked failed is an error (the caller backs off and asks again), an
//! incomplete slot map is reported as such ([`Topology::missing_slots`]) and never a panic,
//! and every reply is hostile input: malformed answers are errors naming the node.

mod follow;
mod parse;
mod query;
mod slot;

use std::time::Duration;

pub use follow::ShardFollower;
pub use query::discover;
pub use slot::{key_slot, SLOTS};

use crate::replication::tls::TlsSettings;

/// How to ask: seed nodes (`host:port`), their auth and TLS, the connect/read timeout.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub seeds: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls: Option<TlsSettings>,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("no cluster seed configured")]
    NoSeeds,
    #[error("{node} is not a cluster node (it answered {answer:?}); drop `cluster = true`")]
    NotCluster { node: String, answer: String },
    #[error("no cluster node answered CLUSTER SHARDS or CLUSTER NODES: {errors}")]
    NoAnswer { errors: String },
    #[error("shard {shard}: no shard holds its nodes or its first slot any more")]
    ShardGone { shard: String },
    #[error("shard {shard}: its primary {node} ({address}) is marked failed")]
    PrimaryFailed {
        shard: String,
        node: String,
        address: String,
    },
}

/// One cluster node as the cluster announces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The 40-hex node id.
    pub id: String,
    /// `host:port` (an IPv6 host in brackets): the announced endpoint (else ip) and the
    /// TLS port when TLS is configured and the node has one, else the plain port.
    pub address: String,
    pub primary: bool,
    /// `CLUSTER SHARDS` health `online` (not `failed`, Valkey 9's `fail`, or a replica's
    /// `loading`); from `CLUSTER NODES`, none of the flags `fail`, `fail?`, `handshake`,
    /// `noaddr`; and an address known.
    pub healthy: bool,
}

/// A primary that holds slots, and its replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// `CLUSTER SHARDS`' "id" where the server gives one (Valkey 8+).
    pub shard_id: Option<String>,
    /// Inclusive ranges, sorted, merged.
    pub slots: Vec<(u16, u16)>,
    pub primary: Node,
    /// The shard's other nodes: its replicas and, where Valkey keeps one in the shard
    /// after a failover, a failed former primary (`primary: true`, not healthy).
    pub replicas: Vec<Node>,
}

impl Shard {
    /// A stable storage name from the slot ranges: `0-5460`, several ranges joined by `_`
    /// (`0-100_200-300`); a single slot is `7-7`.
    pub fn name(&self) -> String {
        ranges_name(&self.slots)
    }

    pub fn holds_slot(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
    }

    /// The ids of its primary and replicas.
    pub fn node_ids(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.primary.id.as_str()).chain(self.replicas.iter().map(|n| n.id.as_str()))
    }
}

pub(crate) fn ranges_name(slots: &[(u16, u16)]) -> String {
    slots
        .iter()
        .map(|(a, b)| format!("{a}-{b}"))
        .collect::<Vec<_>>()
        .join("_")
}

/// The shards of a cluster, as one node saw them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Topology {
    /// Sorted by first slot; primaries without slots are left out.
    pub shards: Vec<Shard>,
}

impl Topology {
    /// The slot ranges no shard holds (empty when the slot map is complete).
    pub fn missing_slots(&self) -> Vec<(u16, u16)> {
        let mut covered: Vec<(u16, u16)> = self
            .shards
            .iter()
            .flat_map(|s| s.slots.iter().copied())
            .collect();
        covered.sort_unstable();
        let mut missing = Vec::new();
        let mut next: u32 = 0; // the first slot not known covered
        for (a, b) in covered {
            if u32::from(a) > next {
                missing.push((next as u16, a - 1));
            }
            next = next.max(u32::from(b) + 1);
        }
        if next < u32::from(SLOTS) {
            missing.push((next as u16, SLOTS - 1));
        }
        missing
    }

    /// The shard that holds `slot`.
    pub fn shard_of_slot(&self, slot: u16) -> Option<&Shard> {
        self.shards.iter().find(|s| s.holds_slot(slot))
    }

    /// Every node address, primaries first (where to ask next time).
    pub fn addresses(&self) -> Vec<String> {
        let primaries = self.shards.iter().map(|s| s.primary.address.clone());
        let replicas = self
            .shards
            .iter()
            .flat_map(|s| s.replicas.iter().map(|n| n.address.clone()));
        primaries.chain(replicas).collect()
    }
}

/// Sort and merge inclusive ranges (overlapping or adjacent ones become one).
pub(crate) fn merge_ranges(mut v: Vec<(u16, u16)>) -> Vec<(u16, u16)> {
    v.sort_unstable();
    let mut out: Vec<(u16, u16)> = Vec::with_capacity(v.len());
    for (a, b) in v {
        match out.last_mut() {
            Some(last) if u32::from(a) <= u32::from(last.1) + 1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// `host:port` with an IPv6 host in brackets.
pub(crate) fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests;
