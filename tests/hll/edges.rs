//! Edge cases, propagation to a real replica, and garbage that must never panic.

use super::common::*;
use super::corrupt::{dense_from, mutate, odd_sparse};

/// The edge cases, each on every server, so they do not depend on the random draw.
#[test]
fn edge_cases_match_servers() {
    let stale_header = b"HYLL\x00\x00\x00\x00\x11\x22\x33\x44\x55\x66\x77\xf8";
    // Every register 63: the estimate is 1/0; the server stores 0x8000000000000000.
    let all63 = dense_from(&[63; REGISTERS], stale_header);
    // Some registers at 51 (the tau term of the estimator) and above 51 (ignored).
    let mut regs = vec![0u8; REGISTERS];
    for (i, r) in regs.iter_mut().enumerate() {
        *r = match i % 97 {
            0 => 51,
            1 => 52 + (i % 12) as u8,
            2..=40 => 1 + (i % 20) as u8,
            _ => 0,
        };
    }
    let tau = dense_from(&regs, stale_header);
    // A valid sparse value followed by a VAL past the last register.
    let mut trailing = b"HYLL\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80".to_vec();
    trailing.extend([0x84, 0x7f, 0xfe, 0x88]); // VAL 2 x1, XZERO 16383, VAL 3 x1 (extra)

    for bin in servers() {
        let srv = TestServer::start(&bin, &[]).unwrap_or_else(|e| panic!("{e}"));
        for (name, v) in [("all registers 63", &all63), ("registers at 51", &tau)] {
            send(&srv, &[b"SET", b"k", v]);
            let expect = hll::pfcount_update(v).unwrap().expect("stale");
            let reply = send(&srv, &[b"PFCOUNT", b"k"]);
            let card = hll::pfcount(&[Some(&expect)]).unwrap();
            assert_eq!(reply, Reply::Int(card as i64), "{bin}: PFCOUNT of {name}");
            assert_same(&bin, name, get(&srv, "k").as_deref(), Some(&expect));
            // Multi-key: the raw-register path of the same estimator.
            let reply = send(&srv, &[b"PFCOUNT", b"k", b"nokey"]);
            let union = hll::pfcount(&[Some(v), None]).unwrap();
            assert_eq!(
                reply,
                Reply::Int(union as i64),
                "{bin}: union count of {name}"
            );
        }
        assert_eq!(hll::pfcount(&[Some(&all63), None]).unwrap(), 1 << 63);

        send(&srv, &[b"DEL", b"k", b"d"]);
        send(&srv, &[b"PFADD", b"k"]);
        let (created, _) = hll::pfadd(None, &[], 3000).unwrap();
        assert_same(
            &bin,
            "PFADD k (no elements)",
            get(&srv, "k").as_deref(),
            Some(&created),
        );
        send(&srv, &[b"PFMERGE", b"d", b"nokey"]);
        let merged = hll::pfmerge(None, &[], 3000).unwrap();
        assert_same(
            &bin,
            "PFMERGE d nokey",
            get(&srv, "d").as_deref(),
            Some(&merged),
        );

        // Grow a sparse value one element at a time up to the size limit and over it: every
        // step, and the promotion itself, must match.
        let mut rng = Rng::new(DEFAULT_SEED);
        for max in [3000usize, 200] {
            set_max_bytes(&srv, max);
            send(&srv, &[b"DEL", b"g"]);
            let mut ours: Option<Vec<u8>> = None;
            let mut steps = 0;
            let mut longest = 0;
            while ours.as_ref().is_none_or(|v| v[4] == 1) {
                let i = rng.below(REGISTERS as u64) as usize;
                let c = rng.range(1, 32) as u8;
                let e = crafted(&mut rng, i, c);
                let (v, changed) = hll::pfadd(ours.as_deref(), &[&e], max).unwrap();
                let reply = send(&srv, &[b"PFADD", b"g", &e]);
                assert_eq!(
                    reply,
                    Reply::Int(changed.into()),
                    "{bin}: growth step {steps}"
                );
                assert_same(&bin, "growth", get(&srv, "g").as_deref(), Some(&v));
                if v[4] == 1 {
                    longest = longest.max(v.len());
                }
                ours = Some(v);
                steps += 1;
            }
            assert!(
                longest + 3 > max,
                "{bin}: promoted at {longest} bytes, limit {max}"
            );
            eprintln!(
                "{bin}: grew sparse to {longest} bytes, promoted at step {steps} (limit {max})"
            );
        }
        set_max_bytes(&srv, 3000);

        send(&srv, &[b"SET", b"k", &trailing]);
        let ours = hll::to_dense(&trailing).unwrap().expect("sparse");
        let verdict = match send(&srv, &[b"PFDEBUG", b"TODENSE", b"k"]) {
            Reply::Error(e) => {
                assert!(e.starts_with("INVALIDOBJ"), "{bin}: {e}");
                "refuses (CVE-2025-32023 bounds checks)"
            }
            _ => {
                assert_same(
                    &bin,
                    "TODENSE trailing VAL",
                    get(&srv, "k").as_deref(),
                    Some(&ours),
                );
                "accepts, same bytes"
            }
        };
        eprintln!("{bin}: edge cases equal; a VAL past register 16384: {verdict}");
    }
}

// ---------------------------------------------------------------------------------------------
// Propagation, seen from a real replica
// ---------------------------------------------------------------------------------------------

