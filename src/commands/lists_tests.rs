//! Tests of `lists.rs`: the typed parse and its application.
use super::super::{apply, parse as parse_argv};
use super::*;

fn argv(a: &str) -> Vec<Vec<u8>> {
    a.split(' ').map(|s| s.as_bytes().to_vec()).collect()
}

#[test]
fn malformed_fails_in_parse_before_anything_changes() {
    let (mut ks, mut st) = (Keyspace::new(), StreamState::default());
    apply(&mut ks, &mut st, &argv("RPUSH k a b a")).unwrap();
    let bad = "LREM k x a,LINSERT k middle a z,LMOVE k d up LEFT,LPUSH k,LPOP k 1 2,LSET k 1.5 z";
    for bad in bad.split(',').chain(["LTRIM k 0", "RPOPLPUSH k"]) {
        assert!(parse_argv(&argv(bad)).is_err(), "{bad}");
    }
    assert!(apply(&mut ks, &mut st, &argv("LREM absent x a")).is_err());
    let a = argv("k -3");
    let p = parse(Parse::new("RPOP", &a));
    assert!(matches!(
        p,
        Ok(Cmd::Pop {
            count: 0,
            front: false,
            ..
        })
    ));
    apply(&mut ks, &mut st, &argv("lmove k k Right left")).unwrap();
    let l = ks.get(0, b"k").unwrap().map(|(_, v)| v);
    assert_eq!(l, Some(Value::List(argv("a a b"))));
}
