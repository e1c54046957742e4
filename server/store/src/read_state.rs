//! `isRead` from read pointers: a message is read once every participant other than its sender
//! has a last-read pointer at or above its id. No per-message flag is ever updated.

use super::UserKey;

/// The two lowest read pointers of a conversation, enough to answer `isRead` for any sender in O(1).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ReadFloor {
    /// Lowest pointer and its owner.
    lowest: Option<(UserKey, i64)>,
    /// Second lowest pointer (over a different participant).
    second: Option<i64>,
}

impl ReadFloor {
    /// Builds the floor from every participant's pointer (0 = nothing read).
    pub(crate) fn new(pointers: impl IntoIterator<Item = (UserKey, i64)>) -> ReadFloor {
        let mut floor = ReadFloor::default();
        for (user, ptr) in pointers {
            match floor.lowest {
                None => floor.lowest = Some((user, ptr)),
                Some((_, low)) if ptr < low => {
                    floor.second = Some(low);
                    floor.lowest = Some((user, ptr));
                }
                Some(_) => {
                    if floor.second.is_none_or(|s| ptr < s) {
                        floor.second = Some(ptr);
                    }
                }
            }
        }
        floor
    }

    /// Whether every participant except `sender` has read message `id`.
    pub(crate) fn is_read(&self, sender: UserKey, id: i64) -> bool {
        let min_other = match self.lowest {
            None => None,
            Some((owner, _)) if owner == sender => self.second,
            Some((_, low)) => Some(low),
        };
        min_other.is_none_or(|m| m >= id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UserType;

    #[test]
    fn read_once_every_other_participant_passed_it() {
        let a = UserKey::new(UserType::Brand, 1);
        let b = UserKey::new(UserType::Influencer, 1);
        let c = UserKey::new(UserType::Influencer, 2);
        let f = ReadFloor::new([(a, 0), (b, 10), (c, 5)]);
        assert!(!f.is_read(a, 6)); // c has read only up to 5
        assert!(f.is_read(a, 5));
        assert!(!f.is_read(b, 1)); // a has read nothing
        let f = ReadFloor::new([(a, 0), (b, 7)]);
        assert!(f.is_read(a, 7));
        assert!(!f.is_read(a, 8));
        assert!(!f.is_read(b, 1));
    }
}
