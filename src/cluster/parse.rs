//! Reading the two answers a cluster node gives about its cluster: `CLUSTER SHARDS` (Redis
//! 7.0+, Valkey; RESP2 arrays of name/value pairs) and `CLUSTER NODES` (one text line per
//! node; Redis 6.2). Pure functions from a reply to a [`Topology`]; every malformed reply is
//! an `Err` with what was wrong, never a panic, and nothing is allocated from a length the
//! reply claims (the frames are already parsed under the link's limits).

use super::{join_host_port, merge_ranges, Node, Shard, Topology, SLOTS};
use crate::resp::Frame;

/// What was wrong with a reply.
pub(crate) type Malformed = String;

fn text(f: &Frame) -> Option<String> {
    match f {
        Frame::Bulk(Some(b)) | Frame::Simple(b) => String::from_utf8(b.clone()).ok(),
        _ => None,
    }
}

fn int(f: &Frame) -> Option<i64> {
    match f {
        Frame::Integer(i) => Some(*i),
        Frame::Bulk(Some(b)) | Frame::Simple(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn pairs<'a>(f: &'a Frame, what: &str) -> Result<Vec<(String, &'a Frame)>, Malformed> {
    let Frame::Array(Some(v)) = f else {
        return Err(format!("{what} is {f}, not an array"));
    };
    if v.len() % 2 != 0 {
        return Err(format!(
            "{what} has an odd number of elements ({})",
            v.len()
        ));
    }
    v.chunks_exact(2)
        .map(|kv| match text(&kv[0]) {
            Some(k) => Ok((k, &kv[1])),
            None => Err(format!("{what} has a field name that is {}", kv[0])),
        })
        .collect()
}

fn node_id(id: &str, what: &str) -> Result<String, Malformed> {
    if id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(format!(
            "{what}: node id {:?} is not 40 hex digits",
            trunc(id)
        ))
    }
}

fn trunc(s: &str) -> String {
    s.chars().take(48).collect()
}

fn slot(v: i64, what: &str) -> Result<u16, Malformed> {
    u16::try_from(v)
        .ok()
        .filter(|s| *s < SLOTS)
        .ok_or_else(|| format!("{what}: slot {v} is outside 0-{}", SLOTS - 1))
}

fn port(v: i64, what: &str) -> Result<u16, Malformed> {
    u16::try_from(v).map_err(|_| format!("{what}: port {v} is outside 0-65535"))
}

/// One node of a `CLUSTER SHARDS` shard, and whether it is the shard's primary.
fn shards_node(f: &Frame, tls: bool, what: &str) -> Result<Node, Malformed> {
    let (mut id, mut ip, mut endpoint, mut role, mut health) = (None, None, None, None, None);
    let (mut plain, mut tls_port) = (None, None);
    for (k, v) in pairs(f, what)? {
        let bad = || format!("{what}: {k} is {v}");
        match k.as_str() {
            "id" => id = Some(text(v).ok_or_else(bad)?),
            "ip" => ip = Some(text(v).ok_or_else(bad)?),
            "endpoint" => endpoint = Some(text(v).ok_or_else(bad)?),
            "role" => role = Some(text(v).ok_or_else(bad)?),
            "health" => health = Some(text(v).ok_or_else(bad)?),
            "port" => plain = Some(port(int(v).ok_or_else(bad)?, what)?),
            "tls-port" => tls_port = Some(port(int(v).ok_or_else(bad)?, what)?),
            _ => {}
        }
    }
    let id = node_id(&id.ok_or_else(|| format!("{what}: no id"))?, what)?;
    let primary = match role.as_deref() {
        Some("master" | "primary") => true,
        Some("replica" | "slave") => false,
        other => return Err(format!("{what}: node {id} has role {other:?}")),
    };
    // The endpoint is what the server tells clients to use; "?" or "" means it has none.
    let host = endpoint
        .filter(|e| !e.is_empty() && e != "?")
        .or(ip.filter(|i| !i.is_empty() && i != "?"));
    let port = match (tls, tls_port, plain) {
        (true, Some(p), _) if p != 0 => Some(p),
        (_, _, Some(p)) if p != 0 => Some(p),
        (_, Some(p), _) if p != 0 => Some(p),
        _ => None,
    };
    let address = match (host, port) {
        (Some(h), Some(p)) => join_host_port(&h, p),
        _ => String::new(),
    };
    let healthy = health.as_deref() == Some("online") && !address.is_empty();
    Ok(Node {
        id,
        address,
        primary,
        healthy,
    })
}

/// A `CLUSTER SHARDS` reply. `tls`: the caller connects with TLS (use `tls-port`).
pub(crate) fn shards(reply: &Frame, tls: bool) -> Result<Topology, Malformed> {
    let Frame::Array(Some(list)) = reply else {
        return Err(format!("CLUSTER SHARDS answered {reply}, not an array"));
    };
    let mut out = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let what = format!("shard {i}");
        let (mut slots, mut nodes, mut shard_id) = (Vec::new(), Vec::new(), None);
        for (k, v) in pairs(entry, &what)? {
            match k.as_str() {
                "slots" => {
                    let Frame::Array(Some(s)) = v else {
                        return Err(format!("{what}: slots is {v}"));
                    };
                    if s.len() % 2 != 0 {
                        return Err(format!("{what}: an odd number of slot bounds"));
                    }
                    for ab in s.chunks_exact(2) {
                        let bound = |f: &Frame| {
                            int(f).ok_or_else(|| format!("{what}: a slot bound is {f}"))
                        };
                        let (a, b) = (slot(bound(&ab[0])?, &what)?, slot(bound(&ab[1])?, &what)?);
                        if a > b {
                            return Err(format!("{what}: slot range {a}-{b} is reversed"));
                        }
                        slots.push((a, b));
                    }
                }
                "nodes" => {
                    let Frame::Array(Some(n)) = v else {
                        return Err(format!("{what}: nodes is {v}"));
                    };
                    for (j, node) in n.iter().enumerate() {
                        nodes.push(shards_node(node, tls, &format!("{what} node {j}"))?);
                    }
                }
                "id" => shard_id = Some(text(v).ok_or_else(|| format!("{what}: id is {v}"))?),
                _ => {}
            }
        }
        if slots.is_empty() {
            continue; // a primary without slots holds nothing to back up
        }
        let (mut primaries, mut replicas): (Vec<Node>, Vec<Node>) =
            nodes.into_iter().partition(|n| n.primary);
        // Valkey keeps a failed former primary in its shard (role master, health fail)
        // beside the promoted one: the one healthy primary is the shard's.
        if primaries.len() > 1 {
            let healthy = primaries.iter().filter(|n| n.healthy).count();
            if healthy != 1 {
                return Err(format!(
                    "{what}: {} primaries, {healthy} of them healthy",
                    primaries.len()
                ));
            }
            primaries.sort_by_key(|n| !n.healthy);
            replicas.extend(primaries.drain(1..));
        }
        let Some(primary) = primaries.pop() else {
            return Err(format!("{what}: holds slots but has no primary"));
        };
        out.push(Shard {
            shard_id,
            slots: merge_ranges(slots),
            primary,
            replicas,
        });
    }
    finish(out)
}

