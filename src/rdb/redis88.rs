//! Redis 8.8–8.10 additions: sparse arrays (28), hash templates (29–32 and opcode 242),
//! and GCRA rate-limiter state (33).
//!
//! Owns these layouts and the template table a file defines before the hashes that refer
//! to it. Template-encoded hashes are decoded to ordinary field/value hashes. It must never
//! resolve a reference to a template the file has not defined, nor accept field names out
//! of the order the server requires (by length, then bytes), which it uses to find fields.

use std::collections::HashMap;
use std::io::Read;

use super::blob::{blob, packed_err, reserve};
use super::error::{ErrorKind, RdbError, Result};
use super::input::Input;
use super::packed::{self, Elem};
use super::types::*;
use super::value::{ArrayElem, HashField, SparseArray, Value};

/// Hash templates defined so far in the file (opcode 242), by id.
#[derive(Default)]
pub struct Templates {
    by_id: HashMap<u64, Vec<Vec<u8>>>,
}

fn invalid(at: u64, what: &'static str, detail: impl Into<String>) -> RdbError {
    RdbError::new(at, ErrorKind::invalid(what, detail))
}

fn check_field_order(at: u64, fields: &[Vec<u8>]) -> Result<()> {
    if fields.is_empty() {
        return Err(invalid(at, "hash template", "no fields"));
    }
    for w in fields.windows(2) {
        if (w[0].len(), &w[0]) >= (w[1].len(), &w[1]) {
            return Err(invalid(
                at,
                "hash template",
                "field names not strictly sorted by length, then bytes",
            ));
        }
    }
    Ok(())
}

impl Templates {
    /// Read an opcode-242 record and remember it.
    pub fn read_definition<R: Read>(&mut self, inp: &mut Input<R>) -> Result<(u64, Vec<Vec<u8>>)> {
        let at = inp.offset();
        let id = inp.read_len("hash template id")?;
        let fields = read_field_list(inp)?;
        check_field_order(at, &fields)?;
        if self.by_id.insert(id, fields.clone()).is_some() {
            return Err(invalid(
                at,
                "hash template",
                format!("id {id} defined twice"),
            ));
        }
        Ok((id, fields))
    }

    fn get(&self, at: u64, id: u64) -> Result<&[Vec<u8>]> {
        self.by_id.get(&id).map(Vec::as_slice).ok_or_else(|| {
            invalid(
                at,
                "hash template reference",
                format!("template {id} is not defined"),
            )
        })
    }
}

fn read_field_list<R: Read>(inp: &mut Input<R>) -> Result<Vec<Vec<u8>>> {
    let n = inp.read_count(1, "hash template field count")?;
    let mut fields = Vec::with_capacity(reserve(n));
    for _ in 0..n {
        fields.push(inp.read_string("hash template field")?);
    }
    Ok(fields)
}

/// Field names embedded in a self-contained template hash (29, 31).
fn read_embedded_fields<R: Read>(inp: &mut Input<R>) -> Result<Vec<Vec<u8>>> {
    let at = inp.offset();
    let fields = match inp.read_len("hash template field format")? {
        0 => {
            let (bat, b) = blob(inp, "hash template field listpack")?;
            packed::listpack(&b)
                .map_err(|e| packed_err(bat, "hash template field listpack", e))?
                .into_iter()
                .map(Elem::to_bytes)
                .collect()
        }
        1 => read_field_list(inp)?,
        f => {
            return Err(invalid(
                at,
                "hash template",
                format!("unknown field format {f}"),
            ))
        }
    };
    check_field_order(at, &fields)?;
    Ok(fields)
}

fn zip_fields(fields: &[Vec<u8>], values: Vec<Vec<u8>>) -> Value {
    Value::Hash(
        fields
            .iter()
            .zip(values)
            .map(|(f, v)| HashField {
                field: f.clone(),
                value: v,
                expire_ms: None,
            })
            .collect(),
    )
}

/// A listpack of template id + values; returns the values after checking their count.
fn values_listpack<R: Read>(
    inp: &mut Input<R>,
    nfields: usize,
) -> Result<(Option<i64>, Vec<Vec<u8>>)> {
    let (at, b) = blob(inp, "hash template values")?;
    let items = packed::listpack(&b).map_err(|e| packed_err(at, "hash template values", e))?;
    let Some((first, rest)) = items.split_first() else {
        return Err(invalid(at, "hash template values", "empty listpack"));
    };
    if rest.len() != nfields {
        return Err(invalid(
            at,
            "hash template values",
            format!("{} values for {nfields} fields", rest.len()),
        ));
    }
    Ok((first.as_int(), rest.iter().map(|e| e.to_bytes()).collect()))
}

