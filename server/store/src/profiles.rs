//! Cache of user profiles shared by the SQL stores, so a committed batch does not re-read the
//! `users` table for every message. Bounded: past `capacity` entries it starts over.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::{Profile, UserKey};

/// Profiles by user, filled by `ensure_user` and by reads of the `users` table.
#[derive(Debug)]
pub(crate) struct ProfileCache {
    /// The entries.
    map: RwLock<HashMap<UserKey, Arc<Profile>>>,
    /// Most entries kept before the cache is cleared.
    capacity: usize,
}

impl ProfileCache {
    pub(crate) fn new(capacity: usize) -> ProfileCache {
        ProfileCache {
            map: RwLock::new(HashMap::new()),
            capacity,
        }
    }

    pub(crate) fn get(&self, user: &UserKey) -> Option<Arc<Profile>> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
            .cloned()
    }

    pub(crate) fn insert(&self, user: UserKey, profile: Arc<Profile>) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.capacity && !map.contains_key(&user) {
            map.clear();
        }
        map.insert(user, profile);
    }
}
