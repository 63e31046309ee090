//! A full sync on two connections: Valkey 8+'s dual-channel (`+DUALCHANNELSYNC`) and
//! Redis 8's rdb-channel (`+RDBCHANNELSYNC <id>`). The RDB comes on a second connection
//! (the "rdb channel") while the main one already carries the stream after the RDB's
//! offset; the master keeps no output buffer for us meanwhile, we do.
//!
//! Owns the rdb channel's handshake for both dialects, the stream buffered locally while
//! the RDB loads ([`Spool`]: in memory up to a limit, then in an unlinked file in
//! `state_dir`), and the replay of that buffer, in order, once the RDB has loaded.
//! Offsets are exact: the data is consistent at the rdb channel's offset after the load,
//! and every replayed byte is counted, a transaction only at its `EXEC` (as the stream
//! loop does); an unfinished transaction or command at the end of the buffer goes back
//! in front of the live link, where the stream loop parses it again from its start.
//!
//! It must never apply a buffered byte before the RDB has loaded whole, never drop or
//! reorder one, and never leave a buffer file behind (it is unlinked once created). A
//! failure of either connection is an ordinary link error: the session ends and the
//! replica reconnects.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::handshake::{self, HandshakeError, PsyncOutcome};
use super::link::{Link, LinkError};
use super::{ReplError, Replica};
use crate::resp::{self, CommandParser, Frame, Parsed};

/// The default for how much of the stream is held in memory during a dual-channel full
/// sync before the rest goes to a file.
pub const SPOOL_MEMORY: usize = 64 << 20;

/// How often the buffering thread looks at its stop flag.
const POLL: Duration = Duration::from_millis(50);

/// The `$ENDOFF` line is about 80 bytes.
const MAX_ENDOFF_LINE: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum DualError {
    #[error("rdb channel: {0}")]
    EndOff(String),
    #[error("rdb channel: {step}: master answered {reply}")]
    Refused { step: &'static str, reply: String },
    #[error("dual-channel stream buffer in {path}: {err}")]
    Spool { path: String, err: io::Error },
}

/// The stream received while the RDB loads: in memory up to `limit` bytes, then all of
/// it (what was in memory first) in a file that is unlinked at once.
pub struct Spool {
    mem: Vec<u8>,
    limit: usize,
    dir: PathBuf,
    file: Option<File>,
    total: u64,
    spilled: u64,
}

impl Spool {
    pub fn new(dir: &Path, limit: usize) -> Spool {
        Spool {
            mem: Vec::new(),
            limit,
            dir: dir.to_path_buf(),
            file: None,
            total: 0,
            spilled: 0,
        }
    }

    fn err(&self, err: io::Error) -> DualError {
        DualError::Spool {
            path: self.dir.display().to_string(),
            err,
        }
    }

    pub fn append(&mut self, b: &[u8]) -> Result<(), DualError> {
        self.total += b.len() as u64;
        if self.file.is_none() && self.mem.len() + b.len() <= self.limit {
            self.mem.extend_from_slice(b);
            return Ok(());
        }
        if self.file.is_none() {
            let path = self.dir.join(format!(
                "dual-channel-stream-{}-{}.tmp",
                std::process::id(),
                self.total
            ));
            let f = File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| self.err(e))?;
            // Unlinked at once: nothing is left behind, whatever happens next.
            std::fs::remove_file(&path).map_err(|e| self.err(e))?;
            let mut f = io::BufWriter::with_capacity(1 << 20, f);
            f.write_all(&self.mem).map_err(|e| self.err(e))?;
            self.spilled += self.mem.len() as u64;
            self.mem = Vec::new();
            let f = f.into_inner().map_err(|e| self.err(e.into_error()))?;
            self.file = Some(f);
        }
        let r = match self.file.as_mut() {
            Some(f) => f.write_all(b),
            None => Ok(()),
        };
        r.map_err(|e| self.err(e))?;
        self.spilled += b.len() as u64;
        Ok(())
    }

    /// Bytes received, and the part of them that went to the file.
    pub fn sizes(&self) -> (u64, u64) {
        (self.total, self.spilled)
    }

    /// Everything appended, in order.
    pub fn into_reader(self) -> Result<Box<dyn Read + Send>, DualError> {
        match self.file {
            None => Ok(Box::new(io::Cursor::new(self.mem))),
            Some(mut f) => {
                let dir = self.dir;
                f.seek(SeekFrom::Start(0)).map_err(|err| DualError::Spool {
                    path: dir.display().to_string(),
                    err,
                })?;
                Ok(Box::new(io::BufReader::with_capacity(1 << 20, f)))
            }
        }
    }
}

