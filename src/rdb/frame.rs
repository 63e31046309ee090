//! Framing a value without decoding it: where the value of a key of a common type ends,
//! so that its bytes can be handed to another thread that decodes them
//! ([`super::decode_value`]). The thread that reads a file then only walks length
//! prefixes: no decompression, no packed decoding, no allocation per element.
//!
//! Owns which types are framed and how. A leaf under the reader (`parser.rs`). It checks
//! every length as the decoder would (against the cap and the input left) so that a
//! hostile length is refused here, but it never judges the contents: a framed value is
//! decoded, and checked, by whoever takes it.

use std::io::Read;

use super::error::{ErrorKind, Result};
use super::input::Input;
use super::prim::{at_length_field, Len, ENC_INT16, ENC_INT32, ENC_INT8, ENC_LZF};
use super::types::*;

/// Whether values of type `ty` are framed: the types whose layout is length-prefixed
/// strings only and means the same in both dialects. The others (streams, hashes with
/// field TTLs, modules, Redis 8.8 types that refer to templates) are decoded in place.
pub(super) fn framed(ty: u8) -> bool {
    matches!(
        ty,
        STRING
            | LIST
            | SET
            | ZSET
            | ZSET_2
            | HASH
            | HASH_ZIPMAP
            | LIST_ZIPLIST
            | SET_INTSET
            | ZSET_ZIPLIST
            | HASH_ZIPLIST
            | HASH_LISTPACK
            | ZSET_LISTPACK
            | SET_LISTPACK
            | LIST_QUICKLIST
            | LIST_QUICKLIST_2
    )
}

/// Consume one value of a [`framed`] type (the caller records the bytes).
pub(super) fn skip_object<R: Read>(inp: &mut Input<R>, ty: u8) -> Result<()> {
    match ty {
        LIST | SET => {
            let (what, each) = if ty == LIST {
                ("list length", "list element")
            } else {
                ("set size", "set member")
            };
            let n = inp.read_count(1, what)?;
            for _ in 0..n {
                skip_string(inp, each)?;
            }
        }
        HASH => {
            let n = inp.read_count(2, "hash size")?;
            for _ in 0..n {
                skip_string(inp, "hash field")?;
                skip_string(inp, "hash value")?;
            }
        }
        ZSET | ZSET_2 => {
            let n = inp.read_count(2, "zset size")?;
            for _ in 0..n {
                skip_string(inp, "zset member")?;
                if ty == ZSET_2 {
                    inp.skip(8, "zset score")?;
                } else {
                    // A length byte (253-255: NaN and infinities, nothing follows).
                    let len = inp.read_u8("zset score")?;
                    if len < 253 {
                        inp.skip(u64::from(len), "zset score")?;
                    }
                }
            }
        }
        LIST_QUICKLIST | LIST_QUICKLIST_2 => {
            let nodes = inp.read_count(2, "quicklist node count")?;
            for _ in 0..nodes {
                if ty == LIST_QUICKLIST_2 {
                    inp.read_len("quicklist container")?;
                }
                let what = if ty == LIST_QUICKLIST_2 {
                    "quicklist listpack"
                } else {
                    "quicklist ziplist"
                };
                skip_string(inp, what)?;
            }
        }
        _ => skip_string(inp, blob_name(ty))?,
    }
    Ok(())
}

/// What the decoder calls the one string a value of type `ty` is (its errors name it so).
fn blob_name(ty: u8) -> &'static str {
    match ty {
        HASH_ZIPMAP => "zipmap",
        LIST_ZIPLIST => "ziplist",
        SET_INTSET => "intset",
        ZSET_ZIPLIST => "zset ziplist",
        ZSET_LISTPACK => "zset listpack",
        HASH_ZIPLIST => "hash ziplist",
        HASH_LISTPACK => "hash listpack",
        SET_LISTPACK => "set listpack",
        _ => "string value",
    }
}

/// Consume a string in any of its encodings, checking its lengths.
pub(super) fn skip_string<R: Read>(inp: &mut Input<R>, what: &'static str) -> Result<()> {
    let at = inp.offset();
    match inp.read_len_or_enc(what)? {
        Len::Len(n) => {
            inp.check_len(n, inp.limits.max_blob, what)
                .map_err(|e| at_length_field(e, at))?;
            inp.skip(n, what)
        }
        Len::Encoded(ENC_INT8) => inp.skip(1, what),
        Len::Encoded(ENC_INT16) => inp.skip(2, what),
        Len::Encoded(ENC_INT32) => inp.skip(4, what),
        Len::Encoded(ENC_LZF) => {
            let clen_at = inp.offset();
            let clen = inp.read_len(what)?;
            inp.read_len(what)?;
            inp.check_len(clen, inp.limits.max_blob, what)
                .map_err(|e| at_length_field(e, clen_at))?;
            inp.skip(clen, what)
        }
        Len::Encoded(e) => Err(inp.err(ErrorKind::BadStringEncoding(e))),
    }
}
