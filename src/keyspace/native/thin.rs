//! Owned bytes behind one thin pointer: the element type of big collections.
//!
//! Owns the layout `[length as LEB128][bytes]` in one allocation, addressed by an 8-byte
//! pointer. A `Box<[u8]>` is a 16-byte fat pointer; a big set, hash or sorted set holds
//! one per member in hash-table slots that are half empty after a split (hashbrown tables
//! are powers of two), so the pointer's width is paid about twice. The length prefix is one
//! byte below 128 bytes and usually fits in the allocator's rounding (a 14-byte member takes
//! a 16-byte block either way). Measured on the 2 M / 3 M-member collections of
//! `BENCH_DATASET=big`: see docs/decisions.md.
//!
//! A leaf, and with [`super::alias`] the only `unsafe` of the keyspace: it must never
//! hand out bytes past the length it wrote, and every allocation it makes is freed
//! exactly once, with the layout it was made with.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::fmt;
use std::ptr::NonNull;

/// Immutable owned bytes, 8 bytes wide.
pub struct Thin(NonNull<u8>);

// SAFETY: `Thin` owns its allocation exclusively (no interior mutability, no sharing),
// exactly as `Box<[u8]>` does.
unsafe impl Send for Thin {}
// SAFETY: as above; `&Thin` only reads.
unsafe impl Sync for Thin {}

fn prefix_len(mut n: usize) -> usize {
    let mut k = 1;
    while n >= 0x80 {
        n >>= 7;
        k += 1;
    }
    k
}

fn layout(total: usize) -> Layout {
    // A length that cannot be laid out cannot have been held in memory to copy from.
    Layout::from_size_align(total, 1).unwrap_or_else(|_| handle_alloc_error(Layout::new::<u8>()))
}

impl Thin {
    pub fn new(bytes: &[u8]) -> Thin {
        let n = bytes.len();
        let p = prefix_len(n);
        let l = layout(p + n);
        // SAFETY: `l` has a non-zero size (the prefix is at least one byte).
        let ptr = unsafe { alloc(l) };
        let Some(ptr) = NonNull::new(ptr) else {
            handle_alloc_error(l)
        };
        let mut v = n;
        for i in 0..p {
            let more = if i + 1 < p { 0x80 } else { 0 };
            // SAFETY: `i < p <= p + n`, inside the allocation.
            unsafe { ptr.as_ptr().add(i).write((v & 0x7f) as u8 | more) };
            v >>= 7;
        }
        // SAFETY: the allocation has `n` bytes after the prefix; the source is another
        // object, so the ranges do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.as_ptr().add(p), n);
        }
        Thin(ptr)
    }

    /// (length, prefix bytes).
    fn header(&self) -> (usize, usize) {
        let mut n = 0usize;
        let mut i = 0;
        loop {
            // SAFETY: `new` wrote a complete prefix (its last byte has no 0x80 bit), so the
            // loop stops inside the allocation.
            let b = unsafe { self.0.as_ptr().add(i).read() };
            n |= ((b & 0x7f) as usize) << (7 * i);
            i += 1;
            if b & 0x80 == 0 {
                return (n, i);
            }
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        let (n, p) = self.header();
        // SAFETY: `new` initialised `n` bytes after the `p`-byte prefix; they live as long
        // as `self` and are never written again.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().add(p), n) }
    }
}

impl Drop for Thin {
    fn drop(&mut self) {
        let (n, p) = self.header();
        // SAFETY: allocated in `new` with exactly this layout, freed only here.
        unsafe { dealloc(self.0.as_ptr(), layout(p + n)) }
    }
}

impl Clone for Thin {
    fn clone(&self) -> Thin {
        Thin::new(self.as_bytes())
    }
}

impl std::ops::Deref for Thin {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl From<&[u8]> for Thin {
    fn from(b: &[u8]) -> Thin {
        Thin::new(b)
    }
}

impl PartialEq for Thin {
    fn eq(&self, other: &Thin) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Thin {}

impl fmt::Debug for Thin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&String::from_utf8_lossy(self.as_bytes()), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_across_prefix_widths_round_trip() {
        for n in [
            0usize, 1, 14, 127, 128, 129, 16_383, 16_384, 70_000, 2_100_000,
        ] {
            let v: Vec<u8> = (0..n).map(|i| (i * 31 % 251) as u8).collect();
            let t = Thin::new(&v);
            assert_eq!(t.as_bytes(), &v[..], "length {n}");
            let c = t.clone();
            drop(t);
            assert_eq!(&*c, &v[..], "clone of length {n}");
        }
        assert_eq!(std::mem::size_of::<Thin>(), 8);
        assert_eq!(std::mem::size_of::<Option<Thin>>(), 8);
    }

    #[test]
    fn prefix_is_one_byte_below_128() {
        assert_eq!(prefix_len(0), 1);
        assert_eq!(prefix_len(127), 1);
        assert_eq!(prefix_len(128), 2);
        assert_eq!(prefix_len(usize::MAX), 10);
    }
}
