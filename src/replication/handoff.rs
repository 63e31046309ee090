//! A primary that never forks for us (`[source] full_sync_from`): the full sync is taken
//! from a replica of the same primary (psync2 replicas answer `+FULLRESYNC` with the
//! primary's replication ID and their offset in its history), then the link moves to the
//! primary with `PSYNC <replid> <offset+1>`.
//!
//! Owns the full sync from the replica (its link closed once the payload has loaded, the
//! stream's database taken from the payload's `repl-stream-db`) and the question asked of
//! the primary before every PSYNC to it (`INFO replication`: do its
//! replication IDs and backlog cover our offset, by the rule of the servers'
//! `masterTryPartialResynchronization`) and the reading of the answer. A refused PSYNC
//! already makes the primary fork, so this check must never say yes on an answer it
//! cannot read whole: a missing or malformed field is a "no" naming the field. It must
//! never send PSYNC to the primary itself (the handshake does, after it).
//!
//! What remains is a race the protocol cannot close: the backlog may move on between the
//! answer and the PSYNC (a few milliseconds on the same connection); the primary then
//! forks once, as it would for any replica.

use std::sync::atomic::Ordering;

use tracing::{info, warn};

use super::handshake::{self, PsyncOutcome};
use super::link::{Link, LinkError};
use super::{ReplError, Replica};
use crate::resp::Frame;

/// Where full syncs come from and what to do when the primary cannot continue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullSyncFrom {
    /// host:port of a replica of the primary, reached with the source's credentials, TLS
    /// and `psync_command`.
    pub address: String,
    pub fallback: Fallback,
}

/// `[source] full_sync_fallback`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fallback {
    /// Back to the replica for a fresh full sync after a backoff: the primary never forks.
    #[default]
    Never,
    /// An ordinary full sync from the primary (it forks).
    Primary,
}

#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    /// The primary's `INFO replication` says a `PSYNC <replid> <offset+1>` would be
    /// refused (and the refusal would fork it).
    #[error(
        "primary cannot continue from the full sync taken from {from} ({replid} at offset {offset}): {why}; full_sync_fallback = \"never\": back to {from} for a fresh full sync"
    )]
    CannotContinue {
        from: String,
        replid: String,
        offset: i64,
        why: String,
    },
    /// The replica answered without a replication ID (as to SYNC), or not with a full
    /// sync: nothing the primary could continue.
    #[error("full_sync_from {from}: {what} (a replica of the primary answering +FULLRESYNC <replid> <offset> is needed)")]
    NotAFullResync { from: String, what: String },
    #[error("{0}")]
    Link(#[from] LinkError),
}

/// The most `INFO replication` may take (it is a few hundred bytes, a line per replica).
const INFO_MAX_BYTES: usize = 1 << 20;

/// The fields of `INFO replication` the decision reads.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct ReplInfo {
    replid: String,
    replid2: String,
    second_offset: i64,
    backlog_active: bool,
    backlog_first: i64,
    backlog_histlen: i64,
}

fn parse_info(info: &str) -> Result<ReplInfo, String> {
    let field = |name: &str| {
        info.lines()
            .filter_map(|l| l.trim_end_matches('\r').split_once(':'))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.trim())
            .ok_or_else(|| format!("its INFO replication has no {name}"))
    };
    let number = |name: &str| {
        field(name)?
            .parse::<i64>()
            .map_err(|_| format!("its INFO replication field {name} is not a number"))
    };
    let id = |name: &str| {
        let v = field(name)?;
        if v.len() == 40 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(v.to_string())
        } else {
            Err(format!(
                "its INFO replication field {name} is not 40 hex digits"
            ))
        }
    };
    Ok(ReplInfo {
        replid: id("master_replid")?,
        replid2: id("master_replid2")?,
        second_offset: number("second_repl_offset")?,
        backlog_active: number("repl_backlog_active")? == 1,
        backlog_first: number("repl_backlog_first_byte_offset")?,
        backlog_histlen: number("repl_backlog_histlen")?,
    })
}

