//! Taking a big collection element by element as it is read, instead of as a decoded
//! [`super::Value`]: what lets a loader build its own structure without ever holding the
//! value twice.
//!
//! A leaf: the reader asks [`Collector::wants`] once per plain-encoded set, hash, sorted
//! set or list and, on yes, hands every element over as it is read, still checked as
//! before (lengths, NaN scores, packed nodes). It never decides anything about the data.

/// Receives a collection's elements.
pub trait Collector {
    /// Whether to take a value of RDB type `ty` with `n` elements (quicklists: `n` nodes)
    /// element by element. The reader then returns the key with an empty value.
    fn wants(&mut self, ty: u8, n: u64) -> bool;
    /// A set member.
    fn member(&mut self, m: Vec<u8>);
    /// A hash field and its value.
    fn field(&mut self, field: Vec<u8>, value: Vec<u8>);
    /// A sorted-set member and its score (never NaN).
    fn scored(&mut self, member: Vec<u8>, score: f64);
    /// A list element, in order.
    fn element(&mut self, e: &[u8]);
}

/// `collect` if it wants a value of type `ty` with `n` elements.
pub(crate) fn wanted(
    collect: Option<&mut dyn Collector>,
    ty: u8,
    n: u64,
) -> Option<&mut dyn Collector> {
    let c = collect?;
    if c.wants(ty, n) {
        Some(c)
    } else {
        None
    }
}
