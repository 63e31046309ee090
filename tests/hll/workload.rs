//! The seeded random workload, compared command by command with every server.

use super::common::*;

const KEYS: &[&str] = &["h0", "h1", "h2", "h3", "h4", "h5"];

struct Workload<'a> {
    srv: &'a TestServer,
    rng: Rng,
    model: BTreeMap<&'static str, Vec<u8>>,
    max_bytes: usize,
    /// Elements reused on purpose (repeats change nothing and must say so).
    pool: Vec<Vec<u8>>,
    commands: u64,
    comparisons: u64,
    promotions: u64,
    /// Longest sparse value stored, per `hll-sparse-max-bytes` phase.
    longest_sparse: BTreeMap<usize, usize>,
    /// Whether the command being built may offer values above 32 (which promote a sparse
    /// value at once); rare, so sparse values also grow to the size limit.
    high_ok: bool,
}

impl Workload<'_> {
    fn key(&mut self) -> &'static str {
        KEYS[self.rng.below(KEYS.len() as u64) as usize]
    }

    fn element(&mut self) -> Vec<u8> {
        let r = &mut self.rng;
        match r.below(100) {
            0..=29 => {
                let len = r.below(25) as usize;
                r.bytes(len)
            }
            30..=44 => {
                let i = r.below(self.pool.len() as u64) as usize;
                self.pool[i].clone()
            }
            45..=49 => Vec::new(),
            50..=89 => {
                let index = r.below(REGISTERS as u64) as usize;
                let count = if self.high_ok && r.chance(5) {
                    r.range(33, 51) as u8 // needs dense: promotes a sparse value
                } else if r.chance(20) {
                    r.range(9, 32) as u8
                } else {
                    r.range(1, 8) as u8
                };
                crafted(r, index, count)
            }
            _ => {
                // A neighbour of a recent register with a small value: adjacent VALs of the
                // same value are what the merge window fuses.
                let base = (r.below(64) * 256) as usize;
                let index = base + r.below(6) as usize;
                let count = r.range(1, 3) as u8;
                crafted(r, index, count)
            }
        }
    }

    fn elements(&mut self) -> Vec<Vec<u8>> {
        self.high_ok = self.rng.chance(4);
        let n = match self.rng.below(100) {
            0..=69 => self.rng.range(1, 5),
            70..=79 => 0,
            80..=95 => self.rng.range(20, 200),
            _ => self.rng.range(500, 1500),
        };
        (0..n).map(|_| self.element()).collect()
    }

    /// Compare `GET key` with the model.
    fn check(&mut self, key: &str, after: &str) {
        let server = get(self.srv, key);
        let ours = self.model.get(key).map(Vec::as_slice);
        assert_same(
            self.srv.bin(),
            &format!("key {key} after {after} (max bytes {})", self.max_bytes),
            server.as_deref(),
            ours,
        );
        self.comparisons += 1;
    }

    fn store(&mut self, key: &'static str, v: Vec<u8>) {
        let was_sparse = self.model.get(key).is_some_and(|o| o[4] == 1);
        if was_sparse && v[4] == 0 {
            self.promotions += 1;
        }
        if v[4] == 1 {
            let longest = self.longest_sparse.entry(self.max_bytes).or_default();
            *longest = (*longest).max(v.len());
        }
        self.model.insert(key, v);
    }

    fn pfadd(&mut self) {
        let key = self.key();
        let elements = self.elements();
        let refs: Vec<&[u8]> = elements.iter().map(Vec::as_slice).collect();
        let (v, changed) = hll::pfadd(
            self.model.get(key).map(Vec::as_slice),
            &refs,
            self.max_bytes,
        )
        .unwrap_or_else(|e| panic!("our pfadd on {key}: {e}"));
        let mut args: Vec<&[u8]> = vec![b"PFADD", key.as_bytes()];
        args.extend(&refs);
        let what = show_args(&args);
        let r = send(self.srv, &args);
        assert_eq!(r, Reply::Int(changed.into()), "{}: {what}", self.srv.bin());
        self.store(key, v);
        self.check(key, &what);
    }

    fn pfmerge(&mut self) {
        let dest = self.key();
        let n = self.rng.range(1, 3);
        let sources: Vec<&'static str> = (0..n).map(|_| self.key()).collect();
        let values: Vec<&[u8]> = sources
            .iter()
            .filter_map(|k| self.model.get(k).map(Vec::as_slice))
            .collect();
        let v = hll::pfmerge(
            self.model.get(dest).map(Vec::as_slice),
            &values,
            self.max_bytes,
        )
        .unwrap_or_else(|e| panic!("our pfmerge into {dest}: {e}"));
        let mut args: Vec<&[u8]> = vec![b"PFMERGE", dest.as_bytes()];
        args.extend(sources.iter().map(|k| k.as_bytes()));
        let what = show_args(&args);
        let r = send(self.srv, &args);
        assert!(r.is_ok(), "{}: {what} answered {r:?}", self.srv.bin());
        self.store(dest, v);
        self.check(dest, &what);
        for s in sources {
            self.check(s, &what);
        }
    }

    fn pfcount_one(&mut self) {
        let key = self.key();
        let current = self.model.get(key).cloned();
        let expect = hll::pfcount(&[current.as_deref()]).expect("our pfcount");
        if let Some(v) = &current {
            if let Some(updated) = hll::pfcount_update(v).expect("our pfcount_update") {
                self.model.insert(key, updated);
            }
        }
        let what = format!("PFCOUNT {key}");
        let r = send(self.srv, &[b"PFCOUNT", key.as_bytes()]);
        assert_eq!(r, Reply::Int(expect as i64), "{}: {what}", self.srv.bin());
        self.check(key, &what);
    }

    fn pfcount_many(&mut self) {
        let n = self.rng.range(2, 4);
        let keys: Vec<&'static str> = (0..n).map(|_| self.key()).collect();
        let values: Vec<Option<&[u8]>> = keys
            .iter()
            .map(|k| self.model.get(k).map(Vec::as_slice))
            .collect();
        let expect = hll::pfcount(&values).expect("our pfcount");
        let mut args: Vec<&[u8]> = vec![b"PFCOUNT"];
        args.extend(keys.iter().map(|k| k.as_bytes()));
        let what = show_args(&args);
        let r = send(self.srv, &args);
        assert_eq!(r, Reply::Int(expect as i64), "{}: {what}", self.srv.bin());
        for k in keys {
            self.check(k, &what); // unchanged
        }
    }

    fn todense(&mut self) {
        let key = self.key();
        let Some(current) = self.model.get(key).cloned() else {
            return; // the server refuses a missing key; nothing to replay
        };
        let converted = hll::to_dense(&current).expect("our to_dense");
        let what = format!("PFDEBUG TODENSE {key}");
        let r = send(self.srv, &[b"PFDEBUG", b"TODENSE", key.as_bytes()]);
        assert_eq!(
            r,
            Reply::Int(converted.is_some().into()),
            "{}: {what}",
            self.srv.bin()
        );
        if let Some(v) = converted {
            self.store(key, v);
        }
        self.check(key, &what);
    }

    fn del(&mut self) {
        let key = self.key();
        send(self.srv, &[b"DEL", key.as_bytes()]);
        self.model.remove(key);
        self.check(key, "DEL");
    }

    fn step(&mut self) {
        match self.rng.below(100) {
            0..=54 => self.pfadd(),
            55..=69 => self.pfmerge(),
            70..=84 => self.pfcount_one(),
            85..=91 => self.pfcount_many(),
            92..=95 => self.todense(),
            _ => self.del(),
        }
        self.commands += 1;
    }
}

