//! Idempotency inside one batch: inputs with the same `(sender, conversation, tempId)` are sent to
//! the database once; every copy gets the first one's outcome, marked `duplicate`.

use std::collections::HashMap;

use super::{NewMessage, Outcome, StoreError, Stored, UserKey};

/// Which inputs of a batch go to the database, and how to map the results back.
#[derive(Debug)]
pub(crate) struct BatchPlan {
    /// The database key of each input (None without tempId).
    keys: Vec<Option<String>>,
    /// Indices of the inputs sent to the database (first occurrences), in input order.
    unique: Vec<usize>,
    /// For each input, its position in `unique`.
    source: Vec<usize>,
}

impl BatchPlan {
    pub(crate) fn new(batch: &[NewMessage]) -> BatchPlan {
        let keys: Vec<Option<String>> = batch
            .iter()
            .map(|m| m.temp_id.as_ref().map(|t| t.key()))
            .collect();
        let mut first: HashMap<(UserKey, i64, &str), usize> = HashMap::new();
        let mut unique = Vec::with_capacity(batch.len());
        let mut source = Vec::with_capacity(batch.len());
        for (i, (m, key)) in batch.iter().zip(&keys).enumerate() {
            let slot = match key {
                Some(k) => *first
                    .entry((m.sender, m.conversation_id, k.as_str()))
                    .or_insert_with(|| {
                        unique.push(i);
                        unique.len() - 1
                    }),
                None => {
                    unique.push(i);
                    unique.len() - 1
                }
            };
            source.push(slot);
        }
        BatchPlan {
            keys,
            unique,
            source,
        }
    }

    /// Inputs to send, by index into the batch.
    pub(crate) fn unique(&self) -> &[usize] {
        &self.unique
    }

    /// The idempotency key of input `i`.
    pub(crate) fn key(&self, i: usize) -> Option<&str> {
        self.keys.get(i).and_then(|k| k.as_deref())
    }

    /// One outcome per input from one outcome per unique input; echoes each input's tempId.
    /// First occurrences are moved, only in-batch copies are cloned.
    pub(crate) fn expand(&self, batch: &[NewMessage], outcomes: Vec<Outcome>) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = outcomes.into_iter().map(Some).collect();
        // Output position of each unique input, once placed.
        let mut placed: Vec<Option<usize>> = vec![None; self.unique.len()];
        let mut out: Vec<Outcome> = Vec::with_capacity(batch.len());
        for (i, m) in batch.iter().enumerate() {
            let slot = self.source.get(i).copied().unwrap_or(usize::MAX);
            let first = placed.get(slot).copied().flatten();
            let mut outcome = match (first, outcomes.get_mut(slot).and_then(Option::take)) {
                (None, Some(o)) => o,
                (Some(at), _) => match out.get(at) {
                    Some(Ok(stored)) => Ok(Stored {
                        duplicate: true,
                        prev: None,
                        ..stored.clone()
                    }),
                    Some(Err(e)) => Err(e.clone()),
                    None => Err(StoreError::Internal("missing outcome".into())),
                },
                (None, None) => Err(StoreError::Internal("missing outcome".into())),
            };
            if let Some(p) = placed.get_mut(slot) {
                p.get_or_insert(out.len());
            }
            if let Ok(stored) = &mut outcome {
                stored.message.temp_id = m.temp_id.clone();
            }
            out.push(outcome);
        }
        out
    }
}