fn values_strings<R: Read>(inp: &mut Input<R>, nfields: usize) -> Result<Vec<Vec<u8>>> {
    inp.check_count(nfields as u64, 1, "hash template values")?;
    (0..nfields)
        .map(|_| inp.read_string("hash template value"))
        .collect()
}

pub(super) fn read<R: Read>(inp: &mut Input<R>, ty: u8, templates: &Templates) -> Result<Value> {
    let at = inp.offset();
    match ty {
        ARRAY => read_array(inp).map(|a| Value::Array(Box::new(a))),
        GCRA => {
            let tat = inp.read_len("GCRA arrival time")?;
            if tat > i64::MAX as u64 {
                return Err(invalid(
                    at,
                    "GCRA arrival time",
                    format!("{tat} exceeds 2^63-1"),
                ));
            }
            Ok(Value::Gcra(tat))
        }
        HASH_TMPL_LP_REF => {
            let (bat, b) = blob(inp, "hash template values")?;
            let items =
                packed::listpack(&b).map_err(|e| packed_err(bat, "hash template values", e))?;
            let id = match items.first().and_then(|e| e.as_int()) {
                Some(i) if i >= 0 => i as u64,
                _ => {
                    return Err(invalid(
                        bat,
                        "hash template values",
                        "first entry is not a template id",
                    ))
                }
            };
            let fields = templates.get(bat, id)?;
            if items.len() - 1 != fields.len() {
                return Err(invalid(
                    bat,
                    "hash template values",
                    format!("{} values for {} fields", items.len() - 1, fields.len()),
                ));
            }
            Ok(zip_fields(
                fields,
                items[1..].iter().map(|e| e.to_bytes()).collect(),
            ))
        }
        HASH_TMPL_ARRAY_REF => {
            let id = inp.read_len("hash template id")?;
            let fields = templates.get(at, id)?;
            let values = values_strings(inp, fields.len())?;
            Ok(zip_fields(fields, values))
        }
        HASH_TMPL_LP => {
            let fields = read_embedded_fields(inp)?;
            let (_, values) = values_listpack(inp, fields.len())?;
            Ok(zip_fields(&fields, values))
        }
        _ => {
            // HASH_TMPL_ARRAY
            let fields = read_embedded_fields(inp)?;
            let values = values_strings(inp, fields.len())?;
            Ok(zip_fields(&fields, values))
        }
    }
}

const TAG_SDS: u64 = 0;
const TAG_INT: u64 = 1;
const TAG_FLOAT: u64 = 2;
const TAG_SMALLSTR: u64 = 3;

fn read_array<R: Read>(inp: &mut Input<R>) -> Result<SparseArray> {
    let at = inp.offset();
    let n = inp.read_count(3, "array element count")?;
    if n == 0 {
        return Err(invalid(at, "array", "no elements"));
    }
    let fat = inp.offset();
    let insert_idx = match inp.read_len("array insert flag")? {
        0 => None,
        1 => Some(inp.read_len("array insert index")?),
        f => return Err(invalid(fat, "array", format!("insert flag {f}"))),
    };
    let mut elems: Vec<(u64, ArrayElem)> = Vec::with_capacity(reserve(n));
    for _ in 0..n {
        let iat = inp.offset();
        let idx = inp.read_len("array index")?;
        if idx == u64::MAX || elems.last().is_some_and(|(p, _)| *p >= idx) {
            return Err(invalid(iat, "array", format!("index {idx} out of order")));
        }
        let tat = inp.offset();
        let e = match inp.read_len("array element tag")? {
            TAG_SDS | TAG_SMALLSTR => ArrayElem::Str(inp.read_string("array element")?),
            TAG_INT => ArrayElem::Int(i64::from_le_bytes(inp.read_array("array integer")?)),
            TAG_FLOAT => ArrayElem::Float(f64::from_le_bytes(inp.read_array("array float")?)),
            t => return Err(invalid(tat, "array", format!("unknown element tag {t}"))),
        };
        elems.push((idx, e));
    }
    Ok(SparseArray { insert_idx, elems })
}
