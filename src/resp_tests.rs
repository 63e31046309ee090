//! Tests of the RESP parser: every frame type, hostile input, and the resumable command
//! parser against a whole-buffer reference on samples and seeded mutations, fed byte by byte
//! and in random splits.

use super::*;

fn lim() -> Limits {
    Limits::default()
}

#[test]
fn frames_of_every_type() {
    assert_eq!(
        parse_frame(b"+OK\r\n", &lim()).unwrap(),
        Parsed::Done(Frame::Simple(b"OK".to_vec()), 5)
    );
    assert_eq!(
        parse_frame(b"-ERR x\r\n", &lim()).unwrap(),
        Parsed::Done(Frame::Error(b"ERR x".to_vec()), 8)
    );
    assert_eq!(
        parse_frame(b":-42\r\n", &lim()).unwrap(),
        Parsed::Done(Frame::Integer(-42), 6)
    );
    assert_eq!(
        parse_frame(b"$-1\r\n", &lim()).unwrap(),
        Parsed::Done(Frame::Bulk(None), 5)
    );
    assert_eq!(
        parse_frame(b"$0\r\n\r\n", &lim()).unwrap(),
        Parsed::Done(Frame::Bulk(Some(vec![])), 6)
    );
    assert_eq!(
        parse_frame(b"*-1\r\n", &lim()).unwrap(),
        Parsed::Done(Frame::Array(None), 5)
    );
}

#[test]
fn commands_count_every_byte_and_wait_for_more() {
    let mut buf = Vec::new();
    encode_command(&[b"SET", b"k\r\n", b""], &mut buf);
    let n = buf.len();
    buf.extend_from_slice(b"*1\r\n$4\r\nPI");
    match parse_command(&buf, &lim()).unwrap() {
        Parsed::Done(args, used) => {
            assert_eq!(args, vec![b"SET".to_vec(), b"k\r\n".to_vec(), vec![]]);
            assert_eq!(used, n);
        }
        other => panic!("{other:?}"),
    }
    for cut in 0..n {
        assert!(
            matches!(parse_command(&buf[..cut], &lim()).unwrap(), Parsed::Incomplete(need) if need > cut)
        );
    }
    assert!(matches!(
        parse_command(&buf[n..], &lim()).unwrap(),
        Parsed::Incomplete(_)
    ));
    // A big bulk tells the caller how much it needs in one go.
    let head = b"*1\r\n$100000\r\nabc";
    assert_eq!(
        parse_command(head, &lim()).unwrap(),
        Parsed::Incomplete(4 + 9 + 100_000 + 2)
    );
}

#[test]
fn hostile_input_is_an_error_not_a_panic_or_allocation() {
    let l = Limits {
        max_bulk: 1000,
        max_elements: 10,
        max_line: 32,
        max_command_bytes: 1 << 20,
    };
    assert!(matches!(
        parse_frame(b"$999999999999\r\n", &l),
        Err(RespError::TooLarge { .. })
    ));
    assert!(matches!(
        parse_frame(b"*99999999\r\n", &l),
        Err(RespError::TooLarge { .. })
    ));
    assert!(parse_frame(b"$5\r\nabcdeXY", &l).is_err());
    assert!(parse_frame(b"$x\r\n", &l).is_err());
    assert!(parse_frame(b"!oops\r\n", &l).is_err());
    assert!(parse_frame(b"+ok\n", &l).is_err());
    assert!(parse_frame(&[b'+'; 100], &l).is_err(), "overlong line");
    assert!(parse_command(b"+OK\r\n", &l).is_err());
    assert!(parse_command(b"*1\r\n:1\r\n", &l).is_err());
    assert!(parse_command(b"*0\r\n", &l).is_err());
    let deep = "*1\r\n".repeat(20);
    assert!(
        parse_frame(deep.as_bytes(), &l).is_err(),
        "nesting is bounded"
    );
}