/// Registers reached by crafted elements are what we asked for, as the server sees them.
fn check_crafted_elements(srv: &TestServer, rng: &mut Rng) {
    for (index, count) in [(0usize, 1u8), (1, 32), (77, 33), (16383, 50), (9000, 51)] {
        let e = crafted(rng, index, count);
        send(srv, &[b"DEL", b"probe"]);
        send(srv, &[b"PFADD", b"probe", &e]);
        let regs = send(srv, &[b"PFDEBUG", b"GETREG", b"probe"]);
        let regs = regs.as_array().expect("GETREG array");
        assert_eq!(regs.len(), REGISTERS);
        assert_eq!(
            regs[index],
            Reply::Int(count.into()),
            "{}: register {index}",
            srv.bin()
        );
    }
    send(srv, &[b"DEL", b"probe"]);
}

#[test]
fn workload_matches_servers() {
    let seed = env_u64("HLL_SEED", DEFAULT_SEED);
    let per_phase = env_u64("HLL_COMMANDS", 400);
    let mut summary = Vec::new();
    for bin in servers() {
        let srv = TestServer::start(&bin, &[]).unwrap_or_else(|e| panic!("{e}"));
        let mut rng = Rng::new(seed ^ 0x9e37_79b9);
        check_crafted_elements(&srv, &mut rng);
        assert_eq!(
            srv.config_get("hll-sparse-max-bytes").as_deref(),
            Some("3000"),
            "{bin}: default hll-sparse-max-bytes"
        );
        assert_eq!(hll::DEFAULT_SPARSE_MAX_BYTES, 3000);
        let pool = (0..32u8).map(|i| vec![i; usize::from(i % 9)]).collect();
        let mut w = Workload {
            srv: &srv,
            rng: Rng::new(seed),
            model: BTreeMap::new(),
            max_bytes: 3000,
            pool,
            commands: 0,
            comparisons: 0,
            promotions: 0,
            longest_sparse: BTreeMap::new(),
            high_ok: false,
        };
        // Keys carry over between phases, so a lower limit meets sparse values already past
        // it, and a higher one lets fresh keys grow long.
        for max in [3000usize, 200, 20, 12000, 3000] {
            set_max_bytes(&srv, max);
            w.max_bytes = max;
            for _ in 0..per_phase {
                w.step();
            }
        }
        let line = format!(
            "{bin}: {} commands, {} values compared byte for byte, {} sparse->dense \
             promotions, longest sparse value per max-bytes {:?}",
            w.commands, w.comparisons, w.promotions, w.longest_sparse
        );
        eprintln!("{line}");
        summary.push(line);
    }
    eprintln!("hll workload summary (seed {seed:#x}):");
    for l in &summary {
        eprintln!("  {l}");
    }
}

// ---------------------------------------------------------------------------------------------
// Corrupt and hand-made values
// ---------------------------------------------------------------------------------------------
