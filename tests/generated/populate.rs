//! What a server supports, and the deterministic dataset written into it.

use crate::client::{Client, Cmd, Rng};
use crate::support::ServerBin;

/// Far-future absolute expiry base (2100-01-01T00:00:00Z), in Unix ms.
pub const EXP: u64 = 4_102_444_800_000;

/// Features of one server, from its version and `COMMAND INFO`.
#[derive(Debug, Clone)]
pub struct Caps {
    pub name: String,
    pub valkey: bool,
    pub ver: (u32, u32),
    pub functions: bool,
    pub pexpiretime: bool,
    /// Hash field TTLs (HPEXPIREAT / HPEXPIRETIME): Redis 7.4+, Valkey 9.0+.
    pub hash_ttl: bool,
    pub hsetex: bool,
    /// Redis 8.6+ idempotent XADD (IDMP / XCFGSET).
    pub idmp: bool,
    /// Stream metadata of RDB 10+ (XSETID ENTRIESADDED, XGROUP CREATE … ENTRIESREAD).
    pub stream_meta: bool,
    /// DEBUG QUICKLIST-PACKED-THRESHOLD (quicklist PLAIN nodes, 7.0+).
    pub plain_nodes: bool,
    /// Redis 8.8+ sparse arrays (ARSET).
    pub arrays: bool,
    /// Redis 8.10 hash templates (hash-max-template-entries).
    pub templates: bool,
}

impl Caps {
    pub fn detect(bin: &ServerBin, c: &mut Client) -> Caps {
        let ver = bin.major_minor();
        let valkey = bin.is_valkey();
        let modern = valkey || ver >= (7, 0);
        Caps {
            name: bin.name.clone(),
            valkey,
            ver,
            functions: c.has_command("function"),
            pexpiretime: c.has_command("pexpiretime"),
            hash_ttl: c.has_command("hpexpiretime"),
            hsetex: c.has_command("hsetex"),
            idmp: c.has_command("xcfgset"),
            stream_meta: modern,
            plain_nodes: modern,
            arrays: c.has_command("arset"),
            templates: crate::redis810::has_templates(c),
        }
    }

    /// The listpack generation (Redis 7.0+, every Valkey).
    pub fn listpacks(&self) -> bool {
        self.valkey || self.ver >= (7, 0)
    }
}

pub fn n(i: impl ToString) -> Vec<u8> {
    i.to_string().into_bytes()
}

/// A list of integers covering every ziplist/listpack/intset integer width.
pub const INTS: &[&str] = &[
    "0",
    "1",
    "12",
    "13",
    "-1",
    "127",
    "128",
    "-128",
    "-129",
    "255",
    "4095",
    "-4096",
    "32767",
    "32768",
    "-32768",
    "-32769",
    "65535",
    "8388607",
    "-8388608",
    "8388608",
    "2147483647",
    "2147483648",
    "-2147483648",
    "-2147483649",
    "1099511627776",
    "9223372036854775807",
    "-9223372036854775808",
];

/// String values that look like integers but are not canonical (stay strings).
pub const NOT_INTS: &[&str] = &[
    "007",
    "-0",
    "+1",
    "1 ",
    " 1",
    "0x10",
    "1e3",
    "12345678901234567890",
    "-9223372036854775809",
];

/// Sorted-set scores: integers, fractions, infinities, extremes, signed zero, denormals.
pub const SCORES: &[&str] = &[
    "1",
    "-1",
    "0",
    "-0.0",
    "0.5",
    "-2.25",
    "0.1",
    "0.3333333333333333",
    "3.141592653589793",
    "inf",
    "-inf",
    "1e300",
    "-1e300",
    "5e-324",
    "2.2250738585072014e-308",
    "1.7976931348623157e308",
    "1e15",
    "123456789012",
    "4503599627370496",
    "9007199254740993",
    "-9223372036854775808",
    "1e18",
    "12345.678",
];

