//! Restoring by one full sync (`restore --via-sync`): the target is made a replica of this
//! process for as long as one full sync takes, is sent the snapshot as the RDB payload of
//! that sync (written for the target's version, as it streams), loads it the way it loads
//! any RDB (its dictionaries sized from the file's hints, no command parsed per key), and
//! is made a master again. The target's `repl-diskless-load` is set to `on-empty-db` for
//! the sync when it lets us (so it loads while the payload arrives instead of after), and
//! put back.
//!
//! Owns the master's side of that one sync ([`Offer`], [`handshake`]), the payload
//! ([`SyncSink`]) and the way there and back ([`start`], [`finish`]). It must never point a target at this
//! process before it was checked empty of keys and function libraries (or the caller asked
//! to flush it: a full sync replaces both), must never leave a target a replica (every
//! path after `REPLICAOF` ends with `REPLICAOF NO ONE` and the config it changed put back),
//! and must never send the target anything but the handshake's replies and one RDB.

mod offer;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use offer::{handshake, Offer, HANDSHAKE_WAIT};

use super::conn::Conn;
use super::{framing, Framing, RestoreError, RestoreOptions, RestoreSummary};
use crate::digest::{ParallelDigest, Rules};
use crate::rdb::writer::{KeyRecord, RdbWriter, Target, WriteOptions};
use crate::rdb::KeyEntry;
use crate::resp::Frame;

/// How often the target is asked whether it has loaded the payload.
const POLL: Duration = Duration::from_millis(20);
/// How long the target may be neither syncing nor loading, its link down, before the
/// restore gives up on it.
const IDLE_LIMIT: Duration = Duration::from_secs(30);

/// The payload: every key the feeder gives, written for the target as an RDB.
pub(crate) struct SyncSink {
    w: RdbWriter<TcpStream>,
    pub s: RestoreSummary,
    digester: Option<ParallelDigest>,
    rules: Rules,
    dbs: Vec<u64>,
    now_ms: i64,
    /// The database the keys written last are in.
    db: Option<u64>,
    /// The source's size hints, by database, written when the database is selected.
    hints: Vec<(u64, u64, u64)>,
}

impl SyncSink {
    fn new(
        stream: TcpStream,
        target: Target,
        rules: Rules,
        summary: RestoreSummary,
        digester: Option<ParallelDigest>,
        opts: &RestoreOptions,
        now_ms: i64,
    ) -> Result<Self, RestoreError> {
        let w = RdbWriter::new(stream, target, WriteOptions { compress: false })
            .map_err(|e| RestoreError::Source(e.to_string()))?;
        Ok(SyncSink {
            w,
            s: summary,
            digester,
            rules,
            dbs: opts.dbs.clone(),
            now_ms,
            db: None,
            hints: Vec::new(),
        })
    }

    fn write_err(&self, e: impl std::fmt::Display) -> RestoreError {
        RestoreError::Source(format!("writing the sync's payload: {e}"))
    }

    /// The source's RESIZEDB for `db`: the target sizes its tables from it.
    pub fn resize_hint(&mut self, db: u64, keys: u64, expires: u64) {
        self.hints.retain(|h| h.0 != db);
        self.hints.push((db, keys, expires));
    }

    pub fn function(&mut self, code: &[u8]) -> Result<(), RestoreError> {
        self.w.function(code).map_err(|e| self.write_err(e))?;
        self.s.functions += 1;
        Ok(())
    }

    /// Whether `k` is to be written (its database wanted, `loadable` now); when it is,
    /// its database is selected.
    fn admit(&mut self, k: &KeyEntry, loadable: bool) -> Result<bool, RestoreError> {
        if !self.dbs.is_empty() && !self.dbs.contains(&k.db) {
            return Ok(false);
        }
        if !loadable {
            self.s.keys_expired_skipped += 1;
            return Ok(false);
        }
        if self.db != Some(k.db) {
            self.w.select_db(k.db).map_err(|e| self.write_err(e))?;
            if let Some(&(_, keys, expires)) = self.hints.iter().find(|h| h.0 == k.db) {
                self.w
                    .resize_db(keys, expires)
                    .map_err(|e| self.write_err(e))?;
            }
            self.db = Some(k.db);
        }
        Ok(true)
    }

