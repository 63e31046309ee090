//! Stream comparison: entries, metadata, consumer groups, PELs and consumers, IDMP.

use std::collections::BTreeMap;

use replisnap::rdb::value::{ConsumerGroup, Stream, StreamId};

use crate::check::first_diff;
use crate::client::{array, bytes, int, is_nil};
use crate::support::Reply;
use crate::truth::{map, opt_int, parse_id, StreamTruth};

type Id = (u64, u64);

/// A stream entry: id and field/value pairs.
type Entry = (Id, Vec<(Vec<u8>, Vec<u8>)>);

fn id(s: &StreamId) -> Id {
    (s.ms, s.seq)
}

/// How far a time derived from an idle time may be from the file's (ms).
const SLACK_MS: i64 = 10_000;

fn name(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Bytes compared exactly, shown as (lossy) text.
#[derive(PartialEq)]
struct B(Vec<u8>);

impl std::fmt::Debug for B {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

pub fn check_stream(
    ours: &Stream,
    t: &StreamTruth,
    rdb_type: u8,
    asked_ms: i64,
    errs: &mut Vec<String>,
) {
    // Entries, in order.
    let server: Vec<Entry> = array(&t.xrange, "XRANGE")
        .iter()
        .map(|e| {
            let e = array(e, "XRANGE entry");
            let fv = array(&e[1], "XRANGE fields")
                .chunks(2)
                .map(|p| (bytes(&p[0], "field"), bytes(&p[1], "value")))
                .collect();
            (parse_id(&e[0], "XRANGE id"), fv)
        })
        .collect();
    let mine: Vec<Entry> = ours
        .entries
        .iter()
        .map(|e| (id(&e.id), e.fields.clone()))
        .collect();
    if let Some(d) = first_diff(&mine, &server) {
        errs.push(format!("entries: {d}"));
    }

    // XINFO STREAM.
    let info = map(&t.info, "XINFO STREAM");
    let length = int(info["length"], "length") as u64;
    if ours.length != length || ours.entries.len() as u64 != length {
        errs.push(format!(
            "length ours {} ({} entries) vs server {length}",
            ours.length,
            ours.entries.len()
        ));
    }
    let last = parse_id(info["last-generated-id"], "last-generated-id");
    if id(&ours.last_id) != last {
        errs.push(format!("last id ours {} vs server {last:?}", ours.last_id));
    }
    let v2 = rdb_type >= 19;
    let opt_id = |k: &str| info.get(k).map(|r| parse_id(r, k));
    match (opt_id("max-deleted-entry-id"), ours.max_deleted_id) {
        (Some(s), Some(o)) if s == id(&o) => {}
        (None, None) if !v2 => {}
        (s, o) => errs.push(format!("max-deleted-entry-id ours {o:?} vs server {s:?}")),
    }
    match (info.get("entries-added"), ours.entries_added) {
        (Some(s), Some(o)) if int(s, "entries-added") as u64 == o => {}
        (None, None) if !v2 => {}
        (s, o) => errs.push(format!("entries-added ours {o:?} vs server {s:?}")),
    }
    match (opt_id("recorded-first-entry-id"), ours.first_id) {
        (Some(s), Some(o)) if s == id(&o) => {}
        // 7.0 writes the first id but does not report it.
        (None, Some(_)) if v2 => {}
        (None, None) if !v2 => {}
        (s, o) => errs.push(format!(
            "recorded-first-entry-id ours {o:?} vs server {s:?}"
        )),
    }
    match (info.get("idmp-duration"), &ours.idmp) {
        (None, None) => {}
        (Some(_), Some(m)) => {
            let producers = m.producers.len() as i64;
            let iids: i64 = m.producers.iter().map(|p| p.entries.len() as i64).sum();
            for (k, o) in [
                ("idmp-duration", m.duration_s as i64),
                ("idmp-maxsize", m.max_entries as i64),
                ("pids-tracked", producers),
                ("iids-tracked", iids),
                ("iids-added", m.iids_added as i64),
                ("iids-duplicates", m.iids_duplicates as i64),
            ] {
                let s = info.get(k).map(|r| int(r, k));
                if s != Some(o) {
                    errs.push(format!("{k} ours {o} vs server {s:?}"));
                }
            }
        }
        (s, o) => errs.push(format!("idmp ours {o:?} vs server idmp-duration {s:?}")),
    }

    // Groups.
    let groups: BTreeMap<&[u8], &ConsumerGroup> =
        ours.groups.iter().map(|g| (g.name.as_slice(), g)).collect();
    let server_groups = array(&t.groups, "XINFO GROUPS");
    let names: Vec<Vec<u8>> = server_groups
        .iter()
        .map(|g| bytes(map(g, "group")["name"], "name"))
        .collect();
    let mut our_names: Vec<Vec<u8>> = ours.groups.iter().map(|g| g.name.clone()).collect();
    our_names.sort();
    if our_names != names || groups.len() != ours.groups.len() {
        errs.push(format!(
            "groups ours {:?} vs server {:?}",
            our_names.iter().map(|n| name(n)).collect::<Vec<_>>(),
            names.iter().map(|n| name(n)).collect::<Vec<_>>()
        ));
        return;
    }
    for g in server_groups {
        let gm = map(g, "XINFO GROUPS entry");
        let gname = bytes(gm["name"], "name");
        let ctx = format!("group {}", name(&gname));
        let og = groups[gname.as_slice()];
        let consumers = int(gm["consumers"], "consumers") as usize;
        let pending = int(gm["pending"], "pending") as usize;
        if og.consumers.len() != consumers || og.pending.len() != pending {
            errs.push(format!(
                "{ctx}: consumers/pending ours {}/{} vs server {consumers}/{pending}",
                og.consumers.len(),
                og.pending.len()
            ));
        }
        let last = parse_id(gm["last-delivered-id"], "last-delivered-id");
        if id(&og.last_id) != last {
            errs.push(format!(
                "{ctx}: last id ours {} vs server {last:?}",
                og.last_id
            ));
        }
        match (gm.get("entries-read"), og.entries_read) {
            (Some(r), Some(o)) if opt_int(Some(r)).unwrap_or(-1) == o => {}
            (None, None) if !v2 => {}
            (s, o) => errs.push(format!("{ctx}: entries-read ours {o:?} vs server {s:?}")),
        }
        if og.unowned.as_ref().is_some_and(|u| !u.is_empty()) {
            errs.push(format!("{ctx}: unowned PEL ids {:?}", og.unowned));
        }
        check_pel(
            og,
            &t.pending[&gname],
            &t.consumers[&gname],
            asked_ms,
            &ctx,
            errs,
        );
    }
    check_full(ours, &t.full, errs);
}

/// Owner of each pending id, from the consumers' lists.
fn owners(g: &ConsumerGroup) -> BTreeMap<Id, Vec<u8>> {
    let mut m = BTreeMap::new();
    for c in &g.consumers {
        for p in &c.pending {
            m.insert(id(p), c.name.clone());
        }
    }
    m
}

/// XPENDING and XINFO CONSUMERS (idle times are relative, so compared with slack).
fn check_pel(
    g: &ConsumerGroup,
    xpending: &Reply,
    xconsumers: &Reply,
    asked_ms: i64,
    ctx: &str,
    errs: &mut Vec<String>,
) {
    let own = owners(g);
    let owned: usize = g.consumers.iter().map(|c| c.pending.len()).sum();
    if owned != own.len() || own.len() != g.pending.len() {
        errs.push(format!(
            "{ctx}: {} PEL entries, {owned} consumer-owned ids ({} distinct)",
            g.pending.len(),
            own.len()
        ));
    }
    let mine: Vec<(Id, B, u64)> = g
        .pending
        .iter()
        .map(|p| {
            let o = own.get(&id(&p.id)).cloned().unwrap_or_default();
            (id(&p.id), B(o), p.delivery_count)
        })
        .collect();
    let rows = array(xpending, "XPENDING");
    let server: Vec<(Id, B, u64)> = rows
        .iter()
        .map(|r| {
            let r = array(r, "XPENDING row");
            (
                parse_id(&r[0], "XPENDING id"),
                B(bytes(&r[1], "XPENDING consumer")),
                int(&r[3], "XPENDING count") as u64,
            )
        })
        .collect();
    if let Some(d) = first_diff(&mine, &server) {
        errs.push(format!("{ctx}: XPENDING (id, consumer, count): {d}"));
    } else {
        for (p, r) in g.pending.iter().zip(rows) {
            let idle = int(&array(r, "XPENDING row")[2], "idle");
            let derived = asked_ms - idle;
            if (derived - p.delivery_time_ms).abs() > SLACK_MS {
                errs.push(format!(
                    "{ctx}: pending {} delivery time ours {} vs server ≈{derived}",
                    p.id, p.delivery_time_ms
                ));
            }
        }
    }
    let server: Vec<(B, usize)> = array(xconsumers, "XINFO CONSUMERS")
        .iter()
        .map(|c| {
            let m = map(c, "consumer");
            (
                B(bytes(m["name"], "name")),
                int(m["pending"], "pending") as usize,
            )
        })
        .collect();
    let mine: Vec<(B, usize)> = g
        .consumers
        .iter()
        .map(|c| (B(c.name.clone()), c.pending.len()))
        .collect();
    if let Some(d) = first_diff(&mine, &server) {
        errs.push(format!("{ctx}: XINFO CONSUMERS (name, pending): {d}"));
        return;
    }
    for (c, r) in g.consumers.iter().zip(array(xconsumers, "XINFO CONSUMERS")) {
        let m = map(r, "consumer");
        let seen = asked_ms - int(m["idle"], "idle");
        if (seen - c.seen_time_ms).abs() > SLACK_MS {
            errs.push(format!(
                "{ctx}: consumer {} seen time ours {} vs server ≈{seen}",
                name(&c.name),
                c.seen_time_ms
            ));
        }
        let inactive = m.get("inactive").map(|r| int(r, "inactive"));
        match (inactive, c.active_time_ms) {
            (None, None) => {}
            (Some(-1), Some(-1)) => {}
            (Some(i), Some(a)) if i >= 0 && (asked_ms - i - a).abs() <= SLACK_MS => {}
            (s, o) => errs.push(format!(
                "{ctx}: consumer {} active time ours {o:?} vs server inactive {s:?}",
                name(&c.name)
            )),
        }
    }
}

/// XINFO STREAM FULL: exact delivery, seen and active times.
fn check_full(ours: &Stream, full: &Reply, errs: &mut Vec<String>) {
    let fm = map(full, "XINFO STREAM FULL");
    for g in array(fm["groups"], "FULL groups") {
        let gm = map(g, "FULL group");
        let gname = bytes(gm["name"], "name");
        let Some(og) = ours.groups.iter().find(|x| x.name == gname) else {
            continue; // reported above
        };
        let ctx = format!("group {} (FULL)", name(&gname));
        let own = owners(og);
        let mine: Vec<(Id, B, i64, u64)> = og
            .pending
            .iter()
            .map(|p| {
                let o = own.get(&id(&p.id)).cloned().unwrap_or_default();
                (id(&p.id), B(o), p.delivery_time_ms, p.delivery_count)
            })
            .collect();
        let server: Vec<(Id, B, i64, u64)> = array(gm["pending"], "FULL pending")
            .iter()
            .map(|r| {
                let r = array(r, "FULL pending row");
                (
                    parse_id(&r[0], "id"),
                    B(bytes(&r[1], "consumer")),
                    int(&r[2], "delivery time"),
                    int(&r[3], "count") as u64,
                )
            })
            .collect();
        if let Some(d) = first_diff(&mine, &server) {
            errs.push(format!("{ctx}: PEL (id, consumer, time, count): {d}"));
        }
        type Row = (B, i64, Option<i64>, Vec<(Id, i64, u64)>);
        let server: Vec<Row> = array(gm["consumers"], "FULL consumers")
            .iter()
            .map(|c| {
                let m = map(c, "FULL consumer");
                let pel = array(m["pending"], "FULL consumer pending")
                    .iter()
                    .map(|r| {
                        let r = array(r, "row");
                        (
                            parse_id(&r[0], "id"),
                            int(&r[1], "time"),
                            int(&r[2], "count") as u64,
                        )
                    })
                    .collect();
                let active = m.get("active-time").filter(|r| !is_nil(r));
                (
                    B(bytes(m["name"], "name")),
                    int(m["seen-time"], "seen-time"),
                    active.map(|r| int(r, "active-time")),
                    pel,
                )
            })
            .collect();
        let pel_of = |pid: &StreamId| {
            og.pending
                .iter()
                .find(|p| p.id == *pid)
                .map(|p| (id(pid), p.delivery_time_ms, p.delivery_count))
                .unwrap_or((id(pid), -1, 0))
        };
        let mine: Vec<Row> = og
            .consumers
            .iter()
            .map(|c| {
                (
                    B(c.name.clone()),
                    c.seen_time_ms,
                    c.active_time_ms,
                    c.pending.iter().map(pel_of).collect(),
                )
            })
            .collect();
        if let Some(d) = first_diff(&mine, &server) {
            errs.push(format!("{ctx}: consumers (name, seen, active, pel): {d}"));
        }
    }
}
