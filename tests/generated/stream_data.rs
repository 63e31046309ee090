//! Streams for the generated-RDB dataset: many nodes, deletions, trimming, consumer groups
//! with PELs and consumers, empty streams, extreme IDs, and Redis 8.6 IDMP state.

use crate::client::{array, bytes, Client, Cmd, Rng};
use crate::populate::{n, Caps};

/// The live IDs of a stream, from XRANGE.
fn live_ids(c: &mut Client, key: &str) -> Vec<Vec<u8>> {
    let r = c.run(Cmd::new("XRANGE").arg(key).arg("-").arg("+"));
    array(&r, "XRANGE")
        .iter()
        .map(|e| bytes(&array(e, "XRANGE entry")[0], "XRANGE id"))
        .collect()
}

pub fn streams(c: &mut Client, caps: &Caps, rng: &mut Rng) {
    let key = "stream:big";
    let mut cmds = Vec::new();
    let mut ids = Vec::new();
    let mut ms = 1_700_000_000_000u64;
    for i in 0..780u64 {
        ms += 1 + rng.below(3);
        let seqs = if i % 9 == 0 { 2 } else { 1 };
        for s in 0..seqs {
            let id = format!("{ms}-{s}");
            let mut x = Cmd::new("XADD").arg(key).arg(&id);
            x = match rng.below(10) {
                0..=5 => x
                    .arg("sensor")
                    .arg(n(i))
                    .arg("temp")
                    .arg(format!("{}.{}", rng.below(40), rng.below(10)))
                    .arg("ok")
                    .arg("1"),
                6 => x.arg("sensor").arg(n(i)).arg("temp").arg("-3"),
                7 => x
                    .arg("blob")
                    .arg({
                        let l = rng.below(300) as usize;
                        rng.binary(l)
                    })
                    .arg("")
                    .arg(""),
                _ => {
                    for j in 0..12 {
                        x = x.arg(format!("k{j}")).arg(rng.word(20));
                    }
                    x
                }
            };
            cmds.push(x);
            ids.push(id);
        }
    }
    c.pipe(&cmds);
    // Delete the head, a long run (whole nodes go) and a scattering; then trim exactly.
    let mut del: Vec<&String> = ids[..3].iter().collect();
    del.extend(&ids[300..550]);
    del.extend(ids.iter().skip(5).step_by(13));
    c.run(Cmd::new("XDEL").arg(key).args(del));
    c.run(Cmd::new("XTRIM").arg(key).arg("MAXLEN").arg("400"));
    let live = live_ids(c, key);

    let xg = |args: &[&str]| Cmd::new("XGROUP").args(args.iter());
    let rg = |g: &str, consumer: &str, count: &str, from: &str| {
        Cmd::new("XREADGROUP")
            .arg("GROUP")
            .arg(g)
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(key)
            .arg(from)
    };
    let mut cmds = vec![
        xg(&["CREATE", key, "g1", "0"]),
        rg("g1", "alice", "40", ">"),
        rg("g1", "bob", "25", ">"),
        // Reading the history again bumps delivery counts of alice's first 10.
        rg("g1", "alice", "10", "0"),
        Cmd::new("XACK").arg(key).arg("g1").args(&live[..10]),
        Cmd::new("XCLAIM")
            .arg(key)
            .arg("g1")
            .arg("bob")
            .arg("0")
            .args(&live[10..15])
            .arg("RETRYCOUNT")
            .arg("7"),
        Cmd::new("XCLAIM")
            .arg(key)
            .arg("g1")
            .arg("carol")
            .arg("0")
            .arg(&live[15])
            .arg("TIME")
            .arg("1700000000000"),
        Cmd::new("XAUTOCLAIM")
            .arg(key)
            .arg("g1")
            .arg("erin")
            .arg("0")
            .arg("0-0")
            .arg("COUNT")
            .arg("3"),
        // A pending entry whose message is then deleted.
        Cmd::new("XDEL").arg(key).arg(&live[45]),
        xg(&["CREATE", key, "g2", "$"]),
        xg(&["CREATE", key, "g3", "0"]),
        xg(&["CREATECONSUMER", key, "g3", "dave"]),
        Cmd::new("XREADGROUP")
            .arg("GROUP")
            .arg("g3")
            .arg("frank")
            .arg("COUNT")
            .arg("5")
            .arg("NOACK")
            .arg("STREAMS")
            .arg(key)
            .arg(">"),
    ];
    let mid = String::from_utf8(live[100].clone()).unwrap();
    cmds.push(xg(&["SETID", key, "g3", &mid]));
    if caps.stream_meta {
        cmds.push(xg(&["CREATE", key, "g4", &mid, "ENTRIESREAD", "7"]));
    }
    c.pipe(&cmds);

    extreme_stream(c);

    // Small and empty streams.
    let mut cmds = vec![
        Cmd::new("XADD")
            .arg("stream:emptied")
            .arg("5-1")
            .arg("a")
            .arg("b"),
        Cmd::new("XDEL").arg("stream:emptied").arg("5-1"),
        xg(&["CREATE", "stream:mk", "g", "$", "MKSTREAM"]),
        Cmd::new("XADD")
            .arg("stream:one")
            .arg("1-1")
            .arg("f")
            .arg("v"),
        Cmd::new("XADD")
            .arg("stream:setid")
            .arg("10-0")
            .arg("f")
            .arg("v"),
        Cmd::new("XADD")
            .arg("stream:setid")
            .arg("10-1")
            .arg("f")
            .arg("w"),
        Cmd::new("XDEL").arg("stream:setid").arg("10-0"),
    ];
    cmds.push(if caps.stream_meta {
        Cmd::new("XSETID").args([
            "stream:setid",
            "100-5",
            "ENTRIESADDED",
            "50",
            "MAXDELETEDID",
            "20-0",
        ])
    } else {
        Cmd::new("XSETID").arg("stream:setid").arg("100-5")
    });
    c.pipe(&cmds);
}

