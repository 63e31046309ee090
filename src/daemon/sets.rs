//! Snapshot sets: one tick (schedule or `POST /snapshot`) of a cluster daemon asks every
//! shard for a snapshot, then writes the set manifest (`sets/<id>/manifest.json`) once
//! each shard's snapshot is stored or failed.
//!
//! Owns the set's id, the wait for the shards' writers (on a thread of its own, never on
//! the schedule's runtime) and the set states the HTTP API reports. Each shard's capture
//! is its own (each consistent at its own offset, as no server offers a cross-shard point
//! in time); the captures are asked back to back, so their pauses do not add up to more
//! than one shard's. It must never write a set manifest before every snapshot it names is
//! stored, never name a failed one, and never overwrite a set.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tracing::{info, warn};

use crate::http::SnapshotStatus;
use crate::snapshot::schedule::Taker;
use crate::snapshot::{JobState, Reason, Snapshotter, TakeError};
use crate::storage::set::{self, SetManifest, SetShard};
use crate::storage::{SnapshotId, Storage};

/// How many finished sets' states are remembered for `GET /snapshot/<id>`.
const HISTORY: usize = 64;

/// One shard as the set taker sees it.
#[derive(Clone)]
pub struct Member {
    pub name: String,
    pub slots: Vec<(u16, u16)>,
    pub primary: String,
    pub snapshotter: Snapshotter,
    pub storage: Arc<dyn Storage>,
    /// The shard's replica status: the primary it is connected to now.
    pub status: Arc<crate::replication::Status>,
}

impl Member {
    /// The primary the shard's link is on now (the one at discovery before it connects).
    fn current_primary(&self) -> String {
        match self.status.master_address.lock() {
            Ok(a) if !a.is_empty() => a.clone(),
            _ => self.primary.clone(),
        }
    }
}

#[derive(Default)]
struct State {
    running: Option<SnapshotId>,
    done: VecDeque<(SnapshotId, SnapshotStatus)>,
}

/// Takes snapshot sets; cheap to clone (the schedule holds one, HTTP another).
#[derive(Clone)]
pub struct SetTaker {
    root: Arc<dyn Storage>,
    members: Arc<Vec<Member>>,
    missing: Arc<Vec<(u16, u16)>>,
    /// How long a shard's writer may take (`[snapshot] timeout`).
    timeout: Duration,
    state: Arc<Mutex<State>>,
    /// (K, N) when N processes share the cluster: this one writes its part of each set
    /// (`sets/<id>/part-K-of-N.json`) and whichever finds every part writes the manifest.
    instance: Option<(u32, u32)>,
}

impl SetTaker {
    pub fn new(
        root: Arc<dyn Storage>,
        members: Vec<Member>,
        missing: Vec<(u16, u16)>,
        timeout: Duration,
        instance: Option<(u32, u32)>,
    ) -> SetTaker {
        SetTaker {
            root,
            members: Arc::new(members),
            missing: Arc::new(missing),
            timeout,
            state: Default::default(),
            instance,
        }
    }

    fn part_key(id: &SnapshotId, k: u32, n: u32) -> String {
        format!("{}/{id}/part-{k}-of-{n}.json", set::SETS_DIR)
    }

