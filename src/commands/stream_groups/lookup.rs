//! Finding a stream's consumer group and a group's consumer, as XGROUP and XCLAIM do. A
//! leaf of `stream_groups`.

use super::super::error::{invalid, ApplyError};
use crate::rdb::value::{Consumer, ConsumerGroup, Stream};

pub(super) fn group_index(s: &Stream, name: &[u8]) -> Result<usize, usize> {
    s.groups.binary_search_by(|g| g.name.as_slice().cmp(name))
}

pub(super) fn group_mut<'a>(
    s: &'a mut Stream,
    cmd: &str,
    key: &[u8],
    name: &[u8],
) -> Result<&'a mut ConsumerGroup, ApplyError> {
    match group_index(s, name) {
        Ok(i) => Ok(&mut s.groups[i]),
        Err(_) => Err(invalid(
            cmd,
            format!(
                "no group {} on key {}: our data differs",
                crate::rdb::error::escape_key(name),
                crate::rdb::error::escape_key(key)
            ),
        )),
    }
}

/// The consumer's index, creating it (as the server does on first use) when missing.
pub(super) fn consumer_index(g: &mut ConsumerGroup, name: &[u8], now: i64) -> usize {
    match g
        .consumers
        .binary_search_by(|c| c.name.as_slice().cmp(name))
    {
        Ok(i) => i,
        Err(i) => {
            g.consumers.insert(
                i,
                Consumer {
                    name: name.to_vec(),
                    seen_time_ms: now,
                    active_time_ms: Some(-1),
                    pending: Vec::new(),
                },
            );
            i
        }
    }
}
