//! The writer side of one target's pipeline: commands gathered into batches, handed to
//! the I/O thread ([`io_loop`]) that writes up to [`IN_FLIGHT`] of them ahead of their
//! replies, and the refusals coming back counted once per key.
//!
//! Owns the batches, the database the connection has selected, and what a refusal costs.
//! It must never count a key twice, never let `keep_going` pass over a key the target
//! redirected (MOVED/ASK: the slot is served elsewhere, the key would be lost silently),
//! and never count a key of a refused group of strings as failed without trying it alone:
//! an `MSETNX` is refused whole (one key exists, or one is denied), so its keys are sent
//! again one by one and only those the target refuses then are counted, each by name.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, Sender, SyncSender, TryRecvError};

use super::conn::{Batch, Conn, ConnError, Name, Refused};
use super::{RestoreError, RestoreOptions, RestoreSummary};
use crate::resp::{parse_frame, Frame, Parsed};

/// Bytes per batch at most, whatever the command count says.
const BATCH_BYTES: usize = 8 << 20;
/// Batches written before their replies are read.
pub(crate) const IN_FLIGHT: usize = 2;

/// A group of strings sent as one command: its name, and its key/value pairs
/// RESP-encoded.
type Group = (Name, Vec<u8>);

pub(super) struct Pipeline<'o> {
    pub opts: &'o RestoreOptions,
    batch: Batch,
    max_cmds: usize,
    tx: Option<SyncSender<Batch>>,
    rx: Receiver<Result<Vec<Refused>, ConnError>>,
    last_failed: Option<Name>,
    pub dispatched: usize,
    answered: usize,
    /// The database the commands queued so far leave selected.
    pub db: Option<u64>,
    /// The groups of the batch being filled, and of each batch written and not answered.
    groups: Vec<Group>,
    groups_sent: VecDeque<Vec<Group>>,
}

impl<'o> Pipeline<'o> {
    pub fn new(
        opts: &'o RestoreOptions,
        tx: SyncSender<Batch>,
        rx: Receiver<Result<Vec<Refused>, ConnError>>,
    ) -> Self {
        Pipeline {
            opts,
            batch: Batch::default(),
            max_cmds: opts.batch.max(1),
            tx: Some(tx),
            rx,
            last_failed: None,
            dispatched: 0,
            answered: 0,
            db: None,
            groups: Vec::new(),
            groups_sent: VecDeque::new(),
        }
    }

    pub fn push(
        &mut self,
        s: &mut RestoreSummary,
        args: &[&[u8]],
        name: Option<Name>,
    ) -> Result<(), RestoreError> {
        self.batch.push(args, name);
        self.maybe_dispatch(s)
    }

    /// `SELECT db` unless it is selected already.
    pub fn select(&mut self, s: &mut RestoreSummary, db: u64) -> Result<(), RestoreError> {
        if self.db != Some(db) {
            let d = db.to_string();
            self.push(s, &[b"SELECT", d.as_bytes()], None)?;
            self.db = Some(db);
        }
        Ok(())
    }

    /// A group of strings: `head` (`MSETNX` or `MSET`) and `name.group` key/value pairs
    /// RESP-encoded in `tail`, in the database selected.
    pub fn push_group(
        &mut self,
        s: &mut RestoreSummary,
        head: &[u8],
        tail: &[u8],
        name: Name,
    ) -> Result<(), RestoreError> {
        let args = 2 * name.group as usize;
        self.batch
            .push_encoded(&[head], tail, args, Some(name.clone()));
        self.groups.push((name, tail.to_vec()));
        self.maybe_dispatch(s)
    }

    fn maybe_dispatch(&mut self, s: &mut RestoreSummary) -> Result<(), RestoreError> {
        if self.batch.names.len() >= self.max_cmds || self.batch.bytes.len() >= BATCH_BYTES {
            self.dispatch(s)?;
        }
        Ok(())
    }