    /// A key the reader only framed: a collection the target loads in this encoding is
    /// written as the file holds it, anything else decoded and written by [`Self::key`].
    pub fn key_encoded(
        &mut self,
        mut k: Box<KeyEntry>,
        value_at: u64,
        encoded: Vec<u8>,
    ) -> Result<(), RestoreError> {
        let ty = k.rdb_type;
        let Framing::AsIs { elements, encoded } =
            framing(&mut k, value_at, encoded, &self.rules, true)?
        else {
            return self.key(k);
        };
        let expired = matches!(k.expire_ms, Some(t) if t < self.now_ms);
        // An empty collection is dropped, as a server drops it on load.
        if elements == 0 || !self.admit(&k, !expired)? {
            return Ok(());
        }
        self.w
            .key_encoded(&KeyRecord::from(&*k), ty, &encoded)
            .map_err(|e| key_err(&k, e))?;
        self.s.keys_restored += 1;
        if let Some(d) = self.digester.as_mut() {
            d.add_framed(k, value_at, encoded)
                .map_err(|e| RestoreError::Source(e.to_string()))?;
        }
        Ok(())
    }

    /// A decoded key.
    pub fn key(&mut self, k: Box<KeyEntry>) -> Result<(), RestoreError> {
        if !self.admit(&k, k.loadable(self.now_ms))? {
            return Ok(());
        }
        // `false`: an empty collection, left out as a server drops it on load.
        if self
            .w
            .key(&KeyRecord::from(&*k))
            .map_err(|e| key_err(&k, e))?
        {
            self.s.keys_restored += 1;
            if let Some(d) = self.digester.as_mut() {
                d.add(k).map_err(|e| RestoreError::Source(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// The RDB ended and its end mark written; the connection (kept open until the target
    /// is a master again) and what was written.
    fn finish(self, mark: &[u8; 40]) -> Result<(TcpStream, RestoreSummary), RestoreError> {
        let mut s = self.s;
        let (mut stream, bytes) = self
            .w
            .finish()
            .map_err(|e| RestoreError::Source(format!("writing the sync's payload: {e}")))?;
        stream
            .write_all(mark)
            .and_then(|()| stream.flush())
            .map_err(|e| RestoreError::Source(format!("writing the sync's payload: {e}")))?;
        s.bytes_sent = bytes;
        if let Some(d) = self.digester {
            let d = d
                .finish()
                .map_err(|e| RestoreError::Source(e.to_string()))?;
            s.digest_sent = Some(crate::digest::mix::hex(&d.finish()));
        }
        Ok((stream, s))
    }
}

fn key_err(k: &KeyEntry, e: impl std::fmt::Display) -> RestoreError {
    RestoreError::Key {
        db: k.db,
        key: String::from_utf8_lossy(&k.key).into_owned(),
        what: e.to_string(),
    }
}

/// `field:value` of an INFO answer.
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

/// What a target must be before it is pointed at this process: a master, holding no
/// function library unless it is to be flushed (the sync replaces its libraries too).
pub(crate) fn check_target(conn: &mut Conn, opts: &RestoreOptions) -> Result<(), RestoreError> {
    let info = conn.text(&[b"INFO", b"replication"])?;
    if info_field(&info, "role") != Some("master") {
        return Err(RestoreError::Source(format!(
            "{} is a replica (role:{}); --via-sync restores into a master",
            conn.addr(),
            info_field(&info, "role").unwrap_or("?")
        )));
    }
    if !opts.flush {
        if let Ok(Frame::Array(Some(libs))) = conn.call(&[b"FUNCTION", b"LIST"]) {
            if !libs.is_empty() {
                return Err(RestoreError::Source(format!(
                    "{} holds {} function libraries, which a sync replaces: pass --flush to replace them",
                    conn.addr(),
                    libs.len()
                )));
            }
        }
    }
    Ok(())
}

/// The sync's payload side, handed to the feeder: a [`SyncSink`] once the target is a
/// replica of this process and asked for its full sync.
pub(crate) struct Started {
    pub sink: SyncSink,
    mark: [u8; 40],
    offer: Offer,
    pub diskless: bool,
    old_diskless: Option<String>,
}

/// Point the target at this process and answer its handshake; a sink for the payload.
/// On an error the target is made a master again before returning.
pub(crate) fn start(
    conn: &mut Conn,
    target: Target,
    rules: Rules,
    summary: RestoreSummary,
    digester: Option<ParallelDigest>,
    opts: &RestoreOptions,
    now_ms: i64,
) -> Result<Started, RestoreError> {
    let local = conn
        .local_ip()
        .ok_or_else(|| conn.fail("cannot tell this side's address of the connection".into()))?;
    let offer = Offer::open(opts.sync_address.as_deref(), local).map_err(RestoreError::Source)?;
    // The target loads while the payload arrives when its config lets it.
    let old_diskless = match conn.call(&[b"CONFIG", b"GET", b"repl-diskless-load"]) {
        Ok(Frame::Array(Some(kv))) => match kv.get(1) {
            Some(Frame::Bulk(Some(v))) => Some(String::from_utf8_lossy(v).into_owned()),
            _ => None,
        },
        _ => None,
    };
    let diskless = match old_diskless.as_deref() {
        Some("disabled") => conn
            .call(&[b"CONFIG", b"SET", b"repl-diskless-load", b"on-empty-db"])
            .is_ok(),
        Some(_) => true,
        None => false,
    };
    let changed =
        (old_diskless.as_deref() == Some("disabled") && diskless).then(|| "disabled".to_string());
    let port = offer.port.to_string();
    let pointed = conn.text(&[b"REPLICAOF", offer.host.as_bytes(), port.as_bytes()]);
    if let Err(e) = pointed {
        let _ = put_back(conn, changed.as_deref());
        return Err(RestoreError::Source(format!(
            "{e} (managed services such as ElastiCache refuse REPLICAOF: restore without --via-sync)"
        )));
    }
    let begun = offer
        .accept(HANDSHAKE_WAIT)
        .and_then(|mut s| handshake(&mut s).map(|mark| (s, mark)))
        .map_err(RestoreError::Source)
        .and_then(|(s, mark)| {
            s.set_write_timeout(Some(opts.timeout.max(Duration::from_secs(60))))
                .map_err(|e| RestoreError::Source(e.to_string()))?;
            Ok((
                SyncSink::new(s, target, rules, summary, digester, opts, now_ms)?,
                mark,
            ))
        });
    match begun {
        Ok((sink, mark)) => Ok(Started {
            sink,
            mark,
            offer,
            diskless,
            old_diskless: changed,
        }),
        Err(e) => {
            let _ = put_back(conn, changed.as_deref());
            Err(e)
        }
    }
}

/// `REPLICAOF NO ONE`, and `repl-diskless-load` put back when it was changed.
fn put_back(conn: &mut Conn, old_diskless: Option<&str>) -> Result<(), RestoreError> {
    let promoted = conn.text(&[b"REPLICAOF", b"NO", b"ONE"]);
    if let Some(v) = old_diskless {
        conn.text(&[b"CONFIG", b"SET", b"repl-diskless-load", v.as_bytes()])?;
    }
    promoted.map(|_| ()).map_err(RestoreError::from)
}

/// End the payload (`fed`: whether every key was written), wait for the target to load
/// it, make it a master again; what was sent.
pub(crate) fn finish(
    conn: &mut Conn,
    st: Started,
    fed: Result<(), RestoreError>,
) -> Result<RestoreSummary, RestoreError> {
    let Started {
        sink,
        mark,
        offer,
        old_diskless,
        ..
    } = st;
    let loaded = fed
        .and_then(|()| sink.finish(&mark))
        .and_then(|(stream, s)| wait_loaded(conn, &offer).map(|()| (stream, s)));
    let back = put_back(conn, old_diskless.as_deref());
    let (stream, s) = loaded?;
    back?;
    drop(stream);
    Ok(s)
}

/// Until the target says its link to this process is up and it is not loading; an error
/// when it connects again instead (it could not load the payload).
fn wait_loaded(conn: &mut Conn, offer: &Offer) -> Result<(), RestoreError> {
    // Loading a big payload from disk takes the target a while; it answers INFO meanwhile.
    conn.set_read_timeout(Duration::from_secs(600));
    let _ = offer.listener.set_nonblocking(true);
    let mut idle_since: Option<Instant> = None;
    loop {
        let info = conn.text(&[b"INFO", b"replication"])?;
        let p = conn.text(&[b"INFO", b"persistence"])?;
        let loading = info_field(&p, "loading") != Some("0");
        if info_field(&info, "master_link_status") == Some("up") && !loading {
            return Ok(());
        }
        // Neither receiving nor loading, and no link: the sync ended without a word.
        let syncing = info_field(&info, "master_sync_in_progress") == Some("1");
        if syncing || loading {
            idle_since = None;
        } else if idle_since.get_or_insert_with(Instant::now).elapsed() > IDLE_LIMIT {
            return Err(RestoreError::Source(format!(
                "{} neither receives nor loads the payload and its link to this process is down (its log says why)",
                conn.addr()
            )));
        }
        if offer.reconnected() {
            return Err(RestoreError::Source(format!(
                "{} did not load the payload and asked for another sync (its log says why)",
                conn.addr()
            )));
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_are_read_by_name() {
        let info =
            "# Replication\r\nrole:slave\r\nmaster_link_status:up\r\nmaster_link_status_x:down\r\n";
        assert_eq!(info_field(info, "role"), Some("slave"));
        assert_eq!(info_field(info, "master_link_status"), Some("up"));
        assert_eq!(info_field(info, "master"), None);
    }
}
