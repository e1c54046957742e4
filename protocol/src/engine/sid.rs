//! Session ids: 16 url-safe base64 characters made from 12 caller-supplied random bytes.
//!
//! The crate reads no randomness itself (sans-IO): the server passes bytes from its RNG. The first
//! character is replaced by the index of the shard that owns the session, so any thread can route
//! a polling request to its shard by looking at one byte (90 random bits remain). In a fleet of
//! nodes the next two characters name the node that owns the session ([`Sid::new_on_node`],
//! node ids 1..=4095; 78 random bits remain), so any node can route a request to its owner.

use std::fmt;

/// The url-safe base64 alphabet used for every character of a [`Sid`].
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Length of a session id in characters.
pub const SID_LEN: usize = 16;

/// An Engine.IO session id (`Copy`, 16 bytes, no heap).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid([u8; SID_LEN]);

impl Sid {
    /// Builds a sid from 12 random bytes; the first character encodes `shard % 64`.
    pub fn new(random: [u8; 12], shard: u8) -> Sid {
        let mut out = [0u8; SID_LEN];
        for (chunk, dst) in random.chunks_exact(3).zip(out.chunks_exact_mut(4)) {
            if let ([a, b, c], [w, x, y, z]) = (chunk, dst) {
                let n = (u32::from(*a) << 16) | (u32::from(*b) << 8) | u32::from(*c);
                *w = alphabet(n >> 18);
                *x = alphabet(n >> 12);
                *y = alphabet(n >> 6);
                *z = alphabet(n);
            }
        }
        out[0] = alphabet(u32::from(shard));
        Sid(out)
    }

    /// Builds a sid owned by `shard` of node `node` (`node % 4096`, in the second and third
    /// characters); node 0 means "no fleet".
    pub fn new_on_node(random: [u8; 12], shard: u8, node: u16) -> Sid {
        let mut sid = Sid::new(random, shard);
        sid.0[1] = alphabet(u32::from(node) >> 6);
        sid.0[2] = alphabet(u32::from(node));
        sid
    }

    /// Accepts exactly 16 url-safe base64 characters; anything else is `None` (an unknown sid).
    pub fn parse(s: &str) -> Option<Sid> {
        let bytes: [u8; SID_LEN] = s.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(|b| ALPHABET.contains(b))
            .then_some(Sid(bytes))
    }

    /// The shard index encoded in the first character (0..64).
    pub fn shard(&self) -> u8 {
        position(self.0[0])
    }

    /// The node id encoded in the second and third characters (0..4096); meaningful only for
    /// sids built by [`Sid::new_on_node`].
    pub fn node(&self) -> u16 {
        (u16::from(position(self.0[1])) << 6) | u16::from(position(self.0[2]))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only ALPHABET bytes are ever stored, all ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

fn alphabet(n: u32) -> u8 {
    ALPHABET[(n & 63) as usize]
}

/// The 6-bit value of an alphabet character (0 for anything else; parsed sids hold only
/// alphabet characters).
fn position(c: u8) -> u8 {
    ALPHABET
        .iter()
        .position(|&a| a == c)
        .and_then(|p| u8::try_from(p).ok())
        .unwrap_or(0)
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sid({})", self.as_str())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sixteen_url_safe_chars_with_the_shard_first() {
        let sid = Sid::new([0xff; 12], 3);
        assert_eq!(sid.as_str().len(), 16);
        assert_eq!(sid.as_str(), "D_______________");
        assert_eq!(sid.shard(), 3);
        assert_eq!(Sid::new([0; 12], 63).as_str(), "_AAAAAAAAAAAAAAA");
    }

    #[test]
    fn the_node_takes_the_second_and_third_chars() {
        let sid = Sid::new_on_node([0xff; 12], 3, 4095);
        assert_eq!(sid.as_str(), "D_______________");
        assert_eq!(sid.node(), 4095);
        let sid = Sid::new_on_node([0xff; 12], 1, 65);
        assert_eq!(sid.as_str(), "BBB_____________");
        assert_eq!((sid.shard(), sid.node()), (1, 65));
    }

    #[test]
    fn parse_rejects_foreign_ids() {
        assert!(Sid::parse("lv_VI97HAXpY6yYWAAAC").is_none()); // 20 chars
        assert!(Sid::parse("abc").is_none());
        assert!(Sid::parse("AAAAAAAAAAAAAAA=").is_none());
        assert!(Sid::parse("AAAAAAAAAAAAAAAé").is_none());
    }

    proptest! {
        #[test]
        fn parse_inverts_display(random in any::<[u8; 12]>(), shard in 0u8..64) {
            let sid = Sid::new(random, shard);
            prop_assert_eq!(Sid::parse(&sid.to_string()), Some(sid));
            prop_assert_eq!(sid.shard(), shard);
        }

        #[test]
        fn node_and_shard_survive_a_round_trip(random in any::<[u8; 12]>(), shard in 0u8..64, node in 0u16..4096) {
            let sid = Sid::new_on_node(random, shard, node);
            let parsed = Sid::parse(sid.as_str()).unwrap();
            prop_assert_eq!(parsed.node(), node);
            prop_assert_eq!(parsed.shard(), shard);
        }

        #[test]
        fn different_random_bytes_give_different_ids(a in any::<[u8; 12]>(), b in any::<[u8; 12]>()) {
            // Everything but the 6 bits under the shard character is kept.
            let mut a2 = a; let mut b2 = b;
            a2[0] &= 0b11; b2[0] &= 0b11;
            prop_assume!(a2 != b2);
            prop_assert_ne!(Sid::new(a, 0), Sid::new(b, 0));
        }
    }
}