pub fn populate(c: &mut Client, caps: &Caps) {
    let mut rng = Rng::new(0x5EED_0001);
    c.select(0);
    strings(c, &mut rng);
    lists(c, caps, &mut rng);
    sets(c, &mut rng);
    zsets(c, &mut rng);
    hashes(c, &mut rng);
    if caps.hash_ttl {
        crate::more_data::hash_ttls(c, caps, &mut rng);
    }
    crate::stream_data::streams(c, caps, &mut rng);
    if caps.idmp {
        crate::stream_data::idmp_stream(c);
    }
    crate::random::random_keys(c, &mut rng);
    if caps.functions {
        crate::more_data::functions(c);
    }
    crate::more_data::expiries(c, &mut rng);
    crate::more_data::other_dbs(c, caps, &mut rng);
    c.select(0);
    if caps.arrays {
        crate::redis810::arrays(c, &mut rng);
    }
    // Last: the template settings stay on and would change every later hash.
    if caps.templates {
        crate::redis810::templates(c, &mut rng);
    }
}

fn strings(c: &mut Client, rng: &mut Rng) {
    let mut cmds = vec![
        Cmd::new("SET").arg("str:short").arg("hello"),
        Cmd::new("SET").arg("str:empty").arg(""),
        Cmd::new("SET").arg("str:44").arg(rng.word(44)),
        Cmd::new("SET").arg("str:45").arg(rng.word(45)),
        Cmd::new("SET").arg("str:long").arg(rng.word(300)),
        Cmd::new("SET")
            .arg("str:bin")
            .arg(b"\x00\xff\x00\n\r\x01binary\xfe\x00"),
        Cmd::new("SET")
            .arg("str:lzf20k")
            .arg(rng.compressible(20_000)),
        Cmd::new("SET").arg("str:lzf100").arg(rng.compressible(100)),
        Cmd::new("SET").arg("str:random70k").arg(rng.binary(70_000)),
        Cmd::new("SET").arg("").arg("the empty key"),
        Cmd::new("SET").arg(b"\x00\n\xffkey\x00").arg("binary key"),
        Cmd::new("SET").arg("12345").arg("integer-looking key"),
        Cmd::new("SET").arg("-7").arg("negative integer key"),
        Cmd::new("SET").arg("2147483648").arg("wide integer key"),
        Cmd::new("SET").arg("str:incr").arg("41"),
        Cmd::new("INCR").arg("str:incr"),
        Cmd::new("SET").arg("str:append").arg("abc"),
        Cmd::new("APPEND").arg("str:append").arg(rng.word(50)),
        Cmd::new("SETRANGE").arg("str:setrange").arg("10").arg("x"),
    ];
    for (i, v) in INTS.iter().chain(NOT_INTS).enumerate() {
        cmds.push(Cmd::new("SET").arg(format!("int:{i:02}")).arg(v));
    }
    // Volume: many small keys in one MSET.
    let mut mset = Cmd::new("MSET");
    for i in 0..1000u64 {
        let v = match i % 4 {
            0 => n(rng.next() as i64 >> (rng.below(60))),
            1 => {
                let l = rng.below(30) as usize;
                rng.word(l)
            }
            2 => {
                let l = rng.below(60) as usize;
                rng.binary(l)
            }
            _ => {
                let l = 100 + rng.below(400) as usize;
                rng.compressible(l)
            }
        };
        mset = mset.arg(format!("k:{i:04}")).arg(v);
    }
    cmds.push(mset);
    c.pipe(&cmds);
}

