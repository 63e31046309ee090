//! Mutated and hand-made values: the server refuses exactly when we do, else stores our bytes.

use super::common::*;

/// A valid sparse value with random, non-canonical opcodes (XZERO of 1, unfused equal VALs,
/// adjacent zero runs): the servers accept and edit such values, so must we, identically.
pub fn odd_sparse(rng: &mut Rng) -> Vec<u8> {
    let mut v = b"HYLL\x01".to_vec();
    v.extend(rng.bytes(3)); // the unused bytes are never checked
    v.extend(rng.bytes(8)); // any cached cardinality, stale or not
    let mut left = REGISTERS;
    let val_bias = rng.below(90);
    while left > 0 {
        let r = rng.below(100);
        if r < val_bias {
            let len = (rng.range(1, 4) as usize).min(left);
            let value = rng.range(1, 32) as u8;
            v.push(0x80 | ((value - 1) << 2) | (len as u8 - 1));
            left -= len;
        } else if r < 95 {
            let len = (rng.range(1, 64) as usize).min(left);
            v.push(len as u8 - 1);
            left -= len;
        } else {
            let len = (rng.range(1, 3000) as usize).min(left);
            v.push(0x40 | ((len - 1) >> 8) as u8);
            v.push(((len - 1) & 0xff) as u8);
            left -= len;
        }
    }
    v
}

/// A dense value with arbitrary registers (0..=63, including 51 and the unreachable 52..63).
pub fn odd_dense(rng: &mut Rng) -> Vec<u8> {
    let mut v = b"HYLL\x00".to_vec();
    v.extend(rng.bytes(11));
    let style = rng.below(4);
    let body: Vec<u8> = match style {
        0 => rng.bytes(DENSE_LEN - HEADER_LEN), // every register random
        1 => vec![0xff; DENSE_LEN - HEADER_LEN], // every register 63: infinite estimate
        _ => {
            // mostly small values, a few at 51 (the tau term) or above
            let mut regs = vec![0u8; REGISTERS];
            for r in regs.iter_mut() {
                *r = match rng.below(1000) {
                    0..=4 => 51,
                    5..=6 => rng.range(52, 63) as u8,
                    7..=400 => rng.range(1, 12) as u8,
                    _ => 0,
                };
            }
            let mut body = vec![0u8; DENSE_LEN - HEADER_LEN];
            for (i, &r) in regs.iter().enumerate() {
                let bit = i * 6;
                let (byte, shift) = (bit / 8, bit % 8);
                let x = u16::from(r) << shift;
                body[byte] |= x as u8;
                if byte + 1 < body.len() {
                    body[byte + 1] |= (x >> 8) as u8;
                }
            }
            body
        }
    };
    v.extend(body);
    if rng.chance(50) {
        v[15] |= 0x80; // stale, so PFCOUNT recomputes
    }
    v
}

pub fn mutate(rng: &mut Rng, v: &mut Vec<u8>) {
    for _ in 0..rng.range(1, 3) {
        let n = v.len() as u64;
        match rng.below(7) {
            0 if n > 0 => {
                let i = rng.below(n) as usize;
                v[i] ^= 1 << rng.below(8);
            }
            1 if n > 0 => {
                // bytes of the body more often than the header
                let i = rng.range(HEADER_LEN.min(n as usize - 1) as u64, n - 1) as usize;
                v[i] = rng.next() as u8;
            }
            2 if n > 0 => v.truncate(rng.below(n) as usize),
            3 => {
                let extra = rng.range(1, 4) as usize;
                v.extend(rng.bytes(extra));
            }
            4 if n > HEADER_LEN as u64 => {
                let i = rng.range(HEADER_LEN as u64, n - 1) as usize;
                v.remove(i);
            }
            5 if n > 4 => v[4] = rng.below(3) as u8,
            _ if n > HEADER_LEN as u64 => {
                let i = rng.range(HEADER_LEN as u64, n - 1) as usize;
                v.insert(i, rng.next() as u8);
            }
            _ => {}
        }
    }
}

/// The server's verdict on one command: its error code, or the bytes it stored at `key`.
enum Outcome {
    Refused(String),
    Stored(Option<Vec<u8>>),
}

fn outcome(srv: &TestServer, args: &[&[u8]], key: &str) -> Outcome {
    match send(srv, args) {
        Reply::Error(e) => Outcome::Refused(e.split(' ').next().unwrap_or("").to_string()),
        _ => Outcome::Stored(get(srv, key)),
    }
}

