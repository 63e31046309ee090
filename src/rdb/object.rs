//! Decoding of one object (the value after a type byte) into a [`Value`].
//!
//! Owns the mapping from type codes to layouts, per dialect. It must never accept a code
//! it does not know (an error names the code) and never build a collection from an
//! unchecked count: counts are checked against the input before any reservation.

use std::io::Read;

use super::blob::{blob, packed_err, reserve};
use super::collect::{wanted, Collector};
use super::error::{ErrorKind, RdbError, Result};
use super::input::Input;
use super::packed::{self, Elem, PackedError};
use super::types::*;
use super::value::{HashField, ModuleValue, Value};
use super::{code_name, Dialect};

/// One value of type `ty`; with a `collect`or that wants it, a big plain-encoded
/// collection's elements go to it as they are read and an empty value is returned.
pub(super) fn read_object<R: Read>(
    inp: &mut Input<R>,
    ty: u8,
    dialect: Dialect,
    templates: &super::redis88::Templates,
    collect: Option<&mut dyn Collector>,
) -> Result<Value> {
    match ty {
        STRING => Ok(Value::String(inp.read_string("string value")?)),
        LIST => {
            let n = inp.read_count(1, "list length")?;
            if let Some(c) = wanted(collect, ty, n) {
                for _ in 0..n {
                    c.element(&inp.read_string("list element")?);
                }
                return Ok(Value::List(Vec::new()));
            }
            let mut v = Vec::with_capacity(reserve(n));
            for _ in 0..n {
                v.push(inp.read_string("list element")?);
            }
            Ok(Value::List(v))
        }
        SET => {
            let n = inp.read_count(1, "set size")?;
            if let Some(c) = wanted(collect, ty, n) {
                for _ in 0..n {
                    c.member(inp.read_string("set member")?);
                }
                return Ok(Value::Set(Vec::new()));
            }
            let mut v = Vec::with_capacity(reserve(n));
            for _ in 0..n {
                v.push(inp.read_string("set member")?);
            }
            Ok(Value::Set(v))
        }
        ZSET | ZSET_2 => {
            let n = inp.read_count(2, "zset size")?;
            let mut collect = wanted(collect, ty, n);
            let mut v = Vec::with_capacity(if collect.is_some() { 0 } else { reserve(n) });
            for _ in 0..n {
                let m = inp.read_string("zset member")?;
                let at = inp.offset();
                let s = if ty == ZSET {
                    inp.read_text_double("zset score")?
                } else {
                    inp.read_binary_double("zset score")?
                };
                if s.is_nan() {
                    return Err(RdbError::new(at, ErrorKind::invalid("zset score", "NaN")));
                }
                match collect.as_mut() {
                    Some(c) => c.scored(m, s),
                    None => v.push((m, s)),
                }
            }
            Ok(Value::SortedSet(v))
        }
        HASH => {
            let n = inp.read_count(2, "hash size")?;
            if let Some(c) = wanted(collect, ty, n) {
                for _ in 0..n {
                    let field = inp.read_string("hash field")?;
                    c.field(field, inp.read_string("hash value")?);
                }
                return Ok(Value::Hash(Vec::new()));
            }
            let mut v = Vec::with_capacity(reserve(n));
            for _ in 0..n {
                let field = inp.read_string("hash field")?;
                let value = inp.read_string("hash value")?;
                v.push(HashField {
                    field,
                    value,
                    expire_ms: None,
                });
            }
            Ok(Value::Hash(v))
        }
        MODULE_PRE_GA => Err(inp.err(ErrorKind::Unsupported(
            "module value in the pre-GA format (type 6)",
            "its layout is private to the module and no server since Redis 4.0 GA loads it".into(),
        ))),
        MODULE_2 => read_module_value(inp).map(Value::Module),
        HASH_ZIPMAP => {
            let (at, blob) = blob(inp, "zipmap")?;
            let items = packed::zipmap(&blob).map_err(|e| packed_err(at, "zipmap", e))?;
            Ok(Value::Hash(
                items
                    .chunks_exact(2)
                    .map(|p| HashField {
                        field: p[0].to_vec(),
                        value: p[1].to_vec(),
                        expire_ms: None,
                    })
                    .collect(),
            ))
        }
        LIST_ZIPLIST => {
            let (at, blob) = blob(inp, "ziplist")?;
            let items = packed::ziplist(&blob).map_err(|e| packed_err(at, "ziplist", e))?;
            Ok(Value::List(items.into_iter().map(Elem::to_bytes).collect()))
        }
        SET_INTSET => {
            let (at, blob) = blob(inp, "intset")?;
            let items = packed::intset(&blob).map_err(|e| packed_err(at, "intset", e))?;
            Ok(Value::Set(
                items
                    .into_iter()
                    .map(|i| i.to_string().into_bytes())
                    .collect(),
            ))
        }
        ZSET_ZIPLIST | ZSET_LISTPACK => read_packed_zset(inp, ty == ZSET_LISTPACK),
        HASH_ZIPLIST | HASH_LISTPACK => read_packed_hash(inp, ty == HASH_LISTPACK),
        SET_LISTPACK => {
            let (at, blob) = blob(inp, "set listpack")?;
            let items = packed::listpack(&blob).map_err(|e| packed_err(at, "set listpack", e))?;
            Ok(Value::Set(items.into_iter().map(Elem::to_bytes).collect()))
        }
        LIST_QUICKLIST | LIST_QUICKLIST_2 => read_quicklist(inp, ty, collect),
        STREAM_LISTPACKS | STREAM_LISTPACKS_2 | STREAM_LISTPACKS_3 | STREAM_LISTPACKS_4
        | STREAM_LISTPACKS_5 => {
            let format = match ty {
                STREAM_LISTPACKS => 1,
                STREAM_LISTPACKS_2 => 2,
                STREAM_LISTPACKS_3 => 3,
                STREAM_LISTPACKS_4 => 4,
                _ => 5,
            };
            if format >= 4 && dialect != Dialect::Redis {
                return Err(unknown(inp, ty, dialect));
            }
            super::stream::read_stream(inp, format).map(|s| Value::Stream(Box::new(s)))
        }
        T22 | T23 | HASH_METADATA | HASH_LISTPACK_EX => super::hash_ttl::read(inp, ty, dialect),
        ARRAY | HASH_TMPL_LP | HASH_TMPL_LP_REF | HASH_TMPL_ARRAY | HASH_TMPL_ARRAY_REF | GCRA
            if dialect == Dialect::Redis =>
        {
            super::redis88::read(inp, ty, templates)
        }
        _ => Err(unknown(inp, ty, dialect)),
    }
}

