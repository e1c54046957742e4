//! Seeding (`--seed rest`): creates one conversation per room over chatwire's REST API before
//! the run, `POST /api/chat/conversations` as the room's first member: a 1:1 conversation for
//! rooms of 2, a group with the other members otherwise. The ids go into [`Ctx::conversations`].

use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use futures_util::StreamExt;
use serde_json::json;

use crate::ctx::Ctx;

/// Requests in flight at once while seeding.
const CONCURRENCY: usize = 32;

/// Creates every room's conversation; returns how long it took.
pub async fn seed(ctx: &Arc<Ctx>) -> anyhow::Result<std::time::Duration> {
    let started = Instant::now();
    let s = &ctx.settings;
    let client = ctx.http.first().context("no http client")?.clone();
    let slots = s.conversations();
    let results: Vec<anyhow::Result<(usize, i64)>> = futures_util::stream::iter(0..slots)
        .map(|slot| {
            let client = client.clone();
            let ctx = Arc::clone(ctx);
            async move { create(&ctx, &client, slot).await }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut ids = ctx
        .conversations
        .write()
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    for r in results {
        let (slot, id) = r?;
        if let Some(entry) = ids.get_mut(slot) {
            *entry = id;
        }
    }
    Ok(started.elapsed())
}

/// What a conversations file holds: the rooms it was seeded for, and their ids by slot.
#[derive(serde::Serialize, serde::Deserialize, Debug)]
struct Seeded {
    base_url: String,
    first_user: u64,
    users: u64,
    room_size: u64,
    ids: Vec<i64>,
}

impl Seeded {
    fn of(ctx: &Ctx, ids: Vec<i64>) -> Self {
        let s = &ctx.settings;
        Self {
            base_url: s.base_url.clone(),
            first_user: s.first_user_id,
            users: s.users,
            room_size: s.room_size,
            ids,
        }
    }

    /// Whether these are the rooms of `ctx`'s run on its server.
    fn is_for(&self, ctx: &Ctx) -> bool {
        let s = &ctx.settings;
        self.base_url == s.base_url
            && self.first_user == s.first_user_id
            && self.users == s.users
            && self.room_size == s.room_size
            && u64::try_from(self.ids.len()).is_ok_and(|n| n == s.conversations())
    }
}

/// Seeds (see [`seed`]), unless `file` holds this run's rooms on this server: then takes their
/// ids from it. Seeded ids are written to `file`. Returns how long seeding took (`None`: taken
/// from the file). A file seeded for another server, user range or room size is seeded over.
pub async fn seed_once(
    ctx: &Arc<Ctx>,
    file: Option<&Path>,
) -> anyhow::Result<Option<std::time::Duration>> {
    let kept = file
        .and_then(|f| std::fs::read(f).ok())
        .and_then(|bytes| serde_json::from_slice::<Seeded>(&bytes).ok())
        .filter(|kept| kept.is_for(ctx));
    if let Some(kept) = kept {
        let mut ids = ctx
            .conversations
            .write()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        *ids = kept.ids;
        return Ok(None);
    }
    let took = seed(ctx).await?;
    if let Some(file) = file {
        let ids = ctx
            .conversations
            .read()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .clone();
        let text = serde_json::to_vec(&Seeded::of(ctx, ids))?;
        std::fs::write(file, text).with_context(|| format!("writing {}", file.display()))?;
    }
    Ok(Some(took))
}

/// Creates the conversation of room `slot`.
async fn create(ctx: &Ctx, client: &reqwest::Client, slot: u64) -> anyhow::Result<(usize, i64)> {
    let s = &ctx.settings;
    let room = s.room_size.max(1);
    let first = slot * room;
    let last = (first + room).min(s.users);
    let creator = s.user(first);
    let others: Vec<_> = (first + 1..last).map(|i| s.user(i)).collect();
    let body = match others.as_slice() {
        [] => bail!(
            "room {slot} has a single member; use a user count that is a multiple of the room size"
        ),
        [other] if room == 2 => {
            json!({ "participantId": other.id, "participantType": other.kind() })
        }
        _ => json!({
            "participants": others.iter().map(|u| json!({"userId": u.id, "userType": u.kind()})).collect::<Vec<_>>(),
            "title": format!("loadgen room {}", slot + 1),
        }),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let token = s.credentials.token(creator, now)?;
    let response = client
        .post(format!("{}/api/chat/conversations", s.base_url))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body)?)
        .send()
        .await
        .with_context(|| format!("seeding room {slot}"))?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        bail!("seeding room {slot}: HTTP {status}: {text}");
    }
    let value: serde_json::Value = serde_json::from_str(&text)?;
    let id = value
        .get("id")
        .and_then(serde_json::Value::as_i64)
        .context("conversation without id")?;
    Ok((usize::try_from(slot)?, id))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ctx::{SeedMode, Settings};

    fn ctx(users: u64, room: u64) -> Arc<Ctx> {
        let mut settings = Settings::for_tests(users, room, 1);
        settings.seed = SeedMode::Rest;
        Ctx::new(settings).unwrap()
    }

    fn file(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("chatwire-seed-{}-{name}.json", std::process::id()))
    }

    /// Nothing listens at the settings' server: seeding there fails, so a run that succeeds
    /// took its ids from the file.
    #[tokio::test]
    async fn a_file_of_the_same_rooms_is_reused_and_any_other_is_seeded_over() {
        let path = file("reuse");
        let same = ctx(6, 2);
        let kept = Seeded::of(&same, vec![41, 42, 43]);
        std::fs::write(&path, serde_json::to_vec(&kept).unwrap()).unwrap();
        assert_eq!(seed_once(&same, Some(&path)).await.unwrap(), None);
        assert_eq!(*same.conversations.read().unwrap(), vec![41, 42, 43]);

        // Another room size, user count or server: seeded again (and here that fails).
        for other in [ctx(6, 3), ctx(8, 2)] {
            assert!(seed_once(&other, Some(&path)).await.is_err());
        }
        let mut moved = Settings::for_tests(6, 2, 1);
        moved.seed = SeedMode::Rest;
        moved.base_url = "http://127.0.0.1:2".into();
        assert!(
            seed_once(&Ctx::new(moved).unwrap(), Some(&path))
                .await
                .is_err()
        );
        // An unreadable file too.
        std::fs::write(&path, b"{not json").unwrap();
        assert!(seed_once(&same, Some(&path)).await.is_err());
        let _ = std::fs::remove_file(path);
    }
}
