//! Asking cluster nodes for the topology: connect (TLS and AUTH as configured, the
//! configured timeout for connect and every read), `CLUSTER SHARDS`, and `CLUSTER NODES`
//! when the server does not know `SHARDS` (Redis 6.2). Seeds are asked in turn, then the
//! nodes learnt before; the first readable answer naming a shard wins (an answer with no
//! shard at all only when no node gives another). A node with cluster support
//! disabled ends the search: the configuration is wrong, not the node.

use super::parse;
use super::{ClusterError, ClusterSettings, Topology};
use crate::replication::link::Link;
use crate::resp::Frame;

/// Why one node gave no topology.
enum AskError {
    /// It is not a cluster node (its error text).
    NotCluster(String),
    Other(String),
}

fn err_text(e: &[u8]) -> String {
    String::from_utf8_lossy(&e[..e.len().min(200)]).into_owned()
}

fn is_not_cluster(e: &str) -> bool {
    e.to_ascii_lowercase().contains("cluster support disabled")
}

fn ask(addr: &str, s: &ClusterSettings) -> Result<Topology, AskError> {
    let other = |e: &dyn std::fmt::Display| AskError::Other(e.to_string());
    let mut link = Link::connect(addr, s.timeout, s.tls.as_ref()).map_err(|e| other(&e))?;
    link.set_read_timeout(s.timeout).map_err(|e| other(&e))?;
    if let Some(p) = &s.password {
        match &s.username {
            Some(u) => link.send(&[b"AUTH", u.as_bytes(), p.as_bytes()]),
            None => link.send(&[b"AUTH", p.as_bytes()]),
        }
        .map_err(|e| other(&e))?;
        if let Frame::Error(e) = link.read_frame().map_err(|e| other(&e))? {
            return Err(AskError::Other(format!("AUTH: {}", err_text(&e))));
        }
    }
    link.send(&[b"CLUSTER", b"SHARDS"]).map_err(|e| other(&e))?;
    match link.read_frame().map_err(|e| other(&e))? {
        Frame::Error(e) => {
            let e = err_text(&e);
            if is_not_cluster(&e) {
                return Err(AskError::NotCluster(e));
            }
            let lower = e.to_ascii_lowercase();
            if !lower.contains("unknown subcommand") && !lower.contains("unknown command") {
                return Err(AskError::Other(format!("CLUSTER SHARDS: {e}")));
            }
        }
        reply => {
            return parse::shards(&reply, s.tls.is_some())
                .map_err(|m| AskError::Other(format!("CLUSTER SHARDS: {m}")))
        }
    }
    // Redis 6.2: no CLUSTER SHARDS.
    link.send(&[b"CLUSTER", b"NODES"]).map_err(|e| other(&e))?;
    match link.read_frame().map_err(|e| other(&e))? {
        Frame::Bulk(Some(text)) | Frame::Simple(text) => {
            parse::nodes(&text).map_err(|m| AskError::Other(format!("CLUSTER NODES: {m}")))
        }
        Frame::Error(e) if is_not_cluster(&err_text(&e)) => Err(AskError::NotCluster(err_text(&e))),
        Frame::Error(e) => Err(AskError::Other(format!("CLUSTER NODES: {}", err_text(&e)))),
        other => Err(AskError::Other(format!("CLUSTER NODES answered {other}"))),
    }
}

/// The cluster's shards, from the first seed that answers.
pub fn discover(s: &ClusterSettings) -> Result<Topology, ClusterError> {
    discover_from(s, &[], &[])
}

/// `first`, then the seeds, then `learnt` (nodes of an earlier answer), each address once.
pub(crate) fn discover_from(
    s: &ClusterSettings,
    first: &[String],
    learnt: &[String],
) -> Result<Topology, ClusterError> {
    if s.seeds.is_empty() && learnt.is_empty() && first.is_empty() {
        return Err(ClusterError::NoSeeds);
    }
    let mut errors = Vec::new();
    let mut asked: Vec<&str> = Vec::new();
    // A node that knows no slot-holding shard (new, or cut off) is not the last word.
    let mut empty = None;
    for addr in first.iter().chain(&s.seeds).chain(learnt) {
        if addr.is_empty() || asked.iter().any(|a| a.eq_ignore_ascii_case(addr)) {
            continue;
        }
        asked.push(addr);
        match ask(addr, s) {
            Ok(t) if t.shards.is_empty() => {
                errors.push(format!("{addr}: knows no shard holding slots"));
                empty.get_or_insert(t);
            }
            Ok(t) => return Ok(t),
            Err(AskError::NotCluster(answer)) => {
                return Err(ClusterError::NotCluster {
                    node: addr.clone(),
                    answer,
                })
            }
            Err(AskError::Other(e)) => errors.push(format!("{addr}: {e}")),
        }
    }
    empty.ok_or_else(|| ClusterError::NoAnswer {
        errors: errors.join("; "),
    })
}