fn unknown<R: Read>(inp: &Input<R>, ty: u8, dialect: Dialect) -> RdbError {
    RdbError::new(
        inp.offset().saturating_sub(1),
        ErrorKind::UnknownType(ty, code_name(ty, dialect)),
    )
}

fn decode_packed(b: &[u8], listpack: bool) -> std::result::Result<Vec<Elem<'_>>, PackedError> {
    if listpack {
        packed::listpack(b)
    } else {
        packed::ziplist(b)
    }
}

fn odd(at: u64, what: &'static str, n: usize) -> RdbError {
    RdbError::new(
        at,
        ErrorKind::invalid(what, format!("odd number of elements ({n})")),
    )
}

/// A zset in a ziplist or listpack: member, score, member, score, …
fn read_packed_zset<R: Read>(inp: &mut Input<R>, listpack: bool) -> Result<Value> {
    let what = if listpack {
        "zset listpack"
    } else {
        "zset ziplist"
    };
    let (at, b) = blob(inp, what)?;
    let items = decode_packed(&b, listpack).map_err(|e| packed_err(at, what, e))?;
    if items.len() % 2 != 0 {
        return Err(odd(at, what, items.len()));
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    for p in items.chunks_exact(2) {
        // An integer entry is an exact score; text is read as the server's strtod does.
        let score = p[1].as_f64().filter(|s| !s.is_nan()).ok_or_else(|| {
            let text = String::from_utf8_lossy(&p[1].to_bytes()).into_owned();
            RdbError::new(
                at,
                ErrorKind::invalid(what, format!("score {text:?} is not a number")),
            )
        })?;
        out.push((p[0].to_bytes(), score));
    }
    Ok(Value::SortedSet(out))
}

/// A hash in a ziplist or listpack: field, value, field, value, …
fn read_packed_hash<R: Read>(inp: &mut Input<R>, listpack: bool) -> Result<Value> {
    let what = if listpack {
        "hash listpack"
    } else {
        "hash ziplist"
    };
    let (at, b) = blob(inp, what)?;
    let items = decode_packed(&b, listpack).map_err(|e| packed_err(at, what, e))?;
    if items.len() % 2 != 0 {
        return Err(odd(at, what, items.len()));
    }
    Ok(Value::Hash(
        items
            .chunks_exact(2)
            .map(|p| HashField {
                field: p[0].to_bytes(),
                value: p[1].to_bytes(),
                expire_ms: None,
            })
            .collect(),
    ))
}

const QUICKLIST_NODE_PLAIN: u64 = 1;
const QUICKLIST_NODE_PACKED: u64 = 2;

fn read_quicklist<R: Read>(
    inp: &mut Input<R>,
    ty: u8,
    collect: Option<&mut dyn Collector>,
) -> Result<Value> {
    let v2 = ty == LIST_QUICKLIST_2;
    let nodes = inp.read_count(2, "quicklist node count")?;
    let mut collect = wanted(collect, ty, nodes);
    let mut out = Vec::new();
    for _ in 0..nodes {
        let container = if v2 {
            let at = inp.offset();
            let c = inp.read_len("quicklist container")?;
            if c != QUICKLIST_NODE_PLAIN && c != QUICKLIST_NODE_PACKED {
                return Err(RdbError::new(
                    at,
                    ErrorKind::invalid("quicklist node", format!("unknown container type {c}")),
                ));
            }
            c
        } else {
            QUICKLIST_NODE_PACKED
        };
        let what = if v2 {
            "quicklist listpack"
        } else {
            "quicklist ziplist"
        };
        let (at, b) = blob(inp, what)?;
        if container == QUICKLIST_NODE_PLAIN {
            if b.is_empty() {
                return Err(RdbError::new(
                    at,
                    ErrorKind::invalid("quicklist node", "empty plain node"),
                ));
            }
            match collect.as_mut() {
                Some(c) => c.element(&b),
                None => out.push(b),
            }
            continue;
        }
        // Empty nodes are skipped by the servers' loaders, so they are legal here too.
        let items = if v2 {
            packed::listpack(&b)
        } else {
            packed::ziplist(&b)
        }
        .map_err(|e| packed_err(at, what, e))?;
        match collect.as_mut() {
            Some(c) => items.into_iter().for_each(|e| c.element(&e.to_bytes())),
            None => out.extend(items.into_iter().map(Elem::to_bytes)),
        }
    }
    Ok(Value::List(out))
}

const MODULE_OPCODE_EOF: u64 = 0;
const MODULE_OPCODE_SINT: u64 = 1;
const MODULE_OPCODE_UINT: u64 = 2;
const MODULE_OPCODE_FLOAT: u64 = 3;
const MODULE_OPCODE_DOUBLE: u64 = 4;
const MODULE_OPCODE_STRING: u64 = 5;

/// The self-describing payload of a module value or module aux record, up to its EOF.
pub(super) fn skip_module_payload<R: Read>(inp: &mut Input<R>) -> Result<()> {
    loop {
        let at = inp.offset();
        match inp.read_len("module payload opcode")? {
            MODULE_OPCODE_EOF => return Ok(()),
            MODULE_OPCODE_SINT | MODULE_OPCODE_UINT => {
                inp.read_len("module integer")?;
            }
            MODULE_OPCODE_FLOAT => inp.skip(4, "module float")?,
            MODULE_OPCODE_DOUBLE => inp.skip(8, "module double")?,
            MODULE_OPCODE_STRING => {
                inp.read_string("module string")?;
            }
            op => {
                return Err(RdbError::new(
                    at,
                    ErrorKind::invalid("module payload", format!("unknown opcode {op}")),
                ))
            }
        }
    }
}

fn read_module_value<R: Read>(inp: &mut Input<R>) -> Result<ModuleValue> {
    inp.start_recording();
    let r = inp
        .read_len("module id")
        .and_then(|id| skip_module_payload(inp).map(|_| id));
    let raw = inp.take_recording();
    let module_id = r?;
    Ok(ModuleValue { module_id, raw })
}
