//! The rest of the generated-RDB dataset: hash field TTLs, functions, key expiries and the
//! keys of databases 1, 5 and 15.

use crate::client::{Client, Cmd, Rng};
use crate::populate::{n, Caps, EXP};

pub fn hash_ttls(c: &mut Client, caps: &Caps, rng: &mut Rng) {
    let at = |d: u64| (EXP + d).to_string();
    let mut big = Cmd::new("HSET").arg("httl:big");
    for i in 0..600 {
        big = big.arg(format!("f{i}")).arg(rng.word(8));
    }
    let mut cmds = vec![
        Cmd::new("HSET")
            .arg("httl:small")
            .args(["a", "1", "b", "2", "c", "3", "d", "", "e", "12345"]),
        Cmd::new("HPEXPIREAT")
            .arg("httl:small")
            .arg(at(1000))
            .arg("FIELDS")
            .arg("2")
            .arg("a")
            .arg("b"),
        Cmd::new("HPEXPIREAT")
            .arg("httl:small")
            .arg(at(5))
            .arg("FIELDS")
            .arg("1")
            .arg("e"),
        big,
        Cmd::new("HSET")
            .arg("httl:persist")
            .args(["x", "1", "y", "2", "z", "3"]),
        Cmd::new("HPEXPIREAT")
            .arg("httl:persist")
            .arg(at(77))
            .arg("FIELDS")
            .arg("3")
            .args(["x", "y", "z"]),
        Cmd::new("HPERSIST")
            .arg("httl:persist")
            .arg("FIELDS")
            .arg("1")
            .arg("y"),
        Cmd::new("HSET")
            .arg("httl:keyttl")
            .args(["p", "1", "q", "2"]),
        Cmd::new("HPEXPIREAT")
            .arg("httl:keyttl")
            .arg(at(9))
            .arg("FIELDS")
            .arg("1")
            .arg("q"),
        Cmd::new("PEXPIREAT").arg("httl:keyttl").arg(at(12)),
    ];
    for i in (0..600).step_by(11) {
        cmds.push(
            Cmd::new("HPEXPIREAT")
                .arg("httl:big")
                .arg(at(1_000_000 + i * 3))
                .arg("FIELDS")
                .arg("1")
                .arg(format!("f{i}")),
        );
    }
    if caps.hsetex {
        cmds.push(
            Cmd::new("HSETEX")
                .arg("httl:hsetex")
                .arg("PXAT")
                .arg(at(4242))
                .arg("FIELDS")
                .arg("2")
                .args(["x", "1", "y", "two"]),
        );
        cmds.push(Cmd::new("HSET").arg("httl:hsetex").arg("z").arg("3"));
    }
    c.pipe(&cmds);
}

pub fn functions(c: &mut Client) {
    let libs = [
        "#!lua name=replisnap_one\nredis.register_function('rs_one', function(keys, args) return 1 end)\n",
        "#!lua name=replisnap_two\nlocal function echo(keys, args)\n  return args[1]\nend\nredis.register_function{function_name='rs_echo', callback=echo, flags={'no-writes'}}\nredis.register_function('rs_two', function() return 2 end)\n",
    ];
    for lib in libs {
        c.run(Cmd::new("FUNCTION").arg("LOAD").arg(lib));
    }
}

pub fn expiries(c: &mut Client, rng: &mut Rng) {
    let at = |d: u64| (EXP + d).to_string();
    let mut cmds = vec![
        Cmd::new("SET").arg("exp:str").arg("v"),
        Cmd::new("PEXPIREAT").arg("exp:str").arg(at(1)),
        Cmd::new("RPUSH").arg("exp:list").args(["a", "b"]),
        Cmd::new("PEXPIREAT").arg("exp:list").arg(at(2)),
        Cmd::new("SADD").arg("exp:set").args(["1", "2"]),
        Cmd::new("PEXPIREAT").arg("exp:set").arg(at(3)),
        Cmd::new("ZADD").arg("exp:zset").args(["1", "a"]),
        Cmd::new("PEXPIREAT").arg("exp:zset").arg(at(4)),
        Cmd::new("HSET").arg("exp:hash").args(["a", "1"]),
        Cmd::new("PEXPIREAT").arg("exp:hash").arg(at(5)),
        Cmd::new("XADD").arg("exp:stream").args(["1-1", "a", "1"]),
        Cmd::new("PEXPIREAT").arg("exp:stream").arg(at(6)),
        Cmd::new("SET").arg("exp:sec").arg("v"),
        Cmd::new("EXPIREAT")
            .arg("exp:sec")
            .arg((EXP / 1000 + 7).to_string()),
        Cmd::new("SET").arg("exp:rel").arg("v"),
        Cmd::new("EXPIRE").arg("exp:rel").arg("100000000"),
        Cmd::new("SET").arg("exp:big").arg("v"),
        // Year 9999: near the largest expiry a server accepts in practice.
        Cmd::new("PEXPIREAT").arg("exp:big").arg("253402300799999"),
    ];
    for i in (0..1000).step_by(10) {
        cmds.push(
            Cmd::new("PEXPIREAT")
                .arg(format!("k:{i:04}"))
                .arg(at(rng.below(1_000_000_000))),
        );
    }
    c.pipe(&cmds);
}

pub fn other_dbs(c: &mut Client, caps: &Caps, rng: &mut Rng) {
    c.select(1);
    c.pipe(&[
        Cmd::new("SET").arg("db1:str").arg("one"),
        Cmd::new("SET").arg("").arg("empty key in db 1"),
        Cmd::new("RPUSH").arg("db1:list").args(["x", "y", "z"]),
        Cmd::new("PEXPIREAT")
            .arg("db1:list")
            .arg((EXP + 11).to_string()),
        Cmd::new("HSET").arg("db1:hash").args(["a", "1", "b", "2"]),
    ]);
    c.select(5);
    let mut cmds = vec![
        Cmd::new("ZADD").arg("db5:zset").args(["1", "a", "2", "b"]),
        Cmd::new("SADD").arg("db5:set").args(["p", "q"]),
        Cmd::new("SET").arg("12345").arg("same key as db 0"),
    ];
    for i in 0..30u64 {
        cmds.push(
            Cmd::new("XADD")
                .arg("db5:stream")
                .arg(format!("{}-0", 1000 + i))
                .arg("i")
                .arg(n(i))
                .arg("w")
                .arg(rng.word(5)),
        );
    }
    cmds.push(Cmd::new("XGROUP").args(["CREATE", "db5:stream", "grp", "0"]));
    cmds.push(Cmd::new("XREADGROUP").args([
        "GROUP",
        "grp",
        "c1",
        "COUNT",
        "5",
        "STREAMS",
        "db5:stream",
        ">",
    ]));
    if caps.hash_ttl {
        cmds.push(Cmd::new("HSET").arg("db5:httl").args(["a", "1", "b", "2"]));
        cmds.push(Cmd::new("HPEXPIREAT").args([
            "db5:httl",
            &(EXP + 99).to_string(),
            "FIELDS",
            "1",
            "b",
        ]));
    }
    c.pipe(&cmds);
    c.select(15);
    c.pipe(&[
        Cmd::new("SET").arg("db15:a").arg("1"),
        Cmd::new("SET").arg("db15:b").arg(rng.compressible(5000)),
        Cmd::new("PEXPIREAT")
            .arg("db15:b")
            .arg((EXP + 15).to_string()),
    ]);
}