/// Tally of one server's corrupt-value trials.
#[derive(Default)]
struct Tally {
    accepted: u64,
    refused: u64,
    unknowable: u64,
    /// Refused by this server although we (and releases before the CVE-2025-32023 bounds
    /// checks) accept: a sparse value covering exactly 16384 registers followed by a VAL.
    strict_refusals: u64,
}

/// A sparse value whose runs reach exactly register 16384 and then go on with a VAL: older
/// releases stop at that VAL when converting or merging and accept the value; releases with
/// the CVE-2025-32023 bounds checks refuse it.
fn val_past_the_end(v: &[u8]) -> bool {
    if v.len() < HEADER_LEN || v[4] != 1 {
        return false;
    }
    let mut idx = 0usize;
    let mut p = HEADER_LEN;
    while p < v.len() {
        let b = v[p];
        if b & 0x80 != 0 {
            let span = usize::from(b & 0x03) + 1;
            if idx + span > REGISTERS {
                return idx == REGISTERS;
            }
            idx += span;
            p += 1;
        } else if b & 0x40 != 0 {
            let Some(&lo) = v.get(p + 1) else {
                return false;
            };
            idx += ((usize::from(b & 0x3f) << 8) | usize::from(lo)) + 1;
            p += 2;
        } else {
            idx += usize::from(b & 0x3f) + 1;
            p += 1;
        }
        if idx > REGISTERS {
            return false;
        }
    }
    false
}

fn compare_outcome(
    bin: &ServerBin,
    tally: &mut Tally,
    what: &str,
    input: &[u8],
    server: Outcome,
    ours: Result<Option<Vec<u8>>, HllError>,
) {
    match (server, ours) {
        (_, Err(HllError::CutOff)) => tally.unknowable += 1,
        (Outcome::Refused(code), Err(e)) => {
            assert_eq!(
                Some(code.as_str()),
                e.server_error_code(),
                "{bin}: {what}: server refused with {code}, we with {e} ({})",
                describe(Some(input))
            );
            tally.refused += 1;
        }
        (Outcome::Stored(stored), Ok(ours)) => {
            assert_same(bin, what, stored.as_deref(), ours.as_deref());
            tally.accepted += 1;
        }
        (Outcome::Refused(code), Ok(_)) if code == "INVALIDOBJ" && val_past_the_end(input) => {
            tally.strict_refusals += 1;
        }
        (Outcome::Refused(code), Ok(_)) => panic!(
            "{bin}: {what}: server refused with {code}, we accepted ({})\n{}",
            describe(Some(input)),
            hex(input)
        ),
        (Outcome::Stored(_), Err(e)) => panic!(
            "{bin}: {what}: server accepted, we refused: {e} ({})",
            describe(Some(input))
        ),
    }
}