/// `parse_command` as it was before the incremental parser: one frame parsed whole, then
/// checked. The reference the incremental parser must match byte for byte.
fn whole(buf: &[u8], l: &Limits) -> Result<Parsed<Vec<Vec<u8>>>, RespError> {
    if let Some(&b) = buf.first() {
        if b != b'*' {
            return Err(proto(
                0,
                format!("expected a command array, found type byte 0x{b:02x}"),
            ));
        }
    }
    match parse_at(buf, 0, l, 0)? {
        Parsed::Incomplete(n) => Ok(Parsed::Incomplete(n)),
        Parsed::Done(Frame::Array(Some(items)), used) => {
            let mut args = Vec::new();
            for it in items {
                match it {
                    Frame::Bulk(Some(b)) => args.push(b),
                    other => {
                        return Err(proto(
                            0,
                            format!("command argument is not a bulk string: {other}"),
                        ))
                    }
                }
            }
            if args.is_empty() {
                return Err(proto(0, "empty command"));
            }
            Ok(Parsed::Done(args, used))
        }
        Parsed::Done(other, _) => Err(proto(0, format!("expected a command array, got {other}"))),
    }
}

/// Feed growing prefixes `buf[..cut]` to one parser; each answer must be the reference's
/// for that prefix. Returns the final answer.
fn feed(buf: &[u8], cuts: &[usize], l: &Limits) -> Result<Parsed<Vec<Vec<u8>>>, RespError> {
    let mut p = CommandParser::default();
    let mut last = Ok(Parsed::Incomplete(0));
    for &cut in cuts {
        last = p.parse(&buf[..cut], l);
        let want = whole(&buf[..cut], l);
        assert_eq!(
            last,
            want,
            "cut {cut} of {:?}",
            String::from_utf8_lossy(buf)
        );
        if !matches!(last, Ok(Parsed::Incomplete(_))) {
            break;
        }
    }
    last
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }

    /// Increasing cut points ending at `len`, steps of 1 to `max_step` bytes.
    fn cuts(&mut self, len: usize, max_step: usize) -> Vec<usize> {
        let mut cuts = vec![0];
        let mut at = 0;
        while at < len {
            at = (at + 1 + self.below(max_step)).min(len);
            cuts.push(at);
        }
        cuts
    }
}

/// Every schedule gives what parsing the whole buffer gives.
fn check_schedules(buf: &[u8], l: &Limits, rng: &mut Rng) {
    let want = whole(buf, l);
    if buf.len() <= 4096 {
        let every: Vec<usize> = (0..=buf.len()).collect();
        assert_eq!(feed(buf, &every, l), want, "byte by byte");
    }
    for max_step in [7, 100, 64 * 1024] {
        let cuts = rng.cuts(buf.len(), max_step);
        assert_eq!(feed(buf, &cuts, l), want, "steps up to {max_step}");
    }
}

fn samples() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let big = vec![b'x'; 100_000];
    let many: Vec<Vec<u8>> = (0..300).map(|i| format!("m{i}").into_bytes()).collect();
    let mut many_args: Vec<&[u8]> = vec![b"SADD", b"s"];
    many_args.extend(many.iter().map(|m| m.as_slice()));
    let commands: [&[&[u8]]; 5] = [
        &[b"SET", b"k\r\n", b""],
        &[b"PING"],
        &[b"SET", b"big", &big],
        &many_args,
        &[b"REPLCONF", b"GETACK", b"*"],
    ];
    for c in commands {
        let mut buf = Vec::new();
        encode_command(c, &mut buf);
        out.push(buf.clone());
        encode_command(&[b"SELECT", b"1"], &mut buf); // a pipeline: the first one counts
        out.push(buf);
    }
    let hostile: [&[u8]; 22] = [
        b"+OK\r\n",
        b"*1\r\n:1\r\n",
        b"*0\r\n",
        b"*-1\r\n",
        b"*-2\r\n",
        b"*x\r\n",
        b"*\r\n",
        b"*1\n",
        b"*1\r\n$-1\r\n",
        b"*1\r\n$-2\r\n",
        b"*1\r\n$3\r\nabcXY",
        b"*1\r\n$3\nabc\r\n",
        b"*2\r\n:1\r\n$3\r\nabc\r\n",
        b"*2\r\n$-1\r\n$1\r\nx\r\n",
        b"*2\r\n+OK\r\n!x\r\n",
        b"*2\r\n+OK\r\n$99999999999\r\n",
        b"*2\r\n$1\r\na\r\n*2\r\n$1\r\nb\r\n:5\r\n",
        b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        b"*1\r\n$0123456789012345678901234567890123456789\r\n",
        b"*99999999999\r\n",
        b"*1\r\n$1\r\nab\r\n",
        b"*3\r\n$1\r\na\r\n-ERR\r\n$1\r\nb",
    ];
    out.extend(hostile.iter().map(|h| h.to_vec()));
    out
}

