//! A few facts read from the file's bytes directly, independent of our reader's decoding:
//! the quicklist node containers, to prove PLAIN and LZF-compressed nodes really occur.

use std::path::Path;

use crate::check::FileRead;
use crate::populate::Caps;

/// How a quicklist node's data is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// 1 = PLAIN, 2 = PACKED (type 18); 2 for every type-14 ziplist node.
    pub container: u64,
    /// The node's string is LZF-compressed in the file.
    pub lzf: bool,
}

/// RDB length: (value, is a special string encoding).
fn read_len(b: &[u8], pos: &mut usize) -> Option<(u64, bool)> {
    let first = *b.get(*pos)?;
    *pos += 1;
    Some(match first >> 6 {
        0 => (u64::from(first & 0x3f), false),
        1 => {
            let second = *b.get(*pos)?;
            *pos += 1;
            ((u64::from(first & 0x3f) << 8) | u64::from(second), false)
        }
        2 => {
            let n = match first {
                0x80 => 4,
                0x81 => 8,
                _ => return None,
            };
            let v = b.get(*pos..*pos + n)?;
            *pos += n;
            (v.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x)), false)
        }
        _ => (u64::from(first & 0x3f), true),
    })
}

/// Skip one RDB string; returns whether it was LZF-compressed.
fn skip_string(b: &[u8], pos: &mut usize) -> Option<bool> {
    let (len, special) = read_len(b, pos)?;
    if !special {
        *pos += len as usize;
        return Some(false);
    }
    match len {
        0 => *pos += 1,
        1 => *pos += 2,
        2 => *pos += 4,
        3 => {
            let (clen, _) = read_len(b, pos)?;
            read_len(b, pos)?;
            *pos += clen as usize;
            return Some(true);
        }
        _ => return None,
    }
    Some(false)
}

/// The nodes of the quicklist (type 14 or 18) whose record starts at `offset`.
pub fn quicklist_nodes(file: &[u8], offset: u64) -> Option<Vec<Node>> {
    let mut pos = offset as usize;
    let ty = *file.get(pos)?;
    pos += 1;
    skip_string(file, &mut pos)?; // the key
    let (n, _) = read_len(file, &mut pos)?;
    let mut out = Vec::new();
    for _ in 0..n {
        let container = match ty {
            18 => read_len(file, &mut pos)?.0,
            14 => 2,
            _ => return None,
        };
        let lzf = skip_string(file, &mut pos)?;
        if pos > file.len() {
            return None;
        }
        out.push(Node { container, lzf });
    }
    Some(out)
}

/// Quicklist node kinds, read from the bytes: the dataset must really exercise them.
pub fn check_raw(path: &Path, f: &FileRead, caps: &Caps, errs: &mut Vec<String>) {
    let bytes = std::fs::read(path).unwrap();
    let nodes = |key: &str| {
        let k = f
            .keys
            .iter()
            .find(|k| k.db == 0 && k.key == key.as_bytes())?;
        quicklist_nodes(&bytes, k.offset)
    };
    let mut want = |key: &str, what: &str, ok: &dyn Fn(&[Node]) -> bool| match nodes(key) {
        Some(n) if ok(&n) => {}
        n => errs.push(format!("{key}: expected {what}, nodes {n:?}")),
    };
    want("list:compressed", "an LZF-compressed node", &|n| {
        n.iter().any(|x| x.lzf)
    });
    want("list:big", "several packed nodes", &|n| {
        n.len() > 1 && n.iter().all(|x| x.container == 2)
    });
    if caps.plain_nodes {
        want("list:plain", "PLAIN nodes", &|n| {
            n.iter().any(|x| x.container == 1)
        });
    }
    // Elements above list-max-listpack-size become PLAIN nodes by default on Redis 7.4+ and
    // Valkey 8.0+ (measured: not on Redis 7.2.4, whose threshold stays 1 GB).
    if caps.valkey || caps.ver >= (7, 4) {
        want("list:huge", "PLAIN nodes", &|n| {
            n.iter().any(|x| x.container == 1)
        });
    }
}