fn lists(c: &mut Client, caps: &Caps, rng: &mut Rng) {
    let mut cmds = vec![
        Cmd::new("RPUSH").arg("list:small").args([
            b"a".to_vec(),
            b"".to_vec(),
            b"1".to_vec(),
            b"-1".to_vec(),
            b"\x00\xff\n".to_vec(),
            b"9223372036854775807".to_vec(),
        ]),
        Cmd::new("RPUSH")
            .arg("list:ints")
            .args(INTS.iter().chain(NOT_INTS)),
    ];
    // Elements whose lengths sit on the ziplist/listpack length-encoding boundaries.
    let lens = [
        0, 1, 12, 13, 63, 64, 127, 128, 4095, 4096, 16383, 16384, 70_000,
    ];
    cmds.push(
        Cmd::new("RPUSH")
            .arg("list:lens")
            .args(lens.iter().map(|&l| rng.word(l))),
    );
    // Many elements: several quicklist nodes.
    for _ in 0..6 {
        let elems: Vec<Vec<u8>> = (0..500)
            .map(|_| match rng.below(3) {
                0 => n(rng.next() as i64 >> rng.below(63)),
                1 => {
                    let l = rng.below(40) as usize;
                    rng.word(l)
                }
                _ => {
                    let l = rng.below(20) as usize;
                    rng.binary(l)
                }
            })
            .collect();
        cmds.push(Cmd::new("RPUSH").arg("list:big").args(elems));
    }
    // Elements above 8 KB: their own node (PLAIN on Redis 7.4+ / Valkey 8.0+).
    let huge: Vec<Vec<u8>> = (0..12)
        .map(|i| match i % 4 {
            0 => rng.word(9_000),
            1 => rng.word(5),
            2 => rng.compressible(20_000),
            _ => n(i),
        })
        .collect();
    cmds.push(Cmd::new("RPUSH").arg("list:huge").args(huge));
    // Built from the head, then edited in place.
    cmds.push(Cmd::new("LPUSH").arg("list:edited").args((0..300).map(n)));
    cmds.push(
        Cmd::new("LSET")
            .arg("list:edited")
            .arg("5")
            .arg(rng.word(30)),
    );
    cmds.push(
        Cmd::new("LINSERT")
            .arg("list:edited")
            .arg("BEFORE")
            .arg("150")
            .arg("inserted"),
    );
    cmds.push(Cmd::new("LREM").arg("list:edited").arg("0").arg("77"));
    cmds.push(Cmd::new("LPOP").arg("list:edited"));
    c.pipe(&cmds);

    // Compressed inner quicklist nodes (LZF even with rdbcompression no).
    c.run(
        Cmd::new("CONFIG")
            .arg("SET")
            .arg("list-compress-depth")
            .arg("1"),
    );
    let elems: Vec<Vec<u8>> = (0..3000).map(|_| rng.compressible(40)).collect();
    c.run(Cmd::new("RPUSH").arg("list:compressed").args(elems));
    c.run(
        Cmd::new("CONFIG")
            .arg("SET")
            .arg("list-compress-depth")
            .arg("0"),
    );

    // PLAIN quicklist nodes for smaller elements, via the debug threshold (7.0+).
    if caps.plain_nodes {
        c.run(
            Cmd::new("DEBUG")
                .arg("QUICKLIST-PACKED-THRESHOLD")
                .arg("1000"),
        );
    }
    let mut elems: Vec<Vec<u8>> = Vec::new();
    for i in 0..400 {
        elems.push(if i % 50 == 7 {
            rng.word(2_000 + i)
        } else {
            rng.word(20)
        });
    }
    c.run(Cmd::new("RPUSH").arg("list:plain").args(elems));
    c.run(
        Cmd::new("RPUSH")
            .arg("list:plain")
            .arg(rng.compressible(3000)),
    );
    if caps.plain_nodes {
        c.run(
            Cmd::new("DEBUG")
                .arg("QUICKLIST-PACKED-THRESHOLD")
                .arg("1073741824"),
        );
    }
}