/// Sort by first slot; two shards claiming one slot is not a slot map.
fn finish(mut shards: Vec<Shard>) -> Result<Topology, Malformed> {
    shards.sort_by_key(|s| s.slots.first().copied());
    let mut all: Vec<(u16, u16, usize)> = shards
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.slots.iter().map(move |&(a, b)| (a, b, i)))
        .collect();
    all.sort_unstable();
    for w in all.windows(2) {
        if w[1].0 <= w[0].1 {
            return Err(format!(
                "slots {}-{} are claimed by two primaries ({} and {})",
                w[1].0, w[0].1, shards[w[0].2].primary.id, shards[w[1].2].primary.id
            ));
        }
    }
    Ok(Topology { shards })
}

/// One `CLUSTER NODES` line: the node, its primary's id (a replica), its slots.
type Line = (Node, Option<String>, Vec<(u16, u16)>);

/// A `CLUSTER NODES` reply (its text).
pub(crate) fn nodes(reply: &[u8]) -> Result<Topology, Malformed> {
    let text = std::str::from_utf8(reply).map_err(|_| "CLUSTER NODES is not UTF-8".to_string())?;
    let mut all: Vec<Line> = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let what = format!("CLUSTER NODES line {}", i + 1);
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.len() < 8 {
            return Err(format!("{what}: {} fields, not at least 8", f.len()));
        }
        let id = node_id(f[0], &what)?;
        // ip:port@cport[,hostname[,aux…]]; an IPv6 ip is not bracketed here.
        let hostport = f[1].split([',', '@']).next().unwrap_or("");
        let address = match hostport.rsplit_once(':') {
            Some((ip, p)) if !ip.is_empty() => {
                let p: u16 = p
                    .parse()
                    .map_err(|_| format!("{what}: address {:?}", trunc(f[1])))?;
                if p == 0 {
                    String::new()
                } else {
                    join_host_port(ip, p)
                }
            }
            Some(_) => String::new(),
            None => return Err(format!("{what}: address {:?}", trunc(f[1]))),
        };
        let flags: Vec<&str> = f[2].split(',').collect();
        let primary = flags.contains(&"master");
        let unhealthy = ["fail", "fail?", "handshake", "noaddr"];
        let healthy = !flags.iter().any(|fl| unhealthy.contains(fl)) && !address.is_empty();
        let master_of = match f[3] {
            "-" => None,
            m => Some(node_id(m, &what)?),
        };
        let mut slots = Vec::new();
        for s in &f[8..] {
            if s.starts_with('[') {
                continue; // [slot->-id] migrating, [slot-<-id] importing: not ownership
            }
            let bound = |b: &str| -> Result<u16, Malformed> {
                slot(
                    b.parse()
                        .map_err(|_| format!("{what}: slot {:?}", trunc(s)))?,
                    &what,
                )
            };
            let (a, b) = match s.split_once('-') {
                Some((a, b)) => (bound(a)?, bound(b)?),
                None => (bound(s)?, bound(s)?),
            };
            if a > b {
                return Err(format!("{what}: slot range {a}-{b} is reversed"));
            }
            slots.push((a, b));
        }
        let node = Node {
            id,
            address,
            primary,
            healthy,
        };
        all.push((node, master_of, slots));
    }
    let mut shards = Vec::new();
    for (node, _, slots) in all.iter().filter(|(n, _, s)| n.primary && !s.is_empty()) {
        let replicas = all
            .iter()
            .filter(|(r, m, _)| !r.primary && m.as_deref() == Some(node.id.as_str()))
            .map(|(r, _, _)| r.clone())
            .collect();
        shards.push(Shard {
            shard_id: None,
            slots: merge_ranges(slots.clone()),
            primary: node.clone(),
            replicas,
        });
    }
    finish(shards)
}
