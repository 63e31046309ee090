//! The digest oracle for a snapshot taken at a quiet point (the master paused, replisnap at
//! its offset). It owns the answer to "does this snapshot hold what the master holds"; it
//! never changes the master (no `DEBUG RELOAD`: that would rebuild the master's sorted sets
//! compact behind its replicas' backs) and never decides anything about storage.
//!
//! Two facts, two checks (docs/decisions.md, "Two digests, two oracles"):
//! - *As held*: our file, read back with the encodings it carries (a sorted set written
//!   plain stays a skiplist, -0 scores kept), must give the master's live `DEBUG DIGEST`.
//!   This is exact: it fails when replisnap holds a set compact the master holds plain.
//! - *As loaded*: the manifest's digest is what a server answers after loading the file.
//!   It equals the master's live digest, except where no RDB can carry what a running
//!   master holds: a skiplist sorted set that shrank to ≤ 128 members (none over 64 bytes)
//!   is rebuilt compact by every loader and its -0 scores become 0 there (Redis 7.0+,
//!   Valkey: `rdbLoadObject` → `zsetConvert` → `zzlInsertAt`, whose `double2ll` stores -0
//!   as the integer 0). Then it must equal the digest of a fresh server that loaded the
//!   master's own `SAVE` file.

use std::path::Path;

use replisnap::keyspace::{digest_snapshot_as_held, load_rdb, Keyspace};
use replisnap::rdb::{Options, RdbReader};

use crate::support::{ServerBin, TestServer};

/// How a snapshot's manifest digest agreed with the master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agreement {
    /// The manifest's digest is the master's live `DEBUG DIGEST`.
    Live,
    /// Only after a round trip through an RDB (the master's own file agrees).
    AsLoaded,
    /// As loaded only, and not as held either: allowed when `strict_held` is off (a
    /// promoted standby may hold compact what the old primary's stream left plain).
    AsLoadedNotHeld,
}

/// `valkey-9.1`-style name of the server version a digest is computed for.
pub fn target_name(bin: &ServerBin) -> String {
    let (a, b) = bin.major_minor();
    format!("{}-{a}.{b}", bin.kind)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The digest of the RDB at `rdb` with the encodings it carries (a plain sorted set stays
/// plain), as the master would answer holding that data.
pub fn digest_as_held(bin: &ServerBin, rdb: &Path) -> Result<String, String> {
    let shown = rdb.display();
    let len = std::fs::metadata(rdb)
        .map_err(|e| format!("{shown}: {e}"))?
        .len();
    let f = std::fs::File::open(rdb).map_err(|e| format!("{shown}: {e}"))?;
    let mut reader =
        RdbReader::new(f, Some(len), Options::default()).map_err(|e| format!("{shown}: {e}"))?;
    let mut ks = Keyspace::new();
    load_rdb(&mut ks, &mut reader, None).map_err(|e| format!("{shown}: {e}"))?;
    let snap = ks
        .snapshot()
        .ok_or_else(|| format!("{shown}: no snapshot of the loaded keyspace"))?;
    let target = target_name(bin)
        .parse()
        .map_err(|e| format!("{}: {e}", target_name(bin)))?;
    digest_snapshot_as_held(snap, target, now_ms()).map_err(|e| format!("{shown}: {e}"))
}

/// The digest a fresh server answers after loading the master's own `SAVE` file.
pub fn master_round_trip(master: &TestServer) -> Result<String, String> {
    let file = master.save();
    // Copied away: the master may write its dump file again (a fault's SAVE).
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let copy = tmp.path().join("master.rdb");
    std::fs::copy(&file, &copy).map_err(|e| format!("{}: {e}", file.display()))?;
    let loaded = TestServer::start_with_rdb(master.bin(), &copy, &[])
        .map_err(|e| format!("a fresh server loading the master's own file: {e}"))?;
    Ok(loaded.digest())
}

/// Check the snapshot at `rdb` whose manifest says `manifest_digest` against `master`.
/// `strict_held`: the encodings must agree too. Off once the master may be a promoted
/// standby that rebuilt small plain sorted sets compact in a full sync of its own (its
/// stream never said so; a real replica of the old primary differs from it the same way).
/// `round`: the master's own file loaded ([`master_round_trip`]), kept between the checks
/// of one quiet point (the master does not change there); computed when None.
pub fn check_snapshot(
    master: &TestServer,
    rdb: &Path,
    manifest_digest: &str,
    strict_held: bool,
    round: &mut Option<String>,
) -> Result<Agreement, String> {
    let live = master.digest();
    let held = digest_as_held(master.bin(), rdb)?;
    if held != live && strict_held {
        return Err(format!(
            "the snapshot as held {held} != master's live {live}: replisnap holds other data \
             or encodings than the master"
        ));
    }
    if manifest_digest == live && held == live {
        return Ok(Agreement::Live);
    }
    let round = match round {
        Some(r) => r.clone(),
        None => round.insert(master_round_trip(master)?).clone(),
    };
    if manifest_digest == round {
        Ok(if held == live {
            Agreement::AsLoaded
        } else {
            Agreement::AsLoadedNotHeld
        })
    } else {
        Err(format!(
            "manifest digest {manifest_digest} != master's live {live} and != the master's own \
             file loaded {round}"
        ))
    }
}