fn sets(c: &mut Client, rng: &mut Rng) {
    let ints500: Vec<Vec<u8>> = (0..500).map(|_| n(rng.next() as i32 as i64 - 5)).collect();
    let ints600: Vec<Vec<u8>> = (0..600).map(|i| n(i * 7 - 1000)).collect();
    let words: Vec<Vec<u8>> = (0..200).map(|_| rng.word(10)).collect();
    let cmds = vec![
        Cmd::new("SADD")
            .arg("set:int16")
            .args(["1", "2", "3", "-5", "1000"]),
        Cmd::new("SADD")
            .arg("set:int32")
            .args(["70000", "-70000", "5"]),
        Cmd::new("SADD").arg("set:int64").args([
            "9223372036854775807",
            "-9223372036854775808",
            "0",
        ]),
        Cmd::new("SADD").arg("set:ints500").args(&ints500),
        Cmd::new("SADD").arg("set:ints600").args(&ints600),
        Cmd::new("SADD").arg("set:small").args(&words[..10]),
        Cmd::new("SADD").arg("set:small").arg("").arg(b"\x00\xff"),
        Cmd::new("SADD")
            .arg("set:mixed")
            .args(["1", "2", "x", "007", "-0", "-3"]),
        Cmd::new("SADD").arg("set:big").args(&words),
        Cmd::new("SADD").arg("set:long").arg("a").arg(rng.word(100)),
        Cmd::new("SADD").arg("set:srem").args(&words[..50]),
        Cmd::new("SREM").arg("set:srem").args(&words[..20]),
    ];
    c.pipe(&cmds);
}

fn zsets(c: &mut Client, rng: &mut Rng) {
    let mut small = Cmd::new("ZADD").arg("zset:small");
    for (i, s) in SCORES.iter().enumerate() {
        small = small.arg(s).arg(format!("m{i}"));
    }
    small = small.arg("7").arg("").arg("8").arg(b"\x00\xff");
    let mut big = Cmd::new("ZADD").arg("zset:big");
    for i in 0..300u64 {
        let score = match i % 5 {
            0 => SCORES[(i / 5) as usize % SCORES.len()].to_string(),
            1 => (rng.next() as i64 >> 20).to_string(),
            2 => format!("{}", f64::from_bits(rng.next() >> 2) / 1e10),
            3 => format!("{:.6}", rng.below(1_000_000) as f64 / 7.0),
            _ => "42".to_string(),
        };
        big = big.arg(score).arg(rng.word(1 + (i % 30) as usize));
    }
    let mut ties = Cmd::new("ZADD").arg("zset:ties");
    for i in 0..50 {
        ties = ties.arg("1").arg(format!("t{i:02}"));
    }
    let cmds = vec![
        small,
        big,
        ties,
        Cmd::new("ZADD")
            .arg("zset:long")
            .arg("1.5")
            .arg("a")
            .arg("2")
            .arg(rng.word(100)),
        Cmd::new("ZINCRBY").arg("zset:ties").arg("0.25").arg("t07"),
    ];
    c.pipe(&cmds);
}

fn hashes(c: &mut Client, rng: &mut Rng) {
    let mut big = Cmd::new("HSET").arg("hash:big");
    for i in 0..600 {
        big = big.arg(format!("field:{i}")).arg(match i % 3 {
            0 => n(i * 1000 - 7),
            1 => {
                let l = rng.below(40) as usize;
                rng.word(l)
            }
            _ => {
                let l = rng.below(30) as usize;
                rng.binary(l)
            }
        });
    }
    let mut ints = Cmd::new("HSET").arg("hash:ints");
    for (i, v) in INTS.iter().enumerate() {
        ints = ints.arg(n(i)).arg(v);
    }
    let cmds = vec![
        Cmd::new("HSET").arg("hash:small").args([
            b"a".to_vec(),
            b"1".to_vec(),
            b"b".to_vec(),
            b"-1".to_vec(),
            b"".to_vec(),
            b"".to_vec(),
            b"bin\x00\xff".to_vec(),
            b"\xff\x00".to_vec(),
            b"max".to_vec(),
            b"9223372036854775807".to_vec(),
            b"long".to_vec(),
            rng.word(60),
        ]),
        big,
        ints,
        Cmd::new("HSET")
            .arg("hash:longval")
            .arg("f")
            .arg(rng.word(100))
            .arg("g")
            .arg("1"),
        Cmd::new("HSET").arg("hash:incr").arg("n").arg("10"),
        Cmd::new("HINCRBY").arg("hash:incr").arg("n").arg("5"),
        Cmd::new("HINCRBYFLOAT")
            .arg("hash:incr")
            .arg("f")
            .arg("1.5"),
    ];
    c.pipe(&cmds);
}