#[test]
fn piecewise_parsing_matches_whole_parsing_exactly() {
    let small = Limits {
        max_bulk: 1000,
        max_elements: 10,
        max_line: 32,
        ..Limits::default()
    };
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for buf in samples() {
        for l in [lim(), small] {
            check_schedules(&buf, &l, &mut rng);
        }
    }
}

#[test]
fn mutated_commands_give_the_same_answers_piecewise() {
    let alphabet = b"*$:+-\r\n0123456789x";
    let bases: Vec<Vec<u8>> = samples().into_iter().filter(|b| b.len() < 3000).collect();
    let small = Limits {
        max_bulk: 64,
        max_elements: 8,
        max_line: 16,
        ..Limits::default()
    };
    let mut rng = Rng(0x0dd_ba11_cafe_f00d);
    let mut outcomes = [0; 3];
    for _ in 0..2000 {
        let mut buf = bases[rng.below(bases.len())].clone();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(buf.len() + 1);
            let byte = alphabet[rng.below(alphabet.len())];
            match rng.below(4) {
                0 if at < buf.len() => buf[at] = byte,
                1 => buf.insert(at, byte),
                2 if at < buf.len() => {
                    buf.remove(at);
                }
                _ => buf.truncate(at),
            }
        }
        let l = if rng.below(2) == 0 { lim() } else { small };
        check_schedules(&buf, &l, &mut rng);
        outcomes[match whole(&buf, &l) {
            Ok(Parsed::Done(..)) => 0,
            Ok(Parsed::Incomplete(_)) => 1,
            Err(_) => 2,
        }] += 1;
    }
    assert!(outcomes.iter().all(|&n| n > 50), "{outcomes:?}");
}

#[test]
fn the_parser_starts_over_after_a_command_or_an_error() {
    let mut buf = Vec::new();
    encode_command(&[b"SET", b"a", b"1"], &mut buf);
    let first = buf.len();
    encode_command(&[b"DEL", b"a"], &mut buf);
    let mut p = CommandParser::default();
    assert!(matches!(
        p.parse(&buf[..5], &lim()),
        Ok(Parsed::Incomplete(_))
    ));
    let Ok(Parsed::Done(args, used)) = p.parse(&buf[..first + 3], &lim()) else {
        panic!("SET not parsed");
    };
    assert_eq!((args.len(), used), (3, first));
    let rest = &buf[used..];
    assert!(matches!(
        p.parse(&rest[..2], &lim()),
        Ok(Parsed::Incomplete(_))
    ));
    assert_eq!(
        p.parse(rest, &lim()),
        Ok(Parsed::Done(
            vec![b"DEL".to_vec(), b"a".to_vec()],
            rest.len()
        ))
    );
    assert!(p.parse(b"*1\r\n:1\r\n", &lim()).is_err());
    assert_eq!(
        p.parse(b"*1\r\n$1\r\nx\r\n", &lim()),
        Ok(Parsed::Done(vec![b"x".to_vec()], 11))
    );
    // A buffer shorter than the last one cannot continue it: parsed afresh.
    assert!(matches!(
        p.parse(&buf[..20], &lim()),
        Ok(Parsed::Incomplete(_))
    ));
    assert!(matches!(
        p.parse(&rest[..9], &lim()),
        Ok(Parsed::Incomplete(_))
    ));
    assert!(matches!(p.parse(rest, &lim()), Ok(Parsed::Done(_, n)) if n == rest.len()));
}

