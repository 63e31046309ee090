//! Where the master is, from Redis/Valkey Sentinel: `SENTINEL get-master-addr-by-name`
//! asked of each configured sentinel in turn before every connection, so a failover is
//! followed at the next reconnect (a demoted master drops its replicas, which is that
//! reconnect), and psync2 continues the history on the promoted replica.
//!
//! Owns the question and the reading of the answer, nothing of the link to the master. It
//! must never guess an address: no sentinel answering is an error naming each one's
//! failure, and the replica backs off and asks again. A leaf beside `link.rs`.

use std::time::Duration;

use super::link::Link;
use super::tls::TlsSettings;
use crate::resp::Frame;

/// How to ask: the sentinels (`host:port`), the monitored master's name, their own auth.
#[derive(Debug, Clone)]
pub struct SentinelSettings {
    pub addresses: Vec<String>,
    pub master_name: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls: Option<TlsSettings>,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("no sentinel named a master {name:?}: {errors}")]
pub struct SentinelError {
    pub name: String,
    pub errors: String,
}

fn ask(addr: &str, s: &SentinelSettings) -> Result<String, String> {
    let mut link = Link::connect(addr, s.timeout, s.tls.as_ref()).map_err(|e| e.to_string())?;
    let _ = link.set_read_timeout(s.timeout);
    if let Some(p) = &s.password {
        match &s.username {
            Some(u) => link.send(&[b"AUTH", u.as_bytes(), p.as_bytes()]),
            None => link.send(&[b"AUTH", p.as_bytes()]),
        }
        .map_err(|e| e.to_string())?;
        if let Frame::Error(e) = link.read_frame().map_err(|e| e.to_string())? {
            return Err(format!("AUTH: {}", String::from_utf8_lossy(&e)));
        }
    }
    link.send(&[
        b"SENTINEL",
        b"get-master-addr-by-name",
        s.master_name.as_bytes(),
    ])
    .map_err(|e| e.to_string())?;
    match link.read_frame().map_err(|e| e.to_string())? {
        Frame::Array(Some(v)) => match v.as_slice() {
            [Frame::Bulk(Some(host)), Frame::Bulk(Some(port))] => {
                let host = String::from_utf8_lossy(host);
                let port = String::from_utf8_lossy(port);
                if port.parse::<u16>().is_err() || host.is_empty() {
                    return Err(format!("answered {host:?} {port:?}"));
                }
                // IPv6 addresses need brackets in host:port.
                Ok(if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                })
            }
            _ => Err("answered something other than [host, port]".into()),
        },
        Frame::Array(None) | Frame::Bulk(None) => Err("does not monitor that name".into()),
        Frame::Error(e) => Err(String::from_utf8_lossy(&e).into_owned()),
        other => Err(format!("answered {other}")),
    }
}

/// The master's `host:port` from the first sentinel that knows it.
pub fn master_address(s: &SentinelSettings) -> Result<String, SentinelError> {
    let mut errors = Vec::new();
    for addr in &s.addresses {
        match ask(addr, s) {
            Ok(a) => return Ok(a),
            Err(e) => errors.push(format!("{addr}: {e}")),
        }
    }
    Err(SentinelError {
        name: s.master_name.clone(),
        errors: errors.join("; "),
    })
}