#[test]
fn corrupt_values_match_servers() {
    let seed = env_u64("HLL_SEED", DEFAULT_SEED);
    let trials = env_u64("HLL_COMMANDS", 400) * 3;
    let mut rng = Rng::new(seed);
    // Valid values of every shape to start from.
    let mut bases: Vec<Vec<u8>> = Vec::new();
    for n in [1usize, 5, 60, 400, 1200, 3000] {
        let e: Vec<Vec<u8>> = (0..n).map(|_| rng.bytes(8)).collect();
        let refs: Vec<&[u8]> = e.iter().map(Vec::as_slice).collect();
        bases.push(hll::pfadd(None, &refs, usize::MAX).expect("sparse base").0);
        bases.push(hll::pfadd(None, &refs, 0).expect("dense base").0);
    }
    let mut summary = Vec::new();
    for bin in servers() {
        let srv = TestServer::start(&bin, &[]).unwrap_or_else(|e| panic!("{e}"));
        let mut tally = Tally::default();
        for _ in 0..trials {
            let mut v = match rng.below(10) {
                0..=2 => odd_sparse(&mut rng),
                3..=4 => odd_dense(&mut rng),
                _ => bases[rng.below(bases.len() as u64) as usize].clone(),
            };
            if rng.chance(70) {
                mutate(&mut rng, &mut v);
            }
            let max = [3000usize, 3000, 200, 20, 100_000][rng.below(5) as usize];
            set_max_bytes(&srv, max);
            send(&srv, &[b"DEL", b"m", b"d"]);
            send(&srv, &[b"SET", b"m", &v]);
            let other = bases[rng.below(bases.len() as u64) as usize].clone();
            let (what, server, ours) = match rng.below(7) {
                0 | 1 => {
                    let e: Vec<Vec<u8>> = (0..rng.range(1, 40))
                        .map(|_| {
                            let i = rng.below(REGISTERS as u64) as usize;
                            let c = rng.range(1, 40) as u8;
                            crafted(&mut rng, i, c)
                        })
                        .collect();
                    let refs: Vec<&[u8]> = e.iter().map(Vec::as_slice).collect();
                    let mut args: Vec<&[u8]> = vec![b"PFADD", b"m"];
                    args.extend(&refs);
                    let ours = hll::pfadd(Some(&v), &refs, max).map(|(v, _)| Some(v));
                    ("PFADD m ...", outcome(&srv, &args, "m"), ours)
                }
                2 => {
                    let ours =
                        hll::pfcount_update(&v).map(|u| Some(u.unwrap_or_else(|| v.clone())));
                    ("PFCOUNT m", outcome(&srv, &[b"PFCOUNT", b"m"], "m"), ours)
                }
                3 => {
                    send(&srv, &[b"SET", b"d", &other]);
                    let ours = hll::pfmerge(Some(&other), &[&v], max).map(Some);
                    (
                        "PFMERGE d m",
                        outcome(&srv, &[b"PFMERGE", b"d", b"m"], "d"),
                        ours,
                    )
                }
                4 => {
                    let ours = hll::pfmerge(Some(&v), &[&other, &v], max).map(Some);
                    send(&srv, &[b"SET", b"d", &other]);
                    (
                        "PFMERGE m d m",
                        outcome(&srv, &[b"PFMERGE", b"m", b"d", b"m"], "m"),
                        ours,
                    )
                }
                5 => {
                    let ours = hll::to_dense(&v).map(|d| Some(d.unwrap_or_else(|| v.clone())));
                    let args: &[&[u8]] = &[b"PFDEBUG", b"TODENSE", b"m"];
                    ("PFDEBUG TODENSE m", outcome(&srv, args, "m"), ours)
                }
                _ => {
                    // Multi-key count: compare the reply, and that nothing was written.
                    send(&srv, &[b"SET", b"d", &other]);
                    let ours = hll::pfcount(&[Some(&v), Some(&other), None]);
                    let r = send(&srv, &[b"PFCOUNT", b"m", b"d", b"missing"]);
                    let server = match r {
                        Reply::Error(e) => {
                            Outcome::Refused(e.split(' ').next().unwrap_or("").into())
                        }
                        Reply::Int(n) => {
                            if let Ok(c) = &ours {
                                assert_eq!(n, *c as i64, "{bin}: PFCOUNT m d missing");
                            }
                            Outcome::Stored(get(&srv, "m"))
                        }
                        r => panic!("{bin}: PFCOUNT answered {r:?}"),
                    };
                    ("PFCOUNT m d missing", server, ours.map(|_| Some(v.clone())))
                }
            };
            compare_outcome(&bin, &mut tally, what, &v, server, ours);
        }
        let line = format!(
            "{bin}: {} trials: {} accepted with equal bytes, {} refused with the same error, \
             {} refused by this version only (VAL past register 16384), \
             {} cut-off XZERO (server reads past the value; not compared)",
            trials, tally.accepted, tally.refused, tally.strict_refusals, tally.unknowable
        );
        eprintln!("{line}");
        summary.push(line);
    }
    eprintln!("hll corrupt-value summary (seed {seed:#x}):");
    for l in &summary {
        eprintln!("  {l}");
    }
}

/// Dense bytes for the given registers (one byte each, 0..=63).
pub fn dense_from(regs: &[u8], header: &[u8]) -> Vec<u8> {
    let mut v = header[..HEADER_LEN].to_vec();
    v[4] = 0;
    let mut body = vec![0u8; DENSE_LEN - HEADER_LEN];
    for (i, &r) in regs.iter().enumerate() {
        let (byte, shift) = (i * 6 / 8, i * 6 % 8);
        let x = u16::from(r) << shift;
        body[byte] |= x as u8;
        if byte + 1 < body.len() {
            body[byte + 1] |= (x >> 8) as u8;
        }
    }
    v.extend(body);
    v
}
