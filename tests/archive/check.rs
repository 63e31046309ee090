//! Reading a stored archive back for the tests: every segment fetched, decoded (which
//! checks its SHA-256 and offsets), checked contiguous, and its bytes parsed as commands.
#![allow(dead_code)]

use std::time::Duration;

use replisnap::archive::{self, segment, ArchiveListing, History};
use replisnap::resp::{parse_command, Limits, Parsed};
use replisnap::storage::Storage;

use crate::daemon::poll;
use crate::support::TestServer;

/// The master's `master_repl_offset`.
pub fn master_offset(m: &TestServer) -> i64 {
    m.info_field("replication", "master_repl_offset")
        .and_then(|v| v.parse().ok())
        .expect("master_repl_offset")
}

/// Wait until the newest history's end is the master's offset; the listing then.
pub fn wait_archived(s: &dyn Storage, m: &TestServer, timeout: Duration) -> ArchiveListing {
    let mut last = None;
    let ok = poll(timeout, || {
        let want = master_offset(m);
        let Ok(l) = archive::list(s) else {
            return false;
        };
        let end = l
            .histories
            .iter()
            .max_by_key(|h| h.last_time)
            .map(|h| h.end_offset);
        last = Some((want, end, l.histories.len()));
        end == Some(want)
    });
    assert!(
        ok,
        "archive never reached the master's offset: (master, end, histories) {last:?}"
    );
    archive::list(s).expect("list archive")
}

/// Every command of a history, in order, after checking each segment and their continuity
/// from the history's start offset (the number after the replid in its name).
pub fn commands(s: &dyn Storage, h: &History) -> Vec<Vec<Vec<u8>>> {
    let start: i64 = h
        .name
        .rsplit('-')
        .next()
        .unwrap()
        .parse()
        .expect("history offset");
    let mut next = start;
    let mut bytes = Vec::new();
    assert_eq!(
        h.first_offset, start,
        "history {} does not start at its own offset",
        h.name
    );
    for key in &h.keys {
        let data = s
            .get_object(key, 1 << 30)
            .expect("get")
            .expect("listed segment exists");
        let seg = segment::decode(&data, key).expect("segment decodes and its checksum matches");
        assert_eq!(seg.header.history, h.name);
        assert_eq!(seg.header.first_offset, next, "{key}: not contiguous");
        assert!(!seg.header.samples.is_empty(), "{key}: no time sample");
        next = seg.header.end_offset;
        bytes.extend_from_slice(&seg.bytes);
    }
    assert_eq!(next, h.end_offset);
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match parse_command(&bytes[at..], &Limits::default()).expect("RESP command") {
            Parsed::Done(argv, used) => {
                out.push(argv);
                at += used;
            }
            Parsed::Incomplete(_) => panic!("history {} ends inside a command at {at}", h.name),
        }
    }
    out
}

pub fn count(cmds: &[Vec<Vec<u8>>], name: &str) -> usize {
    cmds.iter()
        .filter(|c| c[0].eq_ignore_ascii_case(name.as_bytes()))
        .count()
}

/// Every MULTI is followed by its commands and an EXEC, never by another MULTI first.
pub fn transactions_whole(cmds: &[Vec<Vec<u8>>]) {
    let mut open = false;
    for c in cmds {
        let n = c[0].to_ascii_uppercase();
        if n == b"MULTI" {
            assert!(!open, "MULTI inside MULTI");
            open = true;
        } else if n == b"EXEC" {
            assert!(open, "EXEC without MULTI");
            open = false;
        }
    }
    assert!(!open, "the archive ends inside a transaction");
}
