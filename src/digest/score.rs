//! The text a zset score contributes to a digest, per server version.
//!
//! Redis up to 7.0 prints the double with C's `"%.17g"`; Redis 7.2 and later and every
//! Valkey use `fpconv_dtoa` (both in [`crate::dtoa`]). Both print the double the server
//! holds, so the text stored in a file (`"1.50"`, `"1e2"`) never reaches the digest, only
//! the number it parses to. See docs/digest.md.

use crate::dtoa;

/// How a server version prints a score inside `DEBUG DIGEST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreFormat {
    /// `snprintf(buf, 128, "%.17g", score)` (Redis 6.x and 7.0).
    Printf17g,
    /// `fpconv_dtoa(score, buf)` (Redis 7.2+, Valkey 7.2+).
    Fpconv,
}

impl ScoreFormat {
    pub fn format(self, x: f64) -> String {
        match self {
            ScoreFormat::Printf17g => dtoa::printf_17g(x),
            ScoreFormat::Fpconv => dtoa::fpconv(x),
        }
    }

    /// [`Self::format`] appended to `out`.
    pub fn format_into(self, x: f64, out: &mut String) {
        match self {
            ScoreFormat::Printf17g => dtoa::printf_17g_into(x, out),
            ScoreFormat::Fpconv => dtoa::fpconv_into(x, out),
        }
    }
}