/// `$ENDOFF:<offset> <replid> <dbid> <client-id>`: what Valkey's rdb channel says before
/// the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndOff {
    pub offset: i64,
    pub replid: String,
    /// The database the stream after `offset` has selected; `None` when none is (-1).
    pub db: Option<u64>,
    pub client_id: u64,
}

/// A transaction read from the buffered stream: its commands, their bytes in the offset,
/// and the bytes themselves (for the archive), applied whole at EXEC.
#[derive(Default)]
struct Tx {
    cmds: Vec<Vec<Vec<u8>>>,
    bytes: i64,
    raw: Vec<u8>,
}

pub fn parse_endoff(line: &[u8]) -> Result<EndOff, DualError> {
    let shown = || String::from_utf8_lossy(line).into_owned();
    let bad = |what: &str| DualError::EndOff(format!("{what} in {:?}", shown()));
    let text = std::str::from_utf8(line).map_err(|_| bad("not text"))?;
    if text.starts_with('-') {
        return Err(DualError::Refused {
            step: "SYNC",
            reply: text.to_string(),
        });
    }
    let rest = text
        .strip_prefix("$ENDOFF:")
        .ok_or_else(|| bad("expected $ENDOFF:"))?;
    let mut parts = rest.split(' ');
    let (Some(off), Some(id), Some(db), Some(cid), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(bad("expected 4 fields"));
    };
    let offset = off
        .parse::<i64>()
        .ok()
        .filter(|o| *o >= 0)
        .ok_or_else(|| bad("bad offset"))?;
    if id.len() != 40 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("bad replication ID"));
    }
    let db = db.parse::<i64>().map_err(|_| bad("bad database"))?;
    let client_id = cid.parse::<u64>().map_err(|_| bad("bad client id"))?;
    Ok(EndOff {
        offset,
        replid: id.to_string(),
        db: u64::try_from(db).ok(),
        client_id,
    })
}

/// Read one line (after the keepalive newlines) of at most [`MAX_ENDOFF_LINE`] bytes.
fn read_line(link: &mut Link) -> Result<Vec<u8>, ReplError> {
    link.skip_keepalives()?;
    let end = loop {
        if let Some(i) = link.buffered().iter().position(|&b| b == b'\n') {
            break i;
        }
        if link.buffered().len() > MAX_ENDOFF_LINE {
            return Err(DualError::EndOff("$ENDOFF line too long".into()).into());
        }
        link.fill()?;
    };
    let b = link.buffered();
    let line = b[..end].strip_suffix(b"\r").unwrap_or(&b[..end]).to_vec();
    link.consume(end + 1);
    Ok(line)
}

fn expect_ok(link: &mut Link, step: &'static str) -> Result<(), ReplError> {
    match link.read_frame()? {
        Frame::Simple(_) => Ok(()),
        f => Err(DualError::Refused {
            step,
            reply: match f {
                Frame::Error(e) => String::from_utf8_lossy(&e).into_owned(),
                other => other.to_string(),
            },
        }
        .into()),
    }
}

