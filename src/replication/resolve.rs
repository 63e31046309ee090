//! Where the next connection goes: the address a resolver answers (a cluster shard's
//! current primary, [`crate::cluster::ShardFollower::primary`]), else Sentinel's answer,
//! else `Settings::address`. Asked before every connection, so a failover is followed at
//! the next reconnect; a changed answer is logged.
//!
//! It must never guess an address: a resolver's or Sentinel's error is a retryable
//! connect-class link error and the replica backs off and asks again.

use tracing::info;

use super::{sentinel, ReplError, Replica};

/// Answers the master's `host:port` before each connection, or why it cannot.
pub type Resolver = Box<dyn Fn() -> Result<String, String> + Send>;

impl Replica {
    /// Find the master with `r` before every connection (it wins over Sentinel and
    /// `Settings::address`).
    pub fn set_resolver(&mut self, r: Resolver) {
        self.resolver = Some(r);
    }

    /// The address to connect to now.
    pub(super) fn master_address(&self) -> Result<String, ReplError> {
        let a = if let Some(r) = &self.resolver {
            let a = r().map_err(ReplError::Resolve)?;
            if a != self.last_address {
                info!(address = %a, "resolver: master address");
            }
            a
        } else if let Some(sen) = &self.sentinel {
            let a = sentinel::master_address(sen)?;
            if a != self.last_address {
                info!(master = %sen.master_name, address = %a, "sentinel: master address");
            }
            a
        } else {
            self.settings.address.clone()
        };
        Ok(a)
    }
}
