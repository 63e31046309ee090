//! Following one shard across failovers and resharding: before each connection the replica
//! asks [`ShardFollower::primary`], which discovers the topology again and finds the shard
//! by the node ids it has known for it (primary and replicas, growing as members join),
//! else by the first slot it held at discovery.
//!
//! The shard's own nodes are asked first, its last primary first: a primary demoted by a
//! failover knows it before it drops its replicas (that drop is our reconnect), while
//! another node may not have heard the news yet and would send us to the demoted node.
//!
//! It must never hand out a primary the cluster marks failed (the replica backs off and
//! asks again) nor a node of another shard while one of this shard's nodes still holds
//! slots.

use std::sync::Mutex;

use super::query::discover_from;
use super::{ClusterError, ClusterSettings, Shard, Topology};

#[derive(Debug)]
struct Known {
    /// Every node id seen in this shard.
    ids: Vec<String>,
    /// The shard's node addresses in the last answer, primary first: asked first.
    members: Vec<String>,
    /// Every node address of the last answer: asked after the seeds.
    learnt: Vec<String>,
}

/// One shard's identity (its node ids and first slot at discovery) and how to ask.
#[derive(Debug)]
pub struct ShardFollower {
    settings: ClusterSettings,
    /// The shard's name at discovery (for errors).
    name: String,
    first_slot: u16,
    known: Mutex<Known>,
}

impl ShardFollower {
    pub fn new(settings: ClusterSettings, shard: &Shard) -> Self {
        ShardFollower {
            settings,
            name: shard.name(),
            first_slot: shard.slots.first().map_or(0, |r| r.0),
            known: Mutex::new(Known {
                ids: shard.node_ids().map(str::to_string).collect(),
                members: members(shard),
                learnt: Vec::new(),
            }),
        }
    }

    /// The shard's name at discovery.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The shard as the cluster describes it now.
    pub fn shard(&self) -> Result<Shard, ClusterError> {
        let (first, learnt) = {
            let k = self.lock();
            (k.members.clone(), k.learnt.clone())
        };
        let topology = discover_from(&self.settings, &first, &learnt)?;
        let mut known = self.lock();
        let shard = pick(&topology, &known.ids, self.first_slot)
            .ok_or_else(|| ClusterError::ShardGone {
                shard: self.name.clone(),
            })?
            .clone();
        for id in shard.node_ids() {
            if !known.ids.iter().any(|k| k == id) {
                known.ids.push(id.to_string());
            }
        }
        known.members = members(&shard);
        let addresses = topology.addresses();
        if !addresses.is_empty() {
            known.learnt = addresses;
        }
        Ok(shard)
    }

    /// The `host:port` of the shard's current primary.
    pub fn primary(&self) -> Result<String, ClusterError> {
        let shard = self.shard()?;
        if !shard.primary.healthy {
            return Err(ClusterError::PrimaryFailed {
                shard: self.name.clone(),
                node: shard.primary.id,
                address: shard.primary.address,
            });
        }
        Ok(shard.primary.address)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The shard's node addresses in the order to ask them: healthy nodes first (the primary
/// first among them), so a dead former primary costs a connect attempt only after the
/// others were asked.
fn members(shard: &Shard) -> Vec<String> {
    let mut nodes: Vec<&super::Node> = std::iter::once(&shard.primary)
        .chain(&shard.replicas)
        .filter(|n| !n.address.is_empty())
        .collect();
    nodes.sort_by_key(|n| !n.healthy); // stable: the primary stays first among equals
    nodes.into_iter().map(|n| n.address.clone()).collect()
}

/// The shard holding one of `ids` (the one holding the most of them), else the one that
/// holds `first_slot`.
fn pick<'a>(t: &'a Topology, ids: &[String], first_slot: u16) -> Option<&'a Shard> {
    t.shards
        .iter()
        .map(|s| {
            (
                s.node_ids()
                    .filter(|id| ids.iter().any(|k| k == id))
                    .count(),
                s,
            )
        })
        .filter(|(n, _)| *n > 0)
        .max_by_key(|(n, _)| *n)
        .map(|(_, s)| s)
        .or_else(|| t.shard_of_slot(first_slot))
}