/// Whether `PSYNC replid offset+1` would be answered `+CONTINUE`, from the primary's
/// `INFO replication` text; `Err` names why not.
pub fn can_continue(info: &str, replid: &str, offset: i64) -> Result<(), String> {
    let i = parse_info(info)?;
    let psync_offset = offset.checked_add(1).ok_or("offset out of range")?;
    let same = i.replid.eq_ignore_ascii_case(replid);
    let previous = i.replid2.eq_ignore_ascii_case(replid) && psync_offset <= i.second_offset;
    if !same && !previous {
        return Err(format!(
            "its replication IDs are {} and {} (up to offset {}), not {replid}",
            i.replid, i.replid2, i.second_offset
        ));
    }
    if !i.backlog_active {
        return Err("it has no backlog".into());
    }
    let end = i.backlog_first.saturating_add(i.backlog_histlen);
    if psync_offset < i.backlog_first || psync_offset > end {
        return Err(format!(
            "its backlog holds offsets {}..{end}, not {psync_offset} (raise its repl-backlog-size)",
            i.backlog_first
        ));
    }
    Ok(())
}

/// Ask the primary on a prepared link (after AUTH and REPLCONF, before PSYNC) whether it
/// can continue at `offset`; an error reply (no `+info` for the ACL user) is a "no".
pub fn ask_primary(
    link: &mut Link,
    from: &str,
    replid: &str,
    offset: i64,
) -> Result<(), HandoffError> {
    link.send(&[b"INFO", b"replication"])?;
    // INFO replication is a few hundred bytes: a larger answer is refused, not held.
    let limits = link.limits;
    link.limits.max_bulk = INFO_MAX_BYTES;
    let reply = link.read_frame();
    link.limits = limits;
    let why = match reply {
        Ok(Frame::Bulk(Some(b))) => match std::str::from_utf8(&b) {
            Ok(text) => can_continue(text, replid, offset).err(),
            Err(_) => Some("its INFO replication is not text".into()),
        },
        Ok(Frame::Error(e)) => Some(format!(
            "INFO replication refused ({}): the user needs +info",
            String::from_utf8_lossy(&e)
        )),
        Ok(other) => Some(format!("INFO replication answered {other}")),
        // An answer past the cap or not RESP: not read whole, so a "no".
        Err(LinkError::Protocol(e)) => Some(format!("INFO replication unreadable: {e}")),
        // The link failed: an ordinary link error, the data kept for the next attach.
        Err(e) => return Err(e.into()),
    };
    match why {
        None => Ok(()),
        Some(why) => Err(HandoffError::CannotContinue {
            from: from.to_string(),
            replid: replid.to_string(),
            offset,
            why,
        }),
    }
}

/// `repl-stream-db` of a payload's aux fields: the database the replica's stream had
/// selected, which the primary's backlog after that offset assumes (it holds no SELECT).
pub fn stream_db(aux: &[(Vec<u8>, Vec<u8>)]) -> Option<u64> {
    aux.iter()
        .find(|(k, _)| k == b"repl-stream-db")
        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())
}

impl Replica {
    /// A full sync from `[source] full_sync_from` (a replica of the primary), loaded as
    /// the data to continue on the primary; the replica's link is closed at once.
    ///
    /// When that fails (the replica down, not in sync with its own master, refusing us),
    /// `full_sync_fallback = "primary"` goes on to an ordinary full sync from the primary
    /// (`Ok` without data); under `"never"` the error ends the session and the replica is
    /// asked again after the backoff.
    pub(super) fn full_sync_from_replica(&mut self, f: &FullSyncFrom) -> Result<(), ReplError> {
        match self.sync_from(&f.address) {
            Err(e) if f.fallback == Fallback::Primary && !self.stop.load(Ordering::Relaxed) => {
                warn!(
                    address = %f.address, error = %e,
                    "no full sync from full_sync_from; full_sync_fallback = \"primary\": full sync from the primary"
                );
                Ok(())
            }
            r => r,
        }
    }