#[test]
fn count_and_todense_propagate() {
    for bin in crate::support::require_matrix() {
        let master = TestServer::start(&bin, &[]).unwrap_or_else(|e| panic!("{e}"));
        let port = master.port().to_string();
        let replica = TestServer::start(&bin, &["--replicaof", "127.0.0.1", &port])
            .unwrap_or_else(|e| panic!("{e}"));
        crate::support::wait_for(
            &format!("{bin} replica link"),
            Duration::from_secs(20),
            || {
                replica
                    .info_field("replication", "master_link_status")
                    .as_deref()
                    == Some("up")
            },
        );
        let sync = || {
            let r = master.must(&["WAIT", "1", "5000"]);
            assert_eq!(r.as_int(), Some(1), "{bin}: WAIT");
        };
        let both = |key: &str| (get(&master, key), get(&replica, key));

        master.must(&["PFADD", "a", "x", "y", "z"]);
        master.must(&["PFADD", "b", "p", "q"]);
        sync();
        let (m, r) = both("a");
        let stale = m.clone().expect("a exists");
        assert_eq!(
            stale[15] & 0x80,
            0x80,
            "{bin}: PFADD leaves the cache stale"
        );
        assert_eq!(m, r);

        // Several keys: nothing is written, anywhere.
        master.must(&["PFCOUNT", "a", "b"]);
        sync();
        let (m, r) = both("a");
        assert_eq!(
            m.as_deref(),
            Some(stale.as_slice()),
            "{bin}: multi-key PFCOUNT wrote"
        );
        assert_eq!(r.as_deref(), Some(stale.as_slice()));

        // One key with a stale cache: written on the master and propagated.
        master.must(&["PFCOUNT", "a"]);
        sync();
        let (m, r) = both("a");
        let counted = hll::pfcount_update(&stale)
            .unwrap()
            .expect("stale cache is recomputed");
        assert_eq!(
            m.as_deref(),
            Some(counted.as_slice()),
            "{bin}: master after PFCOUNT"
        );
        assert_eq!(
            r.as_deref(),
            Some(counted.as_slice()),
            "{bin}: PFCOUNT not propagated"
        );

        // PFDEBUG TODENSE (and GETREG) on a sparse value: converted and propagated.
        let b_before = get(&master, "b").expect("b exists");
        master.must(&["PFDEBUG", "TODENSE", "a"]);
        master.must(&["PFDEBUG", "GETREG", "b"]);
        sync();
        for (key, before) in [("a", counted), ("b", b_before)] {
            let (m, r) = both(key);
            let dense = hll::to_dense(&before).unwrap();
            let dense = dense.as_deref().unwrap_or(&before);
            assert_eq!(
                m.as_deref(),
                Some(dense),
                "{bin}: master {key} after PFDEBUG"
            );
            assert_eq!(
                r.as_deref(),
                Some(dense),
                "{bin}: PFDEBUG on {key} not propagated"
            );
        }
        eprintln!("{bin}: PFCOUNT (one key, stale) and PFDEBUG TODENSE/GETREG reach the replica");
    }
}

// ---------------------------------------------------------------------------------------------
// No server: garbage in, error out, never a panic
// ---------------------------------------------------------------------------------------------

#[test]
fn garbage_never_panics() {
    let mut rng = Rng::new(env_u64("HLL_SEED", DEFAULT_SEED) ^ 0xabcdef);
    let mut errors = 0u64;
    let mut bases = Vec::new();
    for n in [3usize, 300, 2000] {
        let e: Vec<Vec<u8>> = (0..n).map(|_| rng.bytes(6)).collect();
        let refs: Vec<&[u8]> = e.iter().map(Vec::as_slice).collect();
        bases.push(hll::pfadd(None, &refs, usize::MAX).unwrap().0);
        bases.push(hll::pfadd(None, &refs, 0).unwrap().0);
    }
    // Plain garbage and truncations of the header.
    for len in 0..40 {
        let g = rng.bytes(len);
        assert!(hll::pfcount_update(&g).is_err() || g.starts_with(b"HYLL"));
        for cut in 0..HEADER_LEN.min(len) {
            assert!(hll::pfadd(Some(&bases[0][..cut]), &[b"x"], 3000).is_err());
        }
    }
    assert!(matches!(
        hll::pfadd(Some(&bases[1][..DENSE_LEN - 1]), &[], 3000),
        Err(HllError::BadDenseLength { .. })
    ));
    for round in 0..20_000u64 {
        let mut v = if round % 5 == 0 {
            odd_sparse(&mut rng)
        } else {
            bases[(round % bases.len() as u64) as usize].clone()
        };
        mutate(&mut rng, &mut v);
        let e = rng.bytes(5);
        let results = [
            hll::pfadd(Some(&v), &[&e, b""], rng.range(0, 5000) as usize).map(|_| ()),
            hll::pfmerge(Some(&v), &[&bases[0]], 3000).map(|_| ()),
            hll::pfmerge(None, &[&bases[1], &v], 3000).map(|_| ()),
            hll::pfcount_update(&v).map(|_| ()),
            hll::pfcount(&[Some(&v), None]).map(|_| ()),
            hll::to_dense(&v).map(|_| ()),
        ];
        errors += results.iter().filter(|r| r.is_err()).count() as u64;
    }
    assert!(errors > 0);
    eprintln!("garbage: 20000 mutated values, {errors} operations refused, no panic");
}
