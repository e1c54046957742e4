//! Presence, partitioned by user over the shards: the owner shard of a user counts that user's
//! sockets on every shard and reports the first connect and the last disconnect.

use ahash::HashMap;

use chatwire_store::{UserKey, UserType};

/// The shard that owns `user`'s presence count.
pub fn presence_owner(user: UserKey, shards: usize) -> usize {
    let t: u64 = match user.user_type {
        UserType::Brand => 0x9e37_79b9_7f4a_7c15,
        UserType::Influencer => 0xc2b2_ae3d_27d4_eb4f,
    };
    let mixed = (user.id as u64 ^ t).wrapping_mul(0xff51_afd7_ed55_8ccd);
    ((mixed >> 33) % shards.max(1) as u64) as usize
}

/// Socket counts of the users this shard owns.
#[derive(Debug, Default)]
pub struct Presence {
    /// User -> number of connected chat sockets (absent = offline).
    counts: HashMap<UserKey, u32>,
}

impl Presence {
    /// Counts one more socket; true when the user just came online.
    pub fn up(&mut self, user: UserKey) -> bool {
        let count = self.counts.entry(user).or_insert(0);
        *count += 1;
        *count == 1
    }

    /// Counts one socket less; true when the user just went offline.
    pub fn down(&mut self, user: UserKey) -> bool {
        match self.counts.get_mut(&user) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                self.counts.remove(&user);
                true
            }
            None => false,
        }
    }

    /// True when the user has at least one socket.
    pub fn is_online(&self, user: UserKey) -> bool {
        self.counts.contains_key(&user)
    }

    /// Number of online users owned here.
    pub fn online_count(&self) -> usize {
        self.counts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_and_last_socket_are_reported() {
        let mut p = Presence::default();
        let u = UserKey {
            user_type: UserType::Influencer,
            id: 3,
        };
        assert!(p.up(u));
        assert!(!p.up(u));
        assert!(p.is_online(u));
        assert!(!p.down(u));
        assert!(p.down(u));
        assert!(!p.is_online(u));
        assert!(!p.down(u));
    }

    #[test]
    fn brand_and_influencer_with_same_id_are_different_users() {
        let mut p = Presence::default();
        p.up(UserKey {
            user_type: UserType::Brand,
            id: 5,
        });
        assert!(!p.is_online(UserKey {
            user_type: UserType::Influencer,
            id: 5
        }));
        assert!(
            presence_owner(
                UserKey {
                    user_type: UserType::Brand,
                    id: 5
                },
                4
            ) < 4
        );
    }
}