/// Move every byte the main link receives into the spool until `done`; on an error,
/// `abort` is set so the RDB load ends too.
fn buffer_stream(
    link: &mut Link,
    spool: &mut Spool,
    done: &AtomicBool,
    abort: &AtomicBool,
) -> Result<(), ReplError> {
    // The master may send nothing on this link for a while (its PINGs go to online
    // replicas): its silence is the rdb channel's to judge, and that one has the timeout.
    let idle = link.idle_limit.take();
    let r = (|| -> Result<(), ReplError> {
        link.set_read_timeout(POLL)?;
        loop {
            let n = link.buffered().len();
            if n > 0 {
                spool.append(link.buffered())?;
                link.consume(n);
            }
            if done.load(Ordering::Acquire) {
                return Ok(());
            }
            match link.fill() {
                Ok(_) => {}
                Err(LinkError::Io(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
    })();
    link.idle_limit = idle;
    if r.is_err() {
        abort.store(true, Ordering::Release);
    }
    r
}

impl Replica {
    /// The full sync after `+DUALCHANNELSYNC` / `+RDBCHANNELSYNC` on `main`: on return the
    /// data is consistent at (`self.replid`, `self.offset`) and `main` carries the stream
    /// from there.
    pub(super) fn dual_channel_sync(
        &mut self,
        main: &mut Link,
        address: &str,
        outcome: &PsyncOutcome,
    ) -> Result<(), ReplError> {
        let started = Instant::now();
        let mut rdb = self.connect(address)?;
        let r = self.rdb_channel_handshake(main, &mut rdb, address, outcome);
        let (replid, offset, db) = match r {
            Ok(v) => v,
            Err(e) => {
                if matches!(
                    e,
                    ReplError::Dual(DualError::Refused { .. })
                        | ReplError::Handshake(HandshakeError::Refused { .. })
                ) {
                    // As the servers' replicas do: a master that offers the second
                    // connection but refuses its steps gets classic full syncs (until
                    // it is another master: `dualoffer.rs`).
                    warn!(error = %e, address, "dual-channel full sync refused: classic full syncs from this server");
                    self.dual.refused(address);
                    self.status
                        .dual_channel_refusals
                        .fetch_add(1, Ordering::Relaxed);
                }
                return Err(e);
            }
        };
        info!(replid = %replid, offset, "rdb channel open; buffering the stream while the RDB loads");
        let mut spool = Spool::new(&self.spool_dir, self.spool_memory);
        let done = AtomicBool::new(false);
        let abort = Arc::new(AtomicBool::new(false));
        // The buffering thread owns the replica's stop (through `main`) and hands it on.
        rdb.stop = Some(abort.clone());
        let (loaded, buffered) = std::thread::scope(|s| {
            let t = s.spawn(|| buffer_stream(main, &mut spool, &done, &abort));
            let loaded = self.full_sync(&mut rdb);
            done.store(true, Ordering::Release);
            let buffered = t
                .join()
                .unwrap_or_else(|_| Err(ReplError::Apply("buffer thread panicked".into())));
            (loaded, buffered)
        });
        drop(rdb);
        // The stream link's failure is the cause when both failed.
        buffered?;
        // The payload's `repl-stream-db` where `$ENDOFF` gave none (Redis's rdb channel):
        // from a replica, the stream after the offset need not select it again.
        let payload_db = loaded?;
        self.replid = replid;
        self.offset = offset;
        if let Some(s) = &self.sink {
            s.full_sync(&self.replid, self.offset);
        }
        // Not resumable until the buffer has been applied (a failure before would leave
        // data between two offsets).
        self.has_data = false;
        if let Some(db) = db.or(payload_db) {
            self.stream_state.db = db;
        }
        let (total, spilled) = spool.sizes();
        let mut reader = spool.into_reader()?;
        let leftover = self.replay(&mut reader, main.limits)?;
        main.unread(&leftover);
        let st = &self.status;
        st.dual_channel_syncs.fetch_add(1, Ordering::Relaxed);
        st.dual_channel_buffered_bytes
            .fetch_add(total, Ordering::Relaxed);
        st.dual_channel_spilled_bytes
            .fetch_add(spilled, Ordering::Relaxed);
        info!(
            buffered_bytes = total,
            spilled_bytes = spilled,
            offset = self.offset,
            seconds = started.elapsed().as_secs_f64(),
            "dual-channel full sync done; buffered stream applied"
        );
        Ok(())
    }

    /// AUTH and the dialect's steps on the rdb channel (and, for Valkey, the main link's
    /// `set-rdb-client-id` and PSYNC): the replication ID and offset the RDB is consistent
    /// at, and the database the stream after it has selected when the master says so.
    fn rdb_channel_handshake(
        &mut self,
        main: &mut Link,
        rdb: &mut Link,
        address: &str,
        outcome: &PsyncOutcome,
    ) -> Result<(String, i64, Option<u64>), ReplError> {
        let mut s = self.settings.clone();
        s.psync_command = self.psync_command_for(address);
        rdb.set_read_timeout(self.master_timeout)?;
        if let Some(pass) = &s.password {
            match &s.username {
                Some(user) => rdb.send(&[b"AUTH", user.as_bytes(), pass.as_bytes()])?,
                None => rdb.send(&[b"AUTH", pass.as_bytes()])?,
            }
            expect_ok(rdb, "AUTH")?;
        }
        match outcome {
            PsyncOutcome::DualChannel => {
                let port = s.announce_port.to_string();
                rdb.send(&[
                    b"REPLCONF",
                    b"capa",
                    b"eof",
                    b"rdb-only",
                    b"1",
                    b"rdb-channel",
                    b"1",
                    b"listening-port",
                    port.as_bytes(),
                ])?;
                expect_ok(rdb, "REPLCONF rdb-channel")?;
                rdb.send(&[b"SYNC"])?;
                let e = parse_endoff(&read_line(rdb)?)?;
                let cid = e.client_id.to_string();
                main.send(&[b"REPLCONF", b"set-rdb-client-id", cid.as_bytes()])?;
                expect_ok(main, "REPLCONF set-rdb-client-id")?;
                let h = handshake::Handshake {
                    username: None,
                    password: None,
                    announce_port: s.announce_port,
                    psync_command: &s.psync_command,
                    resume: Some((&e.replid, e.offset)),
                    dual_channel: false,
                };
                match handshake::psync(main, &h)? {
                    PsyncOutcome::Continue { .. } => Ok((e.replid, e.offset, e.db)),
                    other => Err(DualError::Refused {
                        step: "PSYNC after $ENDOFF",
                        reply: format!("{other:?}"),
                    }
                    .into()),
                }
            }
            PsyncOutcome::RdbChannel { main_client_id } => {
                let id = main_client_id.to_string();
                rdb.send(&[
                    b"REPLCONF",
                    b"capa",
                    b"eof",
                    b"rdb-only",
                    b"1",
                    b"rdb-channel",
                    b"1",
                    b"main-ch-client-id",
                    id.as_bytes(),
                ])?;
                expect_ok(rdb, "REPLCONF main-ch-client-id")?;
                let h = handshake::Handshake {
                    username: None,
                    password: None,
                    announce_port: s.announce_port,
                    psync_command: &s.psync_command,
                    resume: None,
                    dual_channel: false,
                };
                match handshake::psync(rdb, &h)? {
                    PsyncOutcome::Full { replid, offset } => Ok((replid, offset, None)),
                    other => Err(DualError::Refused {
                        step: "PSYNC on the rdb channel",
                        reply: format!("{other:?}"),
                    }
                    .into()),
                }
            }
            other => Err(DualError::Refused {
                step: "PSYNC",
                reply: format!("{other:?} is not a dual-channel answer"),
            }
            .into()),
        }
    }

    /// Apply the buffered stream from `src`, counting every byte into the offset; the
    /// bytes of an unfinished transaction or command at its end are returned, to be
    /// parsed again by the stream loop with what follows on the link.
    fn replay(&mut self, src: &mut dyn Read, limits: resp::Limits) -> Result<Vec<u8>, ReplError> {
        let mut buf: Vec<u8> = Vec::new();
        // `buf[..committed]` is applied; `buf[pos..]` is not parsed yet.
        let (mut pos, mut committed) = (0usize, 0usize);
        let mut parser = CommandParser::default();
        // The transaction being read, applied at EXEC.
        let mut queued: Option<Tx> = None;
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            let n = src.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            // The parser's positions are relative to `buf[pos..]`, which this keeps.
            buf.drain(..committed);
            pos -= committed;
            committed = 0;
            buf.extend_from_slice(&chunk[..n]);
            loop {
                let parsed = match parser.parse(&buf[pos..], &limits) {
                    Err(e @ resp::RespError::TooLarge { .. }) => {
                        warn!(error = %e, "command too large; forcing a full resync");
                        return Err(ReplError::Apply(e.to_string()));
                    }
                    r => r?,
                };
                let Parsed::Done(argv, used) = parsed else {
                    break;
                };
                let raw = &buf[pos..pos + used];
                pos += used;
                let name = argv.first().map(|a| a.to_ascii_uppercase());
                if let Some(tx) = queued.as_mut() {
                    tx.bytes += used as i64;
                    if self.sink.is_some() {
                        tx.raw.extend_from_slice(raw);
                    }
                    let exec = name.as_deref() == Some(b"EXEC");
                    tx.cmds.push(argv);
                    if exec {
                        let tx = queued.take().unwrap_or_default();
                        for argv in &tx.cmds {
                            self.apply_one(argv)?;
                        }
                        if let Some(s) = &self.sink {
                            s.applied(self.offset, &tx.raw);
                        }
                        self.offset += tx.bytes;
                        committed = pos;
                    }
                } else if name.as_deref() == Some(b"MULTI") {
                    let r = if self.sink.is_some() {
                        raw.to_vec()
                    } else {
                        Vec::new()
                    };
                    queued = Some(Tx {
                        cmds: vec![argv],
                        bytes: used as i64,
                        raw: r,
                    });
                } else {
                    self.apply_one(&argv)?;
                    if let Some(s) = &self.sink {
                        s.applied(self.offset, raw);
                    }
                    self.offset += used as i64;
                    committed = pos;
                }
                self.status.offset.store(self.offset, Ordering::Relaxed);
            }
        }
        Ok(buf.split_off(committed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endoff_lines() {
        let id = "e2cfe62e38bd9fa14be364ddbfe81dc0324b10ea";
        let e = parse_endoff(format!("$ENDOFF:71 {id} -1 6").as_bytes()).unwrap();
        assert_eq!(
            e,
            EndOff {
                offset: 71,
                replid: id.into(),
                db: None,
                client_id: 6
            }
        );
        let e = parse_endoff(format!("$ENDOFF:0 {id} 3 18446744073709551615").as_bytes()).unwrap();
        assert_eq!((e.db, e.client_id), (Some(3), u64::MAX));
        for bad in [
            format!("$ENDOFF:-1 {id} 0 1"),
            format!("$ENDOFF:1 {id} 0"),
            format!("$ENDOFF:1 {id} 0 1 9"),
            format!("$ENDOFF:1 {}x 0 1", &id[..39]),
            format!("$ENDOF:1 {id} 0 1"),
            format!("$ENDOFF:1 {id} x 1"),
            "$EOF:abc".to_string(),
        ] {
            assert!(
                matches!(parse_endoff(bad.as_bytes()), Err(DualError::EndOff(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_endoff(b"-ERR unknown"),
            Err(DualError::Refused { .. })
        ));
        assert!(parse_endoff(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn the_spool_keeps_order_across_the_spill() {
        let dir = std::env::temp_dir();
        let mut s = Spool::new(&dir, 10);
        s.append(b"abcdef").unwrap();
        assert_eq!(s.sizes(), (6, 0));
        s.append(b"ghijkl").unwrap();
        s.append(b"mn").unwrap();
        assert_eq!(s.sizes(), (14, 14));
        let mut out = Vec::new();
        s.into_reader().unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abcdefghijklmn");
        let mut s = Spool::new(&dir, 10);
        s.append(b"0123456789").unwrap();
        let mut out = Vec::new();
        s.into_reader().unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out, b"0123456789");
        let s = Spool::new(Path::new("/nonexistent/replisnap"), 0);
        let mut s = s;
        let e = s.append(b"x").unwrap_err().to_string();
        assert!(e.contains("/nonexistent/replisnap"), "{e}");
    }
}
