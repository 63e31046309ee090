//! The command stream after a sync: parse each command, count its bytes into the offset,
//! apply it, and keep the master informed with `REPLCONF ACK`.
//!
//! Owns offset accounting (every byte, PINGs and GETACKs included) and the ACK rules:
//! once a second, and at once on `REPLCONF GETACK` with the offset before that command,
//! as the server's replica does. A command arriving over many reads is parsed on from where
//! the last read stopped, never again from its start. It must never apply a command it
//! could not parse whole.
//!
//! A transaction (`MULTI` … `EXEC`) is queued and applied whole at `EXEC`, and the offset
//! stays before `MULTI` until then, as the server's replica keeps it: a link lost inside
//! one drops the queue, the partial resync sends the whole transaction again, and no
//! capture can ever see half of one.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::warn;

use super::link::{Link, LinkError};
use super::{ReplError, Replica};
use crate::commands;
use crate::resp::{self, CommandParser, Parsed};

/// The default for how long the master may stay silent before the link is considered dead
/// (the servers' default `repl-timeout`; masters PING every 10 s); `[source] timeout`
/// changes it.
pub const MASTER_TIMEOUT: Duration = Duration::from_secs(60);
const ACK_EVERY: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(50);

fn send_ack(link: &mut Link, offset: i64) -> Result<(), LinkError> {
    let off = offset.to_string();
    let mut out = Vec::new();
    resp::encode_command(&[b"REPLCONF", b"ACK", off.as_bytes()], &mut out);
    link.write_all(&out)?;
    Ok(())
}

/// A transaction being received: its commands (MULTI included) and their bytes (kept
/// only for the archive).
struct Queued {
    cmds: Vec<Vec<Vec<u8>>>,
    bytes: i64,
    raw: Vec<u8>,
}

fn is_getack(argv: &[Vec<u8>]) -> bool {
    argv.len() >= 2
        && argv[0].eq_ignore_ascii_case(b"REPLCONF")
        && argv[1].eq_ignore_ascii_case(b"GETACK")
}

impl Replica {
    /// Run the stream until the link fails, a command cannot be applied, or stop is asked.
    pub(super) fn stream(&mut self, link: &mut Link) -> Result<(), ReplError> {
        link.set_read_timeout(POLL)?;
        // `self.stream_state` carries over from the previous session on a partial resync.
        // The first ACK tells a diskless master to start streaming.
        send_ack(link, self.offset)?;
        let mut last_ack = Instant::now();
        let mut last_io = Instant::now();
        // Keeps a partly arrived command between reads: positions are relative to
        // `link.buffered()`, which reads only append to until the command is consumed.
        let mut parser = CommandParser::default();
        // Dropped with the link: a resync sends the transaction again from MULTI.
        let mut queued: Option<Queued> = None;
        loop {
            // Apply every complete command already buffered.
            loop {
                let parsed = match parser.parse(link.buffered(), &link.limits) {
                    // A command past the cap would drop every partial resync on the same
                    // bytes again: a full sync carries its effect instead.
                    Err(e @ resp::RespError::TooLarge { .. }) => {
                        warn!(error = %e, "command too large; forcing a full resync");
                        return Err(ReplError::Apply(e.to_string()));
                    }
                    r => r?,
                };
                let Parsed::Done(argv, used) = parsed else {
                    break;
                };
                if is_getack(&argv) {
                    send_ack(link, self.offset)?;
                    last_ack = Instant::now();
                }
                let is = |n: &[u8]| argv.first().is_some_and(|a| a.eq_ignore_ascii_case(n));
                if let Some(q) = queued.as_mut() {
                    q.bytes += used as i64;
                    if self.sink.is_some() {
                        q.raw
                            .extend_from_slice(link.buffered().get(..used).unwrap_or_default());
                    }
                    link.consume(used);
                    let exec = is(b"EXEC");
                    q.cmds.push(argv);
                    if !exec {
                        continue;
                    }
                    let q = queued.take().unwrap_or(Queued {
                        cmds: Vec::new(),
                        bytes: 0,
                        raw: Vec::new(),
                    });
                    for argv in &q.cmds {
                        self.apply_one(argv)?;
                    }
                    if let Some(s) = &self.sink {
                        s.applied(self.offset, &q.raw);
                    }
                    self.offset += q.bytes;
                    self.status.offset.store(self.offset, Ordering::Relaxed);
                    continue;
                }
                if is(b"MULTI") {
                    let raw = match self.sink {
                        Some(_) => link.buffered().get(..used).unwrap_or_default().to_vec(),
                        None => Vec::new(),
                    };
                    link.consume(used);
                    queued = Some(Queued {
                        cmds: vec![argv],
                        bytes: used as i64,
                        raw,
                    });
                    continue;
                }
                self.apply_one(&argv)?;
                // The command's bytes go to the archive once applied, straight from the
                // buffer, then leave it.
                if let Some(s) = &self.sink {
                    s.applied(self.offset, link.buffered().get(..used).unwrap_or_default());
                }
                link.consume(used);
                self.offset += used as i64;
                self.status.offset.store(self.offset, Ordering::Relaxed);
            }
            // The keyspace never holds part of a transaction (see `queued`).
            self.serve_controls()?;
            if self.stop.load(Ordering::Relaxed) {
                return Err(ReplError::Stopped);
            }
            if last_ack.elapsed() >= ACK_EVERY {
                send_ack(link, self.offset)?;
                last_ack = Instant::now();
                if let Ok(mut k) = self.status.keys_per_db.lock() {
                    *k = self.ks.db_counts();
                }
            }
            match link.fill() {
                Ok(_) => last_io = Instant::now(),
                Err(LinkError::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if last_io.elapsed() > self.master_timeout {
                        return Err(ReplError::Timeout);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub(super) fn apply_one(&mut self, argv: &[Vec<u8>]) -> Result<(), ReplError> {
        commands::apply(&mut self.ks, &mut self.stream_state, argv).map_err(|e| {
            warn!(command = %String::from_utf8_lossy(&argv[0]), error = %e, "cannot apply; forcing a full resync");
            ReplError::Apply(format!("{}: {e}", String::from_utf8_lossy(&argv[0])))
        })?;
        self.status.commands.count(&argv[0]);
        Ok(())
    }
}