    fn sync_from(&mut self, from: &str) -> Result<(), ReplError> {
        let mut link = self.connect(from)?;
        info!(address = %from, "connected to full_sync_from for a full sync");
        let psync_command = self.psync_command_for(from);
        let dual_channel = self.dual.offer(from, false);
        let s = &self.settings;
        let h = handshake::Handshake {
            username: s.username.as_deref(),
            password: s.password.as_deref(),
            announce_port: s.announce_port,
            psync_command: &psync_command,
            resume: None,
            // A replica serves dual-channel syncs as a primary does (valkey
            // `syncCommand`: no role check before `+DUALCHANNELSYNC`).
            dual_channel,
        };
        let not_full = |what: String| HandoffError::NotAFullResync {
            from: from.to_string(),
            what,
        };
        let outcome = handshake::handshake(&mut link, &h)?;
        let (replid, offset) = match outcome {
            PsyncOutcome::Full { replid, offset } => (replid, offset),
            PsyncOutcome::DualChannel | PsyncOutcome::RdbChannel { .. } if dual_channel => {
                // Loaded, and the stream buffered meanwhile applied: the data is at
                // (`self.replid`, `self.offset`), the database the stream selected kept.
                self.dual_channel_sync(&mut link, from, &outcome)?;
                self.loaded_from_replica(from);
                return Ok(());
            }
            PsyncOutcome::LegacySync => {
                return Err(not_full("answered as to SYNC, without a replication ID".into()).into())
            }
            PsyncOutcome::Continue { .. } => {
                return Err(not_full("answered +CONTINUE to PSYNC ? -1".into()).into())
            }
            PsyncOutcome::DualChannel | PsyncOutcome::RdbChannel { .. } => {
                return Err(
                    not_full("offered a second connection, which was not asked for".into()).into(),
                )
            }
        };
        let stream_db = self.full_sync(&mut link)?;
        // The primary's backlog after `offset` holds no SELECT for the database the
        // replica's stream had selected: its RDB says which (`repl-stream-db`).
        self.stream_state.db = stream_db.unwrap_or_else(|| {
            warn!(address = %from, "the replica's payload has no repl-stream-db: database 0 assumed");
            0
        });
        self.replid = replid;
        self.offset = offset;
        if let Some(s) = &self.sink {
            s.full_sync(&self.replid, self.offset);
        }
        self.loaded_from_replica(from);
        Ok(())
    }

    /// Data from `from` is loaded at (`self.replid`, `self.offset`): continue on the primary.
    fn loaded_from_replica(&mut self, from: &str) {
        self.has_data = true;
        self.dual.synced(from, &self.replid);
        self.status
            .full_syncs_from_replica
            .fetch_add(1, Ordering::Relaxed);
        info!(
            address = %from, replid = %self.replid, offset = self.offset,
            "full sync from the replica loaded; continuing on the primary"
        );
    }

