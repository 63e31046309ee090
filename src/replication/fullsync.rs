//! Receiving a full sync: the keepalive newlines, the payload header (`$<len>` from a disk
//! save, `$EOF:<mark>` from a diskless one), and the RDB itself, parsed as it arrives into
//! a fresh keyspace.
//!
//! Owns the payload framing. The new keyspace replaces the live one only once the whole
//! file has loaded and its checksum matched: a broken sync never leaves half a dataset.
//! It must never consume a byte of the command stream that follows the payload.

use std::time::Instant;

use tracing::info;

use super::link::{Link, LinkError, PayloadReader};
use crate::keyspace::{load_rdb, Keyspace, LoadReport, RdbIoError};
use crate::rdb::{Options, RdbReader};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{0}")]
    Link(#[from] LinkError),
    #[error("sync payload: {0}")]
    Framing(String),
    #[error("sync payload: {0}")]
    Load(#[from] RdbIoError),
}

/// How the payload is delimited.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Sized(u64),
    Mark([u8; 40]),
}

const MAX_HEADER: usize = 64;

/// Skip the master's keepalive newlines and read the `$...` header line.
pub fn read_header(link: &mut Link) -> Result<Payload, SyncError> {
    link.skip_keepalives()?;
    let line_end = loop {
        if let Some(i) = link.buffered().iter().position(|&b| b == b'\n') {
            break i;
        }
        if link.buffered().len() > MAX_HEADER {
            return Err(SyncError::Framing("payload header line too long".into()));
        }
        link.fill()?;
    };
    let line = link.buffered()[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&link.buffered()[..line_end])
        .to_vec();
    link.consume(line_end + 1);
    let shown = String::from_utf8_lossy(&line).into_owned();
    if line.first() == Some(&b'-') {
        return Err(SyncError::Framing(format!(
            "master error instead of a payload: {shown}"
        )));
    }
    let Some(rest) = line.strip_prefix(b"$") else {
        return Err(SyncError::Framing(format!(
            "expected a payload header, got {shown:?}"
        )));
    };
    if let Some(mark) = rest.strip_prefix(b"EOF:") {
        let mark: [u8; 40] = mark.try_into().map_err(|_| {
            SyncError::Framing(format!("EOF mark of {} bytes, expected 40", mark.len()))
        })?;
        return Ok(Payload::Mark(mark));
    }
    let len = std::str::from_utf8(rest)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| SyncError::Framing(format!("bad payload length {shown:?}")))?;
    Ok(Payload::Sized(len))
}

/// Load the payload into a new keyspace.
pub fn load_payload(
    link: &mut Link,
    payload: &Payload,
) -> Result<(Keyspace, LoadReport), SyncError> {
    let started = Instant::now();
    let remaining = match payload {
        Payload::Sized(n) => Some(*n),
        Payload::Mark(_) => None,
    };
    let opts = Options {
        stop_after_trailer: true,
        ..Options::default()
    };
    let mut ks = Keyspace::new();
    let pr = PayloadReader {
        link,
        remaining,
        read: 0,
    };
    let mut reader = RdbReader::new(pr, remaining, opts).map_err(RdbIoError::from)?;
    // A replica keeps keys whose TTL passed: the master sends their DEL.
    let report = load_rdb(&mut ks, &mut reader, None)?;
    let (pr, leftover) = reader.into_parts();
    let bytes = pr.read - leftover.len() as u64;
    let left_in_payload = pr.remaining;
    match payload {
        Payload::Sized(_) => {
            // Bytes after the RDB's own end inside the payload are ignored, as servers do.
            if !leftover.is_empty() || left_in_payload.is_some_and(|r| r > 0) {
                let extra = leftover.len() as u64 + left_in_payload.unwrap_or(0);
                let mut skip = left_in_payload.unwrap_or(0);
                while skip > 0 {
                    link.fill_to(1)?;
                    let n = (skip as usize).min(link.buffered().len());
                    link.consume(n);
                    skip -= n as u64;
                }
                tracing::warn!(extra, "payload has bytes after the RDB's end; ignored");
            }
        }
        Payload::Mark(mark) => {
            link.unread(&leftover);
            link.fill_to(40)?;
            if link.buffered()[..40] != mark[..] {
                return Err(SyncError::Framing(
                    "diskless payload does not end with its EOF mark".into(),
                ));
            }
            link.consume(40);
        }
    }
    info!(
        keys = report.keys,
        bytes,
        seconds = started.elapsed().as_secs_f64(),
        "full sync loaded"
    );
    Ok((ks, report))
}