/// Extreme IDs (0-1 up to the largest), binary group and consumer names.
fn extreme_stream(c: &mut Client) {
    let key = "stream:extreme";
    let max = u64::MAX;
    let ids = [
        "0-1".to_string(),
        "1-0".to_string(),
        format!("{}-7", 1u64 << 32),
        format!("{}-{}", 1u64 << 63, max),
        format!("{max}-{}", max - 1),
        format!("{max}-{max}"),
    ];
    let mut cmds: Vec<Cmd> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let x = Cmd::new("XADD").arg(key).arg(id);
            if i % 2 == 0 {
                x.arg("f").arg(n(i))
            } else {
                x.arg("g").arg(n(i)).arg("h").arg(b"\x00\xff")
            }
        })
        .collect();
    let group = b"\x00grp\xff".to_vec();
    let consumer = b"\xffcons\x00".to_vec();
    cmds.push(
        Cmd::new("XGROUP")
            .arg("CREATE")
            .arg(key)
            .arg(&group)
            .arg("0"),
    );
    cmds.push(
        Cmd::new("XREADGROUP")
            .arg("GROUP")
            .arg(&group)
            .arg(&consumer)
            .arg("COUNT")
            .arg("4")
            .arg("STREAMS")
            .arg(key)
            .arg(">"),
    );
    cmds.push(Cmd::new("XGROUP").args(["CREATE", key, "at-end", "$"]));
    cmds.push(Cmd::new("XDEL").arg(key).arg(&ids[1]));
    c.pipe(&cmds);
}

/// Redis 8.6 idempotent producers: tracked IDs, a duplicate, a custom duration/size.
pub fn idmp_stream(c: &mut Client) {
    let key = "stream:idmp";
    let add = |pid: &str, iid: &str, v: &str| {
        Cmd::new("XADD")
            .arg(key)
            .arg("IDMP")
            .arg(pid)
            .arg(iid)
            .arg("*")
            .arg("v")
            .arg(v)
    };
    let cmds = vec![
        Cmd::new("XADD").arg(key).arg("*").arg("v").arg("first"),
        Cmd::new("XCFGSET")
            .arg(key)
            .arg("IDMP-DURATION")
            .arg("3600")
            .arg("IDMP-MAXSIZE")
            .arg("50"),
        add("p1", "i1", "1"),
        add("p1", "i2", "2"),
        add("p1", "i1", "dup"),
        add("p2", "q1", "3"),
        Cmd::new("XADD")
            .arg(key)
            .arg("IDMPAUTO")
            .arg("p3")
            .arg("*")
            .arg("v")
            .arg("4"),
    ];
    c.pipe(&cmds);
}