    /// Hand the batch to the I/O thread; whether it took it.
    fn send(&mut self) -> bool {
        let b = std::mem::take(&mut self.batch);
        let groups = std::mem::take(&mut self.groups);
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(b).is_ok());
        if sent {
            self.dispatched += 1;
            self.groups_sent.push_back(groups);
        }
        sent
    }

    fn dispatch(&mut self, s: &mut RestoreSummary) -> Result<(), RestoreError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        if !self.send() {
            // The I/O thread stopped: its error is waiting.
            return self.wait_all(s);
        }
        while let Ok(r) = self.rx.try_recv() {
            self.answered += 1;
            self.count(s, r)?;
        }
        Ok(())
    }

    /// One batch's replies: refused groups queued again key by key, other refusals
    /// counted (and the restore stopped, unless `keep_going`).
    fn count(
        &mut self,
        s: &mut RestoreSummary,
        r: Result<Vec<Refused>, ConnError>,
    ) -> Result<(), RestoreError> {
        let groups = self.groups_sent.pop_front().unwrap_or_default();
        for Refused { name, error } in r? {
            if name.group > 0 {
                if let Some((_, tail)) = groups.iter().find(|(n, _)| *n == name) {
                    self.one_by_one(name.db, tail);
                    continue;
                }
            }
            if self.last_failed.as_ref() != Some(&name) {
                let keys = u64::from(name.group.max(1));
                s.keys_failed += keys;
                s.keys_restored -= keys;
            }
            let key = crate::rdb::error::escape_key(&name.key);
            if error.starts_with("MOVED ") || error.starts_with("ASK ") {
                // The slot is served elsewhere now: never counted away by keep_going.
                return Err(RestoreError::Moved {
                    db: name.db,
                    key,
                    what: error,
                });
            }
            if !self.opts.keep_going {
                return Err(RestoreError::Key {
                    db: name.db,
                    key,
                    what: error,
                });
            }
            eprintln!("warning: key {key} (db {}): {error}", name.db);
            self.last_failed = Some(name);
        }
        Ok(())
    }

    /// Queue the strings of a refused group (of database `db`) one `SET` each, so the
    /// target's refusal names each key it refuses.
    fn one_by_one(&mut self, db: u64, tail: &[u8]) {
        let back = self.db.filter(|&d| d != db);
        if back.is_some() {
            self.batch
                .push(&[b"SELECT", db.to_string().as_bytes()], None);
        }
        let replace = self.opts.replace || self.opts.flush;
        let parts = bulks(tail);
        for kv in parts.chunks_exact(2) {
            let name = Name {
                db,
                key: kv[0].to_vec(),
                group: 0,
            };
            let mut args: Vec<&[u8]> = vec![b"SET", &kv[0], &kv[1]];
            if !replace {
                args.push(b"NX");
            }
            self.batch.push(&args, Some(name));
        }
        if let Some(d) = back {
            self.batch
                .push(&[b"SELECT", d.to_string().as_bytes()], None);
        }
    }

    /// Send what is left and wait for every reply (and for the strings of refused groups,
    /// sent again).
    pub fn wait_all(&mut self, s: &mut RestoreSummary) -> Result<(), RestoreError> {
        loop {
            if !self.batch.is_empty() && !self.send() {
                self.groups.clear();
            }
            if self.answered >= self.dispatched {
                break;
            }
            let Ok(r) = self.rx.recv() else { break };
            self.answered += 1;
            self.count(s, r)?;
        }
        self.tx = None;
        // An I/O error after the last batch it took.
        if let Ok(r) = self.rx.try_recv() {
            self.count(s, r)?;
        }
        Ok(())
    }
}

/// The bulk strings of a RESP-encoded run of them (`$3\r\nabc\r\n…`), as this side wrote
/// them, read by the crate's RESP parser; reading stops at anything else.
fn bulks(mut b: &[u8]) -> Vec<Vec<u8>> {
    let limits = crate::resp::Limits::default();
    let mut out = Vec::new();
    while let Ok(Parsed::Done(Frame::Bulk(Some(v)), n)) = parse_frame(b, &limits) {
        out.push(v);
        b = b.get(n..).unwrap_or_default();
    }
    out
}

/// The I/O thread: writes up to [`IN_FLIGHT`] batches ahead of their replies, so the
/// target never waits for the next batch while this side reads the last one's replies.
pub(crate) fn io_loop(
    conn: &mut Conn,
    rx: Receiver<Batch>,
    tx: Sender<Result<Vec<Refused>, ConnError>>,
) {
    let mut inflight: VecDeque<Vec<Option<Name>>> = VecDeque::new();
    let mut open = true;
    loop {
        while open && inflight.len() < IN_FLIGHT {
            let b = if inflight.is_empty() {
                match rx.recv() {
                    Ok(b) => b,
                    Err(_) => {
                        open = false;
                        break;
                    }
                }
            } else {
                match rx.try_recv() {
                    Ok(b) => b,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            };
            if let Err(e) = conn.write_batch(&b) {
                let _ = tx.send(Err(e));
                return;
            }
            inflight.push_back(b.names);
        }
        let Some(names) = inflight.pop_front() else {
            return;
        };
        let r = conn.read_replies(names);
        let failed = r.is_err();
        if tx.send(r).is_err() || failed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulks_read_back_what_was_encoded() {
        let mut b = Vec::new();
        for a in [&b"k1"[..], b"", b"v\r\n1", b"0123456789"] {
            super::super::conn::encode_bulk(a, &mut b);
        }
        let got = bulks(&b);
        assert_eq!(got, vec![&b"k1"[..], b"", b"v\r\n1", b"0123456789"]);
        // A cut run gives what is whole.
        assert_eq!(bulks(&b[..b.len() - 3]).len(), 3);
    }
}
