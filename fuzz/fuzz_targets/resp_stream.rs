//! Fuzz the replication stream's command parser as the replica drives it: the bytes a master
//! sends arrive in arbitrary pieces, and each call continues the previous one's work. Its
//! results must be exactly those of parsing the bytes at hand whole (`parse_command`), and
//! neither may panic; the handshake's frame parser gets the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use replisnap::resp::{parse_command, parse_frame, CommandParser, Limits, Parsed};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the size of the pieces (1..=64), the rest is the stream.
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    let step = usize::from(step % 64) + 1;
    // Small limits, so the fuzzer reaches them.
    let limits = Limits {
        max_bulk: 1 << 12,
        max_elements: 64,
        max_line: 32,
        max_command_bytes: 1 << 14,
    };
    let _ = parse_frame(stream, &limits);
    let mut parser = CommandParser::default();
    let mut start = 0;
    let mut end = 0;
    while start < stream.len() {
        end = (end + step).min(stream.len());
        let buf = &stream[start..end];
        let got = parser.parse(buf, &limits);
        let whole = parse_command(buf, &limits);
        assert_eq!(
            format!("{got:?}"),
            format!("{whole:?}"),
            "piecewise and whole parses differ at {start}..{end}"
        );
        match got {
            Ok(Parsed::Done(_, used)) => {
                assert!(used > 0 && used <= buf.len());
                start += used;
                end = end.max(start);
            }
            Ok(Parsed::Incomplete(need)) => {
                assert!(need > buf.len(), "asks for {need} with {} at hand", buf.len());
                if end == stream.len() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
});
