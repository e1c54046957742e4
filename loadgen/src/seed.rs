//! Seeding (`--seed rest`): creates one conversation per room over chatwire's REST API before
//! the run, `POST /api/chat/conversations` as the room's first member: a 1:1 conversation for
//! rooms of 2, a group with the other members otherwise. The ids go into [`Ctx::conversations`].

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