    /// Before PSYNC to the primary with data at (`replid`, `offset`): `true` to resume,
    /// `false` for an ordinary full sync (`full_sync_fallback = "primary"`), an error when
    /// the primary cannot continue and must not be asked (the default). Without
    /// `full_sync_from`, always `true`.
    pub(super) fn may_resume_on_primary(
        &mut self,
        link: &mut Link,
        replid: &str,
        offset: i64,
    ) -> Result<bool, ReplError> {
        let Some(f) = &self.full_sync_from else {
            return Ok(true);
        };
        // A PSYNC the primary refuses makes it fork: ask first.
        let e = match ask_primary(link, &f.address, replid, offset) {
            Ok(()) => return Ok(true),
            Err(e @ HandoffError::CannotContinue { .. }) => e,
            Err(e) => return Err(e.into()),
        };
        self.status.handoff_refusals.fetch_add(1, Ordering::Relaxed);
        match f.fallback {
            Fallback::Primary => {
                warn!(error = %e, "full_sync_fallback = \"primary\": full sync from the primary");
                Ok(false)
            }
            Fallback::Never => {
                // The data stays consistent at its offset (snapshots of it are still
                // right); the next attach takes a fresh full sync from the replica.
                self.has_data = false;
                Err(e.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "8a7b9c0d1e2f30415263748596a7b8c9d0e1f203";
    const OLD: &str = "0000000000000000000000000000000000000001";

    fn info(replid2: &str, second: i64, first: i64, histlen: i64) -> String {
        format!(
            "# Replication\r\nrole:master\r\nconnected_slaves:1\r\nmaster_replid:{ID}\r\nmaster_replid2:{replid2}\r\nmaster_repl_offset:{}\r\nsecond_repl_offset:{second}\r\nrepl_backlog_active:1\r\nrepl_backlog_size:1048576\r\nrepl_backlog_first_byte_offset:{first}\r\nrepl_backlog_histlen:{histlen}\r\n",
            first + histlen - 1
        )
    }

    #[test]
    fn the_servers_rule() {
        let zero = "0000000000000000000000000000000000000000";
        let i = info(zero, -1, 1001, 5000);
        assert_eq!(
            can_continue(&i, ID, 1000),
            Ok(()),
            "the backlog's first byte"
        );
        assert_eq!(can_continue(&i, ID, 6000), Ok(()), "up to date");
        assert!(can_continue(&i, ID, 999).unwrap_err().contains("backlog"));
        assert!(can_continue(&i, ID, 6001).unwrap_err().contains("backlog"));
        assert!(can_continue(&i, OLD, 3000).unwrap_err().contains(OLD));
        assert!(can_continue(&i, &ID.to_uppercase(), 3000).is_ok());
        // The previous history counts up to where it ended.
        let promoted = info(OLD, 2001, 1001, 5000);
        assert_eq!(can_continue(&promoted, OLD, 2000), Ok(()));
        assert!(can_continue(&promoted, OLD, 2001).is_err());
        assert!(can_continue(&i, ID, i64::MAX).is_err());
    }

    #[test]
    fn an_answer_not_read_whole_is_a_no() {
        let i = info(OLD, -1, 1, 10);
        let no_backlog = i.replace("repl_backlog_active:1", "repl_backlog_active:0");
        assert!(can_continue(&no_backlog, ID, 5)
            .unwrap_err()
            .contains("no backlog"));
        for field in [
            "master_replid:",
            "repl_backlog_histlen:",
            "second_repl_offset:",
        ] {
            let cut: String = i
                .lines()
                .filter(|l| !l.starts_with(field))
                .collect::<Vec<_>>()
                .join("\r\n");
            let e = can_continue(&cut, ID, 5).unwrap_err();
            assert!(e.contains(field.trim_end_matches(':')), "{e}");
        }
        let long_id = i.replace(
            &format!("master_replid:{ID}"),
            &format!("master_replid:{ID}{ID}"),
        );
        assert!(can_continue(&long_id, ID, 5)
            .unwrap_err()
            .contains("40 hex"));
        let garbled = i.replace(
            "repl_backlog_first_byte_offset:1",
            "repl_backlog_first_byte_offset:x",
        );
        assert!(can_continue(&garbled, ID, 5)
            .unwrap_err()
            .contains("not a number"));
        assert!(can_continue("", ID, 5).is_err());
    }

    #[test]
    fn the_stream_db_of_a_payload() {
        let aux = vec![
            (b"redis-ver".to_vec(), b"7.0.15".to_vec()),
            (b"repl-stream-db".to_vec(), b"3".to_vec()),
        ];
        assert_eq!(stream_db(&aux), Some(3));
        assert_eq!(
            stream_db(&[(b"repl-stream-db".to_vec(), b"-1".to_vec())]),
            None
        );
        assert_eq!(stream_db(&[]), None);
    }
}
