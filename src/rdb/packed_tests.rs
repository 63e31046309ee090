use super::*;

/// A test-only listpack encoder (strings only, plus small uints), independent of the decoder.
fn lp(items: &[&[u8]]) -> Vec<u8> {
    let mut body = Vec::new();
    for it in items {
        let mut e = Vec::new();
        if it.len() < 64 {
            e.push(0x80 | it.len() as u8);
        } else {
            e.push(0xe0 | (it.len() >> 8) as u8);
            e.push(it.len() as u8);
        }
        e.extend_from_slice(it);
        let l = e.len();
        body.extend_from_slice(&e);
        if l <= 127 {
            body.push(l as u8);
        } else {
            body.push((l >> 7) as u8);
            body.push((l & 127) as u8 | 128);
        }
    }
    let total = 6 + body.len() + 1;
    let mut out = (total as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&(items.len() as u16).to_le_bytes());
    out.extend_from_slice(&body);
    out.push(0xff);
    out
}

#[test]
fn listpack_strings_and_back_lengths() {
    let long = vec![b'x'; 200];
    let b = lp(&[b"a", b"", &long]);
    let v = listpack(&b).unwrap();
    assert_eq!(v, vec![Elem::Str(b"a"), Elem::Str(b""), Elem::Str(&long)]);
}

#[test]
fn listpack_integers() {
    // 7-bit 5, 13-bit -100, int16 1000, int24 -70000, int32 2^30, int64 -2^40
    let mut body: Vec<u8> = vec![5, 1];
    let v13 = (-100i64 + (1 << 13)) as u16;
    body.extend_from_slice(&[0xc0 | (v13 >> 8) as u8, v13 as u8, 2]);
    body.extend_from_slice(&[0xf1, 0xe8, 0x03, 3]);
    let v24 = (-70000i32).to_le_bytes();
    body.extend_from_slice(&[0xf2, v24[0], v24[1], v24[2], 4]);
    body.push(0xf3);
    body.extend_from_slice(&(1i32 << 30).to_le_bytes());
    body.push(5);
    body.push(0xf4);
    body.extend_from_slice(&(-(1i64 << 40)).to_le_bytes());
    body.push(9);
    let mut b = ((6 + body.len() + 1) as u32).to_le_bytes().to_vec();
    b.extend_from_slice(&6u16.to_le_bytes());
    b.extend_from_slice(&body);
    b.push(0xff);
    let v = listpack(&b).unwrap();
    let ints: Vec<i64> = v.iter().map(|e| e.as_int().unwrap()).collect();
    assert_eq!(ints, vec![5, -100, 1000, -70000, 1 << 30, -(1 << 40)]);
}

#[test]
fn listpack_lies_are_errors() {
    let good = lp(&[b"ab", b"cd"]);
    // wrong element count
    let mut b = good.clone();
    b[4] = 3;
    assert!(listpack(&b).unwrap_err().msg.contains("declares 3 entries"));
    // wrong total
    let mut b = good.clone();
    b[0] += 1;
    assert!(listpack(&b).is_err());
    // string overruns
    let mut b = good.clone();
    b[6] = 0x80 | 60;
    assert!(listpack(&b).is_err());
    // bad back length
    let mut b = good.clone();
    b[9] = 7;
    assert!(listpack(&b).unwrap_err().msg.contains("back length"));
    // invalid encoding byte
    let mut b = good.clone();
    b[6] = 0xf7;
    assert!(listpack(&b).is_err());
    // missing end
    let mut b = good;
    let n = b.len();
    b[n - 1] = 0x01;
    assert!(listpack(&b).is_err());
}

fn zl(entries: &[&[u8]]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut prev = 0usize;
    let mut tail = 10;
    for e in entries {
        let start = 10 + body.len();
        tail = start;
        let mut x = Vec::new();
        if prev < 254 {
            x.push(prev as u8);
        } else {
            x.push(254);
            x.extend_from_slice(&(prev as u32).to_le_bytes());
        }
        assert!(e.len() < 64);
        x.push(e.len() as u8);
        x.extend_from_slice(e);
        prev = x.len();
        body.extend_from_slice(&x);
    }
    let total = 10 + body.len() + 1;
    let mut out = (total as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&(tail as u32).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&body);
    out.push(0xff);
    out
}

#[test]
fn ziplist_strings_ints_and_checks() {
    let b = zl(&[b"hello", b"", b"w"]);
    assert_eq!(
        ziplist(&b).unwrap(),
        vec![Elem::Str(b"hello"), Elem::Str(b""), Elem::Str(b"w")]
    );
    // immediate ints 0..12 and int8
    let mut b = vec![0u8; 10];
    b.extend_from_slice(&[0, 0xf1, 2, 0xfd, 2, 0xfe, 0x80]);
    b.push(0xff);
    let n = b.len() as u32;
    b[0..4].copy_from_slice(&n.to_le_bytes());
    b[4..8].copy_from_slice(&14u32.to_le_bytes());
    b[8..10].copy_from_slice(&3u16.to_le_bytes());
    let v: Vec<i64> = ziplist(&b)
        .unwrap()
        .iter()
        .map(|e| e.as_int().unwrap())
        .collect();
    assert_eq!(v, vec![0, 12, -128]);

    let good = zl(&[b"ab", b"cd"]);
    let mut x = good.clone();
    x[4] = 99;
    assert!(ziplist(&x).unwrap_err().msg.contains("tail"));
    let mut x = good.clone();
    x[14] = 9; // prevlen of the 2nd entry
    assert!(ziplist(&x).unwrap_err().msg.contains("prevlen"));
    let mut x = good.clone();
    x[11] = 50; // first entry string length overruns
    assert!(ziplist(&x).is_err());
    let mut x = good;
    x[8] = 7;
    assert!(ziplist(&x).unwrap_err().msg.contains("declares 7"));
}

#[test]
fn intset_checks() {
    let mut b = 2u32.to_le_bytes().to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    for v in [-5i16, 0, 300] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    assert_eq!(intset(&b).unwrap(), vec![-5, 0, 300]);
    let mut x = b.clone();
    x[0] = 3;
    assert!(intset(&x).unwrap_err().msg.contains("encoding"));
    let mut x = b.clone();
    x[4] = 4;
    assert!(intset(&x).is_err());
    let mut x = b;
    x[8..10].copy_from_slice(&1000i16.to_le_bytes());
    assert!(intset(&x).unwrap_err().msg.contains("ascending"));
}

#[test]
fn zipmap_pairs_and_free_space() {
    let b = [2u8, 1, b'a', 2, 1, b'x', b'y', 0, 2, b'b', b'c', 0, 0, 0xff];
    assert_eq!(zipmap(&b).unwrap(), vec![&b"a"[..], b"xy", b"bc", b""]);
    let mut x = b;
    x[0] = 3;
    assert!(zipmap(&x).is_err());
    assert!(zipmap(&b[..8]).is_err());
}
