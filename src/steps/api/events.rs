//! Step starts and finishes as a running step can see them: a continuous probe watches for the
//! step that ends it (`until: recover`) without the executor knowing about probes.

use std::collections::BTreeMap;

use tokio::sync::watch;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which event of the `until` step ends a continuous probe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UntilEvent {
    #[default]
    Started,
    Finished,
}

/// Where each step is; skipped and cancelled steps count as finished (and so as started:
/// nobody waits for a step that will never run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Started,
    Finished,
}

#[derive(Debug)]
pub struct StepEvents(watch::Sender<BTreeMap<String, Phase>>);

impl Default for StepEvents {
    fn default() -> Self {
        Self(watch::Sender::new(BTreeMap::new()))
    }
}

impl StepEvents {
    pub fn started(&self, step: &str) {
        self.0.send_modify(|m| {
            m.entry(step.to_string()).or_insert(Phase::Started);
        });
    }

    pub fn finished(&self, step: &str) {
        self.0.send_modify(|m| {
            m.insert(step.to_string(), Phase::Finished);
        });
    }

    /// Resolves once `step` reached `event` (at once if it already has).
    pub async fn wait(&self, step: &str, event: UntilEvent) {
        let want = match event {
            UntilEvent::Started => Phase::Started,
            UntilEvent::Finished => Phase::Finished,
        };
        let mut rx = self.0.subscribe();
        // The sender lives as long as `self`, so `wait_for` only ends when the phase is reached.
        let _ = rx
            .wait_for(|m| m.get(step).is_some_and(|p| *p >= want))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_the_phase_asked_for() {
        let ev = std::sync::Arc::new(StepEvents::default());
        let e2 = std::sync::Arc::clone(&ev);
        let waiter = tokio::spawn(async move { e2.wait("recover", UntilEvent::Finished).await });
        ev.started("recover");
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        ev.finished("recover");
        waiter.await.unwrap();
        // Already reached: no wait.
        ev.wait("recover", UntilEvent::Started).await;
    }
}
