//! The replica handshake: AUTH, PING, REPLCONF, then PSYNC (or SYNC where PSYNC is refused).
//!
//! Owns the order of the steps and the reading of each reply. Non-critical refusals
//! (REPLCONF options an old or proxied master does not know) are logged and passed over as
//! the server's own replica does; everything else that is unexpected is an error naming
//! the step and the reply. It must never send PSYNC before every earlier reply was read,
//! nor take a reply it cannot parse for an answer.

use tracing::{debug, info, warn};

use super::link::{Link, LinkError};
use crate::resp::Frame;

/// The version announced with `REPLCONF version`: the highest `x.y.z` a Valkey master
/// parses, so it always sends its newest RDB format.
pub const REPLICA_VERSION: &str = "255.255.255";

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("{0}")]
    Link(#[from] LinkError),
    #[error("{step}: master answered {reply}{}", hint_suffix(step, reply))]
    Refused { step: &'static str, reply: String },
    /// The master is not ready (loading, or has no link to its own master): retry later.
    #[error("{step}: master not ready: {reply}")]
    NotReady { step: &'static str, reply: String },
}

pub struct Handshake<'a> {
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    pub announce_port: u16,
    pub psync_command: &'a str,
    /// The replication ID and offset to resume from, if we hold a dataset.
    pub resume: Option<(&'a str, i64)>,
    /// Offer a full sync on a second connection (Valkey's `capa dual-channel`, Redis 8's
    /// `capa rdb-channel-repl`): see `dualchannel.rs`.
    pub dual_channel: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PsyncOutcome {
    /// A full sync follows: the payload is consistent at this (replid, offset).
    Full { replid: String, offset: i64 },
    /// Partial resync accepted; the master may announce a new replication ID (failover).
    Continue { new_replid: Option<String> },
    /// The master refused PSYNC; the legacy SYNC was sent and its payload follows.
    LegacySync,
    /// Valkey 8+ (`+DUALCHANNELSYNC`): the RDB comes on a second connection, which says
    /// the offset the main one then resumes from.
    DualChannel,
    /// Redis 8+ (`+RDBCHANNELSYNC <id>`): the RDB comes on a second connection that names
    /// this one's client id; this one then carries the stream.
    RdbChannel { main_client_id: u64 },
}

fn text(f: &Frame) -> String {
    match f {
        Frame::Simple(s) | Frame::Error(s) => String::from_utf8_lossy(s).into_owned(),
        other => other.to_string(),
    }
}

/// What to do about a refusal the user can fix, from the master's reply.
pub fn hint(step: &str, reply: &str) -> Option<&'static str> {
    let r = reply.to_ascii_uppercase();
    if r.starts_with("NOAUTH") {
        Some("the master requires a password: set [source] password_file (and username for an ACL user)")
    } else if r.starts_with("WRONGPASS")
        || r.contains("INVALID PASSWORD")
        || r.contains("INVALID USERNAME")
    {
        Some("the master refuses [source] username/password_file: check them against its requirepass or ACL users")
    } else if r.starts_with("NOPERM") {
        Some("the ACL user may not replicate: grant it the replication commands, e.g. ACL SETUSER <user> +psync +replconf +ping")
    } else if step == "PSYNC" && (r.contains("UNKNOWN COMMAND") || r.contains("UNKNOWN SUBCOMMAND"))
    {
        Some("the master does not know this command (managed services such as ElastiCache rename it per node): set [source] psync_command to the name you were given")
    } else {
        None
    }
}

fn hint_suffix(step: &str, reply: &str) -> String {
    hint(step, reply)
        .map(|h| format!(" ({h})"))
        .unwrap_or_default()
}

fn is_not_ready(msg: &str) -> bool {
    msg.starts_with("LOADING")
        || msg.starts_with("NOMASTERLINK")
        || msg.starts_with("MASTERDOWN")
        || msg.starts_with("BUSY")
}

fn expect_ok(link: &mut Link, step: &'static str) -> Result<(), HandshakeError> {
    match link.read_frame()? {
        Frame::Simple(_) => Ok(()),
        f => {
            let reply = text(&f);
            if is_not_ready(&reply) {
                Err(HandshakeError::NotReady { step, reply })
            } else {
                Err(HandshakeError::Refused { step, reply })
            }
        }
    }
}

/// The whole handshake: [`prepare`], then [`psync`].
pub fn handshake(link: &mut Link, h: &Handshake) -> Result<PsyncOutcome, HandshakeError> {
    prepare(link, h)?;
    psync(link, h)
}

/// AUTH, PING and the REPLCONF options: after it the link is still an ordinary client
/// (a question such as `INFO replication` may be asked before [`psync`]).
pub fn prepare(link: &mut Link, h: &Handshake) -> Result<(), HandshakeError> {
    if let Some(pass) = h.password {
        match h.username {
            Some(user) => link.send(&[b"AUTH", user.as_bytes(), pass.as_bytes()])?,
            None => link.send(&[b"AUTH", pass.as_bytes()])?,
        }
        expect_ok(link, "AUTH")?;
    }
    link.send(&[b"PING"])?;
    expect_ok(link, "PING")?;
    let port = h.announce_port.to_string();
    link.send(&[b"REPLCONF", b"listening-port", port.as_bytes()])?;
    if let Err(e) = expect_ok(link, "REPLCONF listening-port") {
        warn!(error = %e, "master does not take REPLCONF listening-port (not critical)");
    }
    if h.dual_channel {
        // Masters ignore a capability they do not know (or have turned off).
        link.send(&[
            b"REPLCONF",
            b"capa",
            b"eof",
            b"capa",
            b"psync2",
            b"capa",
            b"dual-channel",
            b"capa",
            b"rdb-channel-repl",
        ])?;
    } else {
        link.send(&[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"])?;
    }
    if let Err(e) = expect_ok(link, "REPLCONF capa") {
        warn!(error = %e, "master does not take REPLCONF capa (not critical)");
    }
    // Valkey masters pick the RDB version of a full sync from the replica's announced
    // version; one that announces none gets an old format, and a key that format cannot
    // hold (a hash with field TTLs on Valkey 9) fails every full sync. We read every
    // format, so we announce the newest version there can be. Redis masters refuse the
    // option (not critical).
    link.send(&[b"REPLCONF", b"version", REPLICA_VERSION.as_bytes()])?;
    if let Err(e) = expect_ok(link, "REPLCONF version") {
        debug!(error = %e, "master does not take REPLCONF version (Redis masters do not)");
    }
    Ok(())
}

/// PSYNC (from `h.resume`, else `? -1`) and its answer, after [`prepare`].
pub fn psync(link: &mut Link, h: &Handshake) -> Result<PsyncOutcome, HandshakeError> {
    let (replid, off) = match h.resume {
        Some((id, offset)) => (id.to_string(), (offset + 1).to_string()),
        None => ("?".to_string(), "-1".to_string()),
    };
    link.send(&[
        h.psync_command.as_bytes(),
        replid.as_bytes(),
        off.as_bytes(),
    ])?;
    link.skip_keepalives()?;
    // A stock server only treats the command as PSYNC when it is spelled "psync": under a
    // `rename-command PSYNC other` it answers as to SYNC, with the payload at once and no
    // FULLRESYNC line (measured on redis 7.0, disk and diskless).
    if link.buffered().first() == Some(&b'$') {
        warn!(
            command = h.psync_command,
            "the master answered with a payload, as to SYNC (a renamed PSYNC on a stock server): full sync without a replication ID; every reconnect will be a full sync"
        );
        return Ok(PsyncOutcome::LegacySync);
    }
    let reply = link.read_frame()?;
    let t = text(&reply);
    match &reply {
        Frame::Simple(_) if t.starts_with("FULLRESYNC") => {
            let mut parts = t.split_whitespace().skip(1);
            let (Some(id), Some(off)) = (parts.next(), parts.next()) else {
                return Err(HandshakeError::Refused {
                    step: "PSYNC",
                    reply: t,
                });
            };
            let offset = off.parse::<i64>().map_err(|_| HandshakeError::Refused {
                step: "PSYNC",
                reply: t.clone(),
            })?;
            if id.len() != 40 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(HandshakeError::Refused {
                    step: "PSYNC",
                    reply: t,
                });
            }
            info!(replid = id, offset, "full resync");
            Ok(PsyncOutcome::Full {
                replid: id.to_string(),
                offset,
            })
        }
        Frame::Simple(_) if t.starts_with("CONTINUE") => {
            let new_replid = t.split_whitespace().nth(1).map(str::to_string);
            if let Some(id) = &new_replid {
                if id.len() != 40 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(HandshakeError::Refused {
                        step: "PSYNC",
                        reply: t,
                    });
                }
            }
            info!(new_replid = ?new_replid, "partial resync accepted");
            Ok(PsyncOutcome::Continue { new_replid })
        }
        Frame::Simple(_) if h.dual_channel && t == "DUALCHANNELSYNC" => {
            info!("full resync on a second connection (dual-channel)");
            Ok(PsyncOutcome::DualChannel)
        }
        Frame::Simple(_) if h.dual_channel && t.starts_with("RDBCHANNELSYNC ") => {
            let id = t["RDBCHANNELSYNC ".len()..]
                .trim()
                .parse::<u64>()
                .map_err(|_| HandshakeError::Refused {
                    step: "PSYNC",
                    reply: t.clone(),
                })?;
            info!(
                main_client_id = id,
                "full resync on a second connection (rdb-channel)"
            );
            Ok(PsyncOutcome::RdbChannel { main_client_id: id })
        }
        Frame::Error(_) if is_not_ready(&t) => Err(HandshakeError::NotReady {
            step: "PSYNC",
            reply: t,
        }),
        // Refusals SYNC would meet as well (credentials, ACL): say what to do.
        Frame::Error(_)
            if hint("PSYNC", &t).is_some() && !t.to_ascii_uppercase().contains("UNKNOWN") =>
        {
            Err(HandshakeError::Refused {
                step: "PSYNC",
                reply: t,
            })
        }
        Frame::Error(_) => {
            // Masters (or proxies) that refuse PSYNC may still serve the old SYNC.
            warn!(reply = %t, "PSYNC refused; falling back to SYNC (if the master renamed PSYNC, set [source] psync_command)");
            link.send(&[b"SYNC"])?;
            link.skip_keepalives()?;
            if link.buffered().first() == Some(&b'-') {
                let sync = text(&link.read_frame()?);
                return Err(HandshakeError::Refused {
                    step: "PSYNC",
                    reply: format!("{t}; then SYNC: {sync}"),
                });
            }
            Ok(PsyncOutcome::LegacySync)
        }
        _ => Err(HandshakeError::Refused {
            step: "PSYNC",
            reply: t,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::hint;

    #[test]
    fn refusals_a_user_can_fix_name_the_fix() {
        let h = |step, reply| hint(step, reply).unwrap_or("");
        assert!(h("AUTH", "NOAUTH Authentication required.").contains("password_file"));
        assert!(h("AUTH", "WRONGPASS invalid username-password pair").contains("username"));
        assert!(h("AUTH", "ERR invalid password").contains("username"));
        assert!(h(
            "PSYNC",
            "NOPERM this user has no permissions to run the 'psync' command"
        )
        .contains("ACL SETUSER"));
        assert!(h(
            "PSYNC",
            "ERR unknown command 'PSYNC'; then SYNC: ERR unknown command 'SYNC'"
        )
        .contains("psync_command"));
        assert_eq!(hint("PSYNC", "LOADING Redis is loading"), None);
    }
}
