//! Whether to offer a full sync on a second connection (`[source] dual_channel`) to the
//! server about to be asked for one, remembering which servers refused it.
//!
//! Owns the refusal memory. A server that answered `+DUALCHANNELSYNC`/`+RDBCHANNELSYNC`
//! and then refused a step of it is not offered it again (as the servers' own replicas
//! do: no endless retry against a proxy that passes the answer but not the rest), until
//! it is another server: the master's address changed (Sentinel, a new configuration), or
//! the replication ID it serves changed (a failover behind the same name or proxy,
//! learnt from `+CONTINUE <new id>` or `+FULLRESYNC`). It must never offer dual-channel
//! when it is configured off, and never remember more than [`MAX_REFUSALS`] servers (the
//! addresses come from Sentinel, i.e. from the network).

use tracing::info;

use super::Replica;

impl Replica {
    /// Offer (default) or not a full sync on a second connection where the master has it
    /// (`[source] dual_channel`): see [`super::dualchannel`].
    pub fn set_dual_channel(&mut self, on: bool) {
        self.dual.enabled = on;
    }

    /// During such a sync, hold at most `memory` bytes of the stream in memory and the
    /// rest in a file in `dir` (`state_dir`; default: the system's temp dir, 64 MiB).
    pub fn set_dual_channel_spool(&mut self, dir: std::path::PathBuf, memory: usize) {
        self.spool_dir = dir;
        self.spool_memory = memory;
    }
}

/// The most refusing servers remembered; the oldest is forgotten first.
pub const MAX_REFUSALS: usize = 16;

#[derive(Debug)]
struct Refusal {
    address: String,
    /// The replication ID the server served after refusing (learnt at the next sync with
    /// it); `None` until then.
    replid: Option<String>,
}

#[derive(Debug)]
pub struct DualOffer {
    /// `[source] dual_channel`.
    pub enabled: bool,
    refused: Vec<Refusal>,
    /// The master's address at the last attach ("" before the first).
    master: String,
}

impl DualOffer {
    pub fn new(enabled: bool) -> DualOffer {
        DualOffer {
            enabled,
            refused: Vec::new(),
            master: String::new(),
        }
    }

    /// Offer dual-channel to `address`? `master`: it is the master being attached to
    /// (not `full_sync_from`'s replica); a master at another address than the last one is
    /// another server, offered it again even if it refused before.
    pub fn offer(&mut self, address: &str, master: bool) -> bool {
        if master && address != self.master {
            if !self.master.is_empty() && self.forget(address) {
                info!(
                    address,
                    "the master changed: offering dual-channel full sync again"
                );
            }
            self.master = address.to_string();
        }
        self.enabled && !self.refused.iter().any(|r| r.address == address)
    }

    /// The server at `address` refused a step of a dual-channel sync.
    pub fn refused(&mut self, address: &str) {
        self.forget(address);
        if self.refused.len() >= MAX_REFUSALS {
            self.refused.remove(0);
        }
        self.refused.push(Refusal {
            address: address.to_string(),
            replid: None,
        });
    }

    /// A sync with `address` succeeded and it serves `replid` (what `+CONTINUE` or
    /// `+FULLRESYNC` said). If it refused dual-channel under another replication ID, it
    /// is another server now (a failover behind the same address): offer it again.
    pub fn synced(&mut self, address: &str, replid: &str) {
        let Some(r) = self.refused.iter_mut().find(|r| r.address == address) else {
            return;
        };
        match &r.replid {
            None => r.replid = Some(replid.to_string()),
            Some(id) if id != replid => {
                info!(
                    address, old = %id, new = replid,
                    "the master's replication ID changed: offering dual-channel full sync again"
                );
                self.forget(address);
            }
            Some(_) => {}
        }
    }

    /// Whether `address` has refused (and not been forgotten since).
    #[cfg(test)]
    pub fn has_refused(&self, address: &str) -> bool {
        self.refused.iter().any(|r| r.address == address)
    }

    fn forget(&mut self, address: &str) -> bool {
        let before = self.refused.len();
        self.refused.retain(|r| r.address != address);
        self.refused.len() != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "10.0.0.1:6379";
    const B: &str = "10.0.0.2:6379";
    const R: &str = "10.0.0.3:6379";
    const ID1: &str = "1111111111111111111111111111111111111111";
    const ID2: &str = "2222222222222222222222222222222222222222";

    #[test]
    fn off_is_never_offered() {
        let mut d = DualOffer::new(false);
        assert!(!d.offer(A, true));
        assert!(!d.offer(B, true));
        assert!(!d.offer(R, false));
    }

    #[test]
    fn a_refusal_holds_until_the_master_changes_address() {
        let mut d = DualOffer::new(true);
        assert!(d.offer(A, true));
        d.refused(A);
        assert!(!d.offer(A, true));
        d.synced(A, ID1);
        assert!(
            !d.offer(A, true),
            "the same master, the same ID: still refused"
        );
        // Sentinel points elsewhere: B is offered it, and so is A when it is master again.
        assert!(d.offer(B, true));
        assert!(d.offer(A, true));
        assert!(!d.has_refused(A));
    }

    #[test]
    fn a_refusal_holds_until_the_replication_id_changes() {
        let mut d = DualOffer::new(true);
        assert!(d.offer(A, true));
        d.refused(A);
        // The classic full sync after the refusal learns the ID the master serves.
        d.synced(A, ID1);
        d.synced(A, ID1);
        assert!(!d.offer(A, true));
        // A failover behind the same name: `+CONTINUE <new id>`.
        d.synced(A, ID2);
        assert!(d.offer(A, true));
        // Unrelated servers' syncs change nothing.
        d.refused(A);
        d.synced(B, ID1);
        assert!(!d.offer(A, true));
    }

    #[test]
    fn a_replica_refusing_is_remembered_apart_from_the_master() {
        let mut d = DualOffer::new(true);
        assert!(d.offer(A, true));
        assert!(d.offer(R, false));
        d.refused(R);
        assert!(d.offer(A, true), "the master did not refuse");
        assert!(!d.offer(R, false));
        d.refused(A);
        assert!(!d.offer(A, true));
        assert!(!d.offer(R, false));
    }

    #[test]
    fn the_memory_is_bounded() {
        let mut d = DualOffer::new(true);
        for i in 0..100 {
            d.refused(&format!("10.1.0.{i}:6379"));
        }
        assert_eq!(d.refused.len(), MAX_REFUSALS);
        assert!(d.has_refused("10.1.0.99:6379"));
        assert!(!d.has_refused("10.1.0.0:6379"));
    }
}