    /// Store this instance's part, then the set manifest if every part is there: the
    /// shards of all parts, complete when every part is. `Ok(None)`: parts still missing.
    fn store_shared(
        &self,
        part: &SetManifest,
        k: u32,
        n: u32,
    ) -> Result<Option<SetManifest>, String> {
        let body = serde_json::to_vec_pretty(part).map_err(|e| e.to_string())?;
        self.root
            .put_object(&Self::part_key(&part.id, k, n), &body)
            .map_err(|e| format!("part {k} of {n}: {e}"))?;
        let mut whole = part.clone();
        whole.shards.clear();
        for i in 0..n {
            let key = Self::part_key(&part.id, i, n);
            let Some(b) = self
                .root
                .get_object(&key, crate::storage::MANIFEST_LIMIT)
                .map_err(|e| e.to_string())?
            else {
                return Ok(None);
            };
            let p = set::parse(&key, &b).map_err(|e| e.to_string())?;
            whole.complete &= p.complete;
            whole.shards.extend(p.shards);
        }
        whole
            .shards
            .sort_by_key(|x| x.slots.first().map_or(0, |r| r.0));
        match set::put(self.root.as_ref(), &whole) {
            Ok(()) | Err(crate::storage::StorageError::Exists { .. }) => Ok(Some(whole)),
            Err(e) => Err(e.to_string()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A set's state, for `GET /snapshot/<id>`.
    pub fn status(&self, id: &str) -> Option<SnapshotStatus> {
        let st = self.state();
        if st.running.as_ref().is_some_and(|r| r.as_str() == id) {
            return Some(SnapshotStatus::Running);
        }
        st.done
            .iter()
            .rev()
            .find(|(i, _)| i.as_str() == id)
            .map(|(_, s)| s.clone())
    }

    /// The set being written, if any.
    pub fn running(&self) -> Option<SnapshotId> {
        self.state().running.clone()
    }

    /// Wait (at most `timeout`) for the set being completed to be stored or to fail.
    pub fn wait_idle(&self, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while self.running().is_some() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn finish(&self, id: SnapshotId, status: SnapshotStatus) {
        let mut st = self.state();
        st.running = None;
        st.done.push_back((id, status));
        while st.done.len() > HISTORY {
            st.done.pop_front();
        }
    }

    /// Wait for every shard's snapshot, then store the set manifest.
    fn complete(&self, id: SnapshotId, taken: Vec<(Member, String, Result<SnapshotId, String>)>) {
        let created_at = Utc::now();
        let mut shards = Vec::new();
        let mut stored_all = self.missing.is_empty();
        for (m, primary, t) in taken {
            let mut entry = SetShard {
                shard: m.name.clone(),
                slots: m.slots.clone(),
                primary,
                prefix: set::shard_prefix(&m.name),
                snapshot: None,
                replid: String::new(),
                offset: 0,
                digest: String::new(),
                keys_total: 0,
                bytes: 0,
                error: None,
            };
            let outcome =
                t.and_then(
                    |sid| match m.snapshotter.wait(&sid, self.timeout).map(|s| s.state) {
                        Some(JobState::Stored) => m.storage.get_manifest(&sid).map_err(|e| {
                            format!("snapshot {sid} stored, manifest unreadable: {e}")
                        }),
                        Some(JobState::Failed { error }) => Err(format!("snapshot {sid}: {error}")),
                        Some(JobState::Running) => Err(format!(
                            "snapshot {sid} still running after {} s",
                            self.timeout.as_secs()
                        )),
                        None => Err(format!("snapshot {sid}: no longer known")),
                    },
                );
            match outcome {
                Ok(man) => {
                    entry.snapshot = Some(man.id);
                    entry.replid = man.source.replid;
                    entry.offset = man.source.offset;
                    entry.digest = man.digest;
                    entry.keys_total = man.keys_total;
                    entry.bytes = man.rdb.bytes;
                }
                Err(e) => {
                    stored_all = false;
                    entry.error = Some(e);
                }
            }
            shards.push(entry);
        }
        let failed: Vec<String> = shards
            .iter()
            .filter_map(|s| s.error.as_ref().map(|e| format!("{}: {e}", s.shard)))
            .collect();
        let manifest = SetManifest {
            id: id.clone(),
            created_at,
            complete: stored_all,
            missing_slots: self.missing.to_vec(),
            shards,
            replisnap_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        if let Some((k, n)) = self.instance {
            let status = match self.store_shared(&manifest, k, n) {
                Ok(Some(whole)) => {
                    info!(set = %id, complete = whole.complete, shards = whole.shards.len(),
                        "snapshot set stored: every instance's part is in");
                    if stored_all {
                        SnapshotStatus::Stored
                    } else {
                        SnapshotStatus::Failed(format!("incomplete: {}", failed.join("; ")))
                    }
                }
                Ok(None) => {
                    info!(set = %id, instance = k, instances = n,
                        "snapshot set part stored; another instance completes the set");
                    if stored_all {
                        SnapshotStatus::Stored
                    } else {
                        SnapshotStatus::Failed(format!("incomplete: {}", failed.join("; ")))
                    }
                }
                Err(e) => {
                    warn!(set = %id, error = %e, "snapshot set part not stored");
                    SnapshotStatus::Failed(format!("set part: {e}"))
                }
            };
            self.prune();
            self.finish(id, status);
            return;
        }
        let status = match set::put(self.root.as_ref(), &manifest) {
            Ok(()) if stored_all => {
                info!(set = %id, shards = manifest.shards.len(), "snapshot set stored");
                SnapshotStatus::Stored
            }
            Ok(()) => {
                warn!(set = %id, failed = %failed.join("; "), missing_slots = ?self.missing,
                    "snapshot set stored incomplete");
                SnapshotStatus::Failed(format!("incomplete: {}", failed.join("; ")))
            }
            Err(e) => {
                warn!(set = %id, error = %e, "snapshot set manifest not stored");
                SnapshotStatus::Failed(format!("set manifest: {e}"))
            }
        };
        self.prune();
        self.finish(id, status);
    }

    /// Drop the sets that name a snapshot the shards' retention deleted.
    fn prune(&self) {
        let exists = |shard: &str, sid: &SnapshotId| {
            self.members
                .iter()
                .find(|m| m.name == shard)
                .is_none_or(|m| {
                    !matches!(
                        m.storage.get_manifest(sid),
                        Err(crate::storage::StorageError::NotFound { .. })
                    )
                })
        };
        match set::prune(self.root.as_ref(), exists) {
            Ok((deleted, failed)) => {
                for d in &deleted {
                    info!(set = %d, "snapshot set removed: retention deleted one of its snapshots");
                }
                for (d, e) in &failed {
                    warn!(set = %d, error = %e, "snapshot set not removed");
                }
            }
            Err(e) => warn!(error = %e, "snapshot sets not pruned"),
        }
    }
}

/// The schedule's handle on a [`SetTaker`], emptied when the round ends: the scheduler's
/// tasks live on the process's runtime past a round, and must not keep the shards'
/// storages (and their writer leases) alive into the next one.
#[derive(Clone)]
pub struct Scheduled(Arc<Mutex<Option<SetTaker>>>);

impl Scheduled {
    pub fn new(t: SetTaker) -> Scheduled {
        Scheduled(Arc::new(Mutex::new(Some(t))))
    }

    /// Let go of the taker: later ticks are refused as "shutting down".
    pub fn close(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

impl Taker for Scheduled {
    fn take(&self, reason: Reason) -> Result<String, TakeError> {
        let t = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match t {
            Some(t) => t.take(reason),
            None => Err(TakeError::ShuttingDown),
        }
    }
}

impl Taker for SetTaker {
    /// Ask every shard for its snapshot (each waits only for its own capture), then hand
    /// the wait and the set manifest to a thread. Refused while a set is written, and when
    /// no shard can take one.
    fn take(&self, reason: Reason) -> Result<String, TakeError> {
        let id = {
            let mut st = self.state();
            if let Some(r) = &st.running {
                return Err(TakeError::Busy(r.to_string()));
            }
            let root = self.root.clone();
            let newest = st.done.back().map(|(i, _)| i.clone());
            let instance = self.instance;
            // Shared by several instances, a set's id is the tick's second (the same for
            // every instance on one schedule): only this instance's own part can take it.
            let id = SnapshotId::new_after(Utc::now(), newest.as_ref(), |c| {
                let key = match instance {
                    Some((k, n)) => format!("{}/{c}/part-{k}-of-{n}.json", set::SETS_DIR),
                    None => format!("{}/{c}/manifest.json", set::SETS_DIR),
                };
                !matches!(root.get_object(&key, 1 << 20), Ok(None))
            })
            .map_err(|e| TakeError::Storage(e.into()))?;
            st.running = Some(id.clone());
            id
        };
        let mut taken = Vec::new();
        let mut refusals = Vec::new();
        for m in self.members.iter() {
            let t = m.snapshotter.take(reason).map_err(|e| {
                refusals.push(format!("{}: {e}", m.name));
                e.to_string()
            });
            // Read right after the capture: the primary the captured data came from.
            taken.push((m.clone(), m.current_primary(), t));
        }
        if taken.iter().all(|(_, _, t)| t.is_err()) {
            self.state().running = None;
            return Err(TakeError::NotReady(format!(
                "no shard took a snapshot: {}",
                refusals.join("; ")
            )));
        }
        info!(set = %id, reason = %reason, shards = taken.len(), refused = refusals.len(),
            "snapshot set taken");
        let me = self.clone();
        let set_id = id.clone();
        let spawned = std::thread::Builder::new()
            .name("snapshot-set".into())
            .spawn(move || me.complete(set_id, taken));
        if let Err(e) = spawned {
            self.finish(id.clone(), SnapshotStatus::Failed(format!("thread: {e}")));
            warn!(set = %id, error = %e, "cannot start the snapshot set thread");
        }
        Ok(id.to_string())
    }
}
