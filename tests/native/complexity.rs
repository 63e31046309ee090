//! One command with a million members (or a DEL of a million keys) costs time linear in
//! its size, not quadratic.

use replisnap::commands::StreamState;
use replisnap::keyspace::Keyspace;

use super::run;

/// Seconds to apply the commands built by `make` to a fresh keyspace (after `setup`).
fn time_all(
    setup: impl Fn(&mut Keyspace, &mut StreamState),
    make: impl Fn() -> Vec<Vec<Vec<u8>>>,
) -> f64 {
    let mut ks = Keyspace::new();
    let mut st = StreamState::default();
    setup(&mut ks, &mut st);
    let commands = make();
    let cpu = || {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
    };
    let t = cpu();
    for c in commands {
        run(&mut ks, &mut st, c);
    }
    cpu() - t
}

/// The best of `runs`: other work on the machine only ever adds time.
fn best_of(runs: usize, f: impl Fn() -> f64) -> f64 {
    (0..runs).map(|_| f()).fold(f64::INFINITY, f64::min)
}

/// How the checks below tell linear from quadratic on a machine whose memory latency
/// grows with the data: a structure of 1 M members does not fit the caches, so each
/// member costs 2-5x what it costs at 100 k (measured on this 2-core VM: ZADD 25x for
/// 10x the members when quiet, 51x beside a build; SADD 18-28x). So the command's own
/// cost is checked against the same members sent as 100 commands of 10 000 into the
/// same key (same structure, same memory: linear is ~1x, anything quadratic in one
/// command's size 100x), and the structure's growth from 100 k to 1 M against 80x
/// (quadratic is 100x before any cache effect).
const ONE_VS_SPLIT: f64 = 3.0;
const GROWTH_10X: f64 = 80.0;

#[test]
fn one_command_of_a_million_members_costs_linear_time() {
    // `name k` then members `range` (with a score or value before each when `pairs`),
    // as commands of at most `per` members.
    let members = |name: &'static [u8], n: usize, per: usize, pairs: bool| {
        move || {
            let mut out = Vec::new();
            for from in (0..n).step_by(per) {
                let mut c = vec![name.to_vec(), b"k".to_vec()];
                for i in from..(from + per).min(n) {
                    if pairs {
                        c.push(format!("{}", i % 1000).into_bytes());
                    }
                    c.push(format!("member:{i}").into_bytes());
                }
                out.push(c);
            }
            out
        }
    };
    let none = |_: &mut Keyspace, _: &mut StreamState| {};
    for (name, pairs) in [
        (&b"SADD"[..], false),
        (b"HSET", true),
        (b"ZADD", true),
        (b"RPUSH", false),
    ] {
        let small = best_of(2, || time_all(none, members(name, 100_000, 100_000, pairs)));
        let big = best_of(2, || {
            time_all(none, members(name, 1_000_000, 1_000_000, pairs))
        });
        let split = best_of(2, || {
            time_all(none, members(name, 1_000_000, 10_000, pairs))
        });
        let label = String::from_utf8_lossy(name);
        println!(
            "{label}: one command of 100 k {small:.3} s, of 1 M {big:.3} s ({:.1}x); \
             1 M as 100 commands {split:.3} s (one/split {:.2}x)",
            big / small,
            big / split
        );
        assert!(
            big / split < ONE_VS_SPLIT,
            "{label}: one command of 1 M {big:.3} s vs 100 commands {split:.3} s"
        );
        assert!(
            big / small < GROWTH_10X,
            "{label}: 1 M {big:.3} s vs 100 k {small:.3} s"
        );
    }
    let keys = |n: usize| {
        move |ks: &mut Keyspace, st: &mut StreamState| {
            for b in 0..n / 10_000 {
                let mut c = vec![b"MSET".to_vec()];
                for i in b * 10_000..(b + 1) * 10_000 {
                    c.extend([format!("key:{i}").into_bytes(), b"v".to_vec()]);
                }
                run(ks, st, c);
            }
        }
    };
    let del = |n: usize, per: usize| {
        move || {
            (0..n)
                .step_by(per)
                .map(|from| {
                    let mut c = vec![b"DEL".to_vec()];
                    c.extend((from..(from + per).min(n)).map(|i| format!("key:{i}").into_bytes()));
                    c
                })
                .collect::<Vec<_>>()
        }
    };
    // The best of three: 100 k DELs take ~20 ms, where one preemption changes the ratio.
    let small = best_of(3, || time_all(keys(100_000), del(100_000, 100_000)));
    let big = best_of(3, || time_all(keys(1_000_000), del(1_000_000, 1_000_000)));
    let split = best_of(3, || time_all(keys(1_000_000), del(1_000_000, 10_000)));
    println!(
        "DEL: one command of 100 k keys {small:.3} s, of 1 M {big:.3} s ({:.1}x); \
         1 M as 100 commands {split:.3} s (one/split {:.2}x)",
        big / small,
        big / split
    );
    assert!(
        big / split < ONE_VS_SPLIT,
        "DEL: one command of 1 M {big:.3} s vs 100 commands {split:.3} s"
    );
    assert!(big / small < GROWTH_10X, "DEL: {big:.3} s vs {small:.3} s");
}
