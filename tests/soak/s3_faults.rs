//! The S3 daemon's faults, injected by the HTTP proxy in front of SeaweedFS
//! (tests/storage_s3/proxy.rs) into one snapshot on demand: a 500 on an UploadPart or the
//! manifest's PutObject, 503 SlowDown on an UploadPart or the CompleteMultipartUpload, the
//! connection reset half-way through a part, a stalled answer (the SDK's read timeout ends
//! it), a 412 on the manifest (injected: refused, the snapshot fails; or the answer lost,
//! the retry meets the store's own 412 and finds its own manifest there); and `kill -9` of
//! the S3 daemon mid-upload, then a restart. Each is armed once (the retries absorb it:
//! the snapshot must be stored) or `MAX_ATTEMPTS` times in a row (the upload should fail
//! and leave nothing; a scheduled snapshot taking some of the faults makes it miss its
//! aim, never a violation). It never checks a snapshot's content (quiet points do).

use std::time::{Duration, Instant};

use crate::s3::{MAX_ATTEMPTS, PREFIX};
use crate::s3proxy::{Fault, Rule};
use crate::support::wait_until;
use crate::world::Soak;

const OK: &str = "replisnap_uploads_total{result=\"ok\"}";
const ERR: &str = "replisnap_uploads_total{result=\"error\"}";
const RETRIES: &str = "replisnap_upload_retries_total";

fn rule(method: &'static str, contains: &str, times: usize, fault: Fault) -> Rule {
    Rule {
        method,
        contains: vec![contains.into()],
        times,
        fault,
    }
}

/// Once (survived) or `MAX_ATTEMPTS` times (fails the upload), at random.
fn times(s: &mut Soak) -> usize {
    if s.rng.below(2) == 0 {
        1
    } else {
        MAX_ATTEMPTS
    }
}

pub fn error_500(s: &mut Soak) -> Option<Instant> {
    let n = times(s);
    let target = ["partNumber=2&", "manifest.json"][s.rng.below(2) as usize];
    let r = rule("PUT", target, n, Fault::Status(500, "InternalError"));
    upload_fault(s, "s3-500", vec![r], n == 1)
}

pub fn slow_down(s: &mut Soak) -> Option<Instant> {
    let n = times(s);
    let r = if s.rng.below(2) == 0 {
        rule("PUT", "partNumber=1&", n, Fault::Status(503, "SlowDown"))
    } else {
        rule("POST", "uploadId=", n, Fault::Status(503, "SlowDown"))
    };
    upload_fault(s, "s3-503-slowdown", vec![r], n == 1)
}

pub fn reset(s: &mut Soak) -> Option<Instant> {
    let n = times(s);
    let r = rule("PUT", "partNumber=2&", n, Fault::CloseMidBody);
    upload_fault(s, "s3-reset-mid-part", vec![r], n == 1)
}

/// A part's answer never comes: the SDK gives up after `read_timeout_seconds` and retries.
pub fn stall(s: &mut Soak) -> Option<Instant> {
    let r = rule("PUT", "partNumber=1&", 1, Fault::Stall);
    upload_fault(s, "s3-stall", vec![r], true)
}

/// The manifest's conditional PutObject: a 412 injected (someone else's manifest, as far
/// as the daemon can tell: the snapshot fails, its dump.rdb is removed), or the answer
/// lost (the retry gets the store's real 412; the manifest there is ours: stored).
pub fn precondition(s: &mut Soak) -> Option<Instant> {
    if s.rng.below(2) == 0 {
        let r = rule(
            "PUT",
            "manifest.json",
            1,
            Fault::Status(412, "PreconditionFailed"),
        );
        upload_fault(s, "s3-412", vec![r], false)
    } else {
        let r = rule("PUT", "manifest.json", 1, Fault::LoseAnswer);
        upload_fault(s, "s3-412", vec![r], true)
    }
}

