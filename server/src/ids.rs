//! Unpredictable ids for sessions and sockets: a per-thread keyed SipHash of a counter (keys
//! from the OS through `RandomState`), no lock and no system call per id.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};

thread_local! {
    /// Per-thread counter mixed into session and socket ids.
    static RNG_COUNTER: Cell<u64> = const { Cell::new(0) };
    /// Per-thread randomly keyed SipHash (keys from the OS via `RandomState`).
    static RNG_KEYS: std::collections::hash_map::RandomState = std::collections::hash_map::RandomState::new();
}

/// 12 unpredictable bytes for a session id (keyed SipHash of a counter; keys from the OS).
pub fn random_12() -> [u8; 12] {
    let n = RNG_COUNTER.with(|c| {
        let v = c.get().wrapping_add(1);
        c.set(v);
        v
    });
    let (a, b) = RNG_KEYS.with(|keys| {
        let mut h1 = keys.build_hasher();
        h1.write_u64(n);
        h1.write_u8(1);
        let mut h2 = keys.build_hasher();
        h2.write_u64(n);
        h2.write_u8(2);
        (h1.finish(), h2.finish())
    });
    let mut out = [0u8; 12];
    out[..8].copy_from_slice(&a.to_le_bytes());
    out[8..].copy_from_slice(&b.to_le_bytes()[..4]);
    out
}