#[test]
fn a_command_over_the_byte_cap_is_refused_naming_it() {
    let l = Limits {
        max_command_bytes: 100,
        ..lim()
    };
    // A bulk promising a body past the cap is refused before the body arrives.
    let e = parse_command(b"*2\r\n$3\r\nDEL\r\n$200\r\n", &l).unwrap_err();
    let len = 13 + 6 + 200 + 2;
    assert_eq!(
        e,
        RespError::TooLarge {
            what: "command bytes",
            len,
            cap: 100
        }
    );
    assert_eq!(
        e.to_string(),
        format!("command bytes {len} exceeds the limit of 100")
    );
    // Many small arguments: refused once past the cap, whole or piecewise.
    let mut buf = Vec::new();
    encode_command(&[b"k" as &[u8]; 20], &mut buf);
    let too_large = |r| {
        matches!(
            r,
            Err(RespError::TooLarge {
                what: "command bytes",
                cap: 100,
                ..
            })
        )
    };
    assert!(too_large(parse_command(&buf, &l)));
    let mut p = CommandParser::default();
    let mut refused = false;
    for cut in 0..=buf.len() {
        match p.parse(&buf[..cut], &l) {
            Ok(Parsed::Incomplete(need)) => assert!(need <= 100 && cut < 100),
            r => {
                assert!(too_large(r), "cut {cut}");
                refused = true;
                break;
            }
        }
    }
    assert!(refused);
    // Exactly at the cap is allowed.
    let mut buf = Vec::new();
    encode_command(&[b"SET", b"k", &[b'v'; 73]], &mut buf);
    assert_eq!(buf.len(), 100);
    assert!(matches!(parse_command(&buf, &l), Ok(Parsed::Done(_, 100))));
    // Replies have the same cap.
    assert!(matches!(
        parse_frame(b"$200\r\n", &l),
        Err(RespError::TooLarge {
            what: "frame bytes",
            len: 208,
            cap: 100
        })
    ));
}

/// Feed `buf` to one parser in 64 KiB steps, as the stream's reads arrive.
fn parse_in_reads(buf: &[u8]) -> (Vec<Vec<u8>>, usize, usize) {
    let mut p = CommandParser::default();
    let mut end = 0;
    let mut reads = 0;
    loop {
        end = (end + 64 * 1024).min(buf.len());
        reads += 1;
        match p.parse(&buf[..end], &lim()).unwrap() {
            Parsed::Done(args, used) => {
                assert_eq!(used, buf.len());
                return (args, reads, p.work);
            }
            Parsed::Incomplete(need) => assert!(need > end && need <= buf.len()),
        }
    }
}

#[test]
fn a_million_argument_del_in_64k_reads_costs_linear_work() {
    let keys: Vec<Vec<u8>> = (0..1_000_000u32)
        .map(|i| format!("key:{i}").into_bytes())
        .collect();
    let mut argv: Vec<&[u8]> = vec![b"DEL"];
    argv.extend(keys.iter().map(|k| k.as_slice()));
    let mut buf = Vec::new();
    encode_command(&argv, &mut buf);
    let t = std::time::Instant::now();
    let (args, reads, work) = parse_in_reads(&buf);
    let took = t.elapsed();
    assert_eq!(args.len(), 1_000_001);
    assert_eq!(args[1_000_000], b"key:999999");
    assert!(
        work < 3 * buf.len(),
        "{work} bytes looked at for {}",
        buf.len()
    );
    eprintln!(
        "DEL of 1,000,000 keys ({} bytes) in {reads} reads of 64 KiB: {took:?}, {work} bytes looked at",
        buf.len()
    );
    // One 8 MB argument, too.
    let big = vec![7u8; 8 << 20];
    let mut buf = Vec::new();
    encode_command(&[b"SET", b"k", &big], &mut buf);
    let (args, _, work) = parse_in_reads(&buf);
    assert_eq!(args[2].len(), 8 << 20);
    assert!(
        work < 3 * buf.len(),
        "{work} bytes looked at for {}",
        buf.len()
    );
}