/// One snapshot on demand with `rules` armed. `survive`: the retries must absorb the
/// faults (the snapshot stored); else it should fail. Counters: an upload error only for
/// a fault, every fault retried or failing its upload. Then nothing partial may stay.
fn upload_fault(
    s: &mut Soak,
    name: &'static str,
    rules: Vec<Rule>,
    survive: bool,
) -> Option<Instant> {
    let side = &s.s3;
    // Armed while no upload is in flight; a request refused because a scheduled snapshot
    // started meanwhile is tried again (faults that one took still count as injected).
    let mut before_ours = 0;
    let mut tries = 0;
    let (ok0, err0, retry0, stored, out, took) = loop {
        tries += 1;
        wait_until(Duration::from_secs(10), || {
            side.pending().is_ok_and(|p| p.is_empty())
        });
        let (ok0, err0, retry0) = (
            side.rs.total(OK),
            side.rs.total(ERR),
            side.rs.total(RETRIES),
        );
        before_ours += side.proxy.take_injected().len();
        for r in &rules {
            side.proxy.add(r.clone());
        }
        let t = Instant::now();
        let (stored, out) = side.rs.snapshot_once();
        let busy = out.contains("still running") || out.contains("already running");
        if !busy || tries >= 20 {
            break (ok0, err0, retry0, stored, out, t.elapsed());
        }
        side.proxy.clear();
        std::thread::sleep(Duration::from_millis(500));
    };
    side.proxy.clear();
    let injected = side.proxy.take_injected().len() as f64;
    // The retry counter is copied from the storage every second.
    let settled = wait_until(Duration::from_secs(5), || {
        side.rs.total(RETRIES) - retry0 + side.rs.total(ERR) - err0 >= injected
    });
    let (d_ok, d_err, d_retry) = (
        side.rs.total(OK) - ok0,
        side.rs.total(ERR) - err0,
        side.rs.total(RETRIES) - retry0,
    );
    let mut bad = Vec::new();
    eprintln!(
        "soak: {name}: {injected} injected, snapshot {} in {:.1} s; uploads ok +{d_ok} error \
         +{d_err}, retries +{d_retry}",
        if stored { "stored" } else { "failed" },
        took.as_secs_f64()
    );
    if injected == 0.0 {
        bad.push(format!("{name}: no request matched the fault ({out})"));
    }
    if d_err > injected {
        bad.push(format!(
            "{name}: uploads_total{{result=\"error\"}} +{d_err} for {injected} faults"
        ));
    }
    if !settled {
        bad.push(format!(
            "{name}: {injected} faults, but retries +{d_retry} and upload errors +{d_err}"
        ));
    }
    if survive && !stored {
        bad.push(format!(
            "{name}: one fault, retried, yet no snapshot: {out}"
        ));
    }
    if stored {
        let id = out.trim().to_string();
        match side.rs.listing() {
            Ok((l, _)) if l.iter().any(|m| m.id.as_str() == id) => {}
            Ok(_) => bad.push(format!("{name}: snapshot {id} stored but not listed")),
            Err(e) => bad.push(format!("{name}: list: {e}")),
        }
    } else if d_err < 1.0 {
        bad.push(format!(
            "{name}: the snapshot failed ({out}) but uploads_total{{result=\"error\"}} did not grow"
        ));
    }
    // Nothing partial stays: a moment with no upload in flight and nothing orphaned.
    let mut left = Vec::new();
    let clean = wait_until(Duration::from_secs(20), || {
        left = side.leftovers(Duration::ZERO);
        left.is_empty()
    });
    if !clean {
        bad.push(format!("{name}: left in the bucket: {left:?}"));
    }
    s.report.s3_injected += injected as u32 + before_ours as u32;
    if stored == survive && injected > 0.0 {
        s.report.kind(name).on_target += 1;
    }
    for b in bad {
        s.report.violation(b);
    }
    Some(Instant::now())
}

/// `kill -9` of the S3 daemon while its snapshot's part 2 is held (a stall), so the
/// multipart upload is open; restart (it waits out the dead holder's lease). On target when
/// the orphan upload was there after the kill; after the restart it must be aborted and
/// the killed snapshot nowhere. Recovery counts from the restart being ready.
pub fn kill9(s: &mut Soak) -> Option<Instant> {
    let side = &mut s.s3;
    side.proxy.take_log();
    side.proxy
        .add(rule("PUT", "partNumber=2&", 1, Fault::Stall));
    // Ours, or a scheduled one already running (the request is then refused): whichever
    // upload reaches part 2 is held there and killed.
    let (code, out, err) = side.rs.verb(&["snapshot"]);
    let mut seen = Vec::new();
    let mut held = None;
    let hit = wait_until(Duration::from_secs(30), || {
        seen.extend(side.proxy.take_log());
        held = seen
            .iter()
            .find(|l| l.starts_with("PUT") && l.contains("partNumber=2&"))
            .cloned();
        held.is_some()
    });
    side.rs.kill9();
    side.proxy.clear();
    let stalled = side.proxy.take_injected().len() as u32;
    // "PUT /<bucket>/<prefix><id>/dump.rdb?partNumber=2&uploadId=…"
    let id = held
        .as_deref()
        .and_then(|l| l.split_once(PREFIX))
        .and_then(|(_, rest)| rest.split_once('/'))
        .map_or(String::new(), |(id, _)| id.to_string());
    let key = format!("{PREFIX}{id}/dump.rdb");
    let orphan = side
        .pending()
        .is_ok_and(|p| p.iter().any(|(k, _)| *k == key));
    let mut bad = Vec::new();
    if !hit {
        bad.push(format!(
            "s3-kill9: no upload reached part 2 within 30 s (request: {code} {out}{err})"
        ));
    }
    if let Err(e) = side.rs.start() {
        s.report.violation(format!("s3-kill9: restart: {e}"));
        return None;
    }
    let t = Instant::now();
    let mut pending = Vec::new();
    let clean = wait_until(Duration::from_secs(30), || {
        pending = side.pending().unwrap_or_default();
        !pending.iter().any(|(k, _)| *k == key)
    });
    if !clean {
        bad.push(format!(
            "s3-kill9: the killed snapshot's upload {key} still open after the restart: {pending:?}"
        ));
    }
    match side.rs.listing() {
        Ok((l, _)) if l.iter().any(|m| m.id.as_str() == id) => {
            bad.push(format!("s3-kill9: the killed snapshot {id} is listed"))
        }
        Ok(_) => {}
        Err(e) => bad.push(format!("s3-kill9: list: {e}")),
    }
    s.report.s3_injected += stalled;
    if hit && orphan {
        s.report.kind("s3-kill9-upload").on_target += 1;
    }
    for b in bad {
        s.report.violation(b);
    }
    Some(t)
}
