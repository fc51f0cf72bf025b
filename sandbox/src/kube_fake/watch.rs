//! `?watch=true`: a stream of `{"type": ADDED|MODIFIED|DELETED|ERROR, "object": …}` lines.
//! Every store change is broadcast under the store lock, so a watcher that subscribes under
//! the same lock sees exactly the changes after its snapshot. `resourceVersion` absent or `0`
//! starts with synthetic ADDED events for what exists; otherwise only later changes are sent.
//! `timeoutSeconds` ends the stream like the server does.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::discovery::ResourceDef;
use super::selectors::{FieldSelector, LabelSelector};
use super::store::Change;
use super::Shared;

#[derive(Clone, Debug)]
pub struct WatchEvent {
    pub group: &'static str,
    pub plural: &'static str,
    pub type_: &'static str,
    pub object: Value,
}

impl WatchEvent {
    pub fn from_change(def: &ResourceDef, change: &Change) -> Self {
        let (type_, object) = match change {
            Change::Created(o) => ("ADDED", o),
            Change::Updated { new, .. } => ("MODIFIED", new),
            Change::Deleting(o) => ("MODIFIED", o),
            Change::Deleted(o) => ("DELETED", o),
        };
        WatchEvent {
            group: def.group,
            plural: def.plural,
            type_,
            object: object.clone(),
        }
    }
}

fn rv_of(o: &Value) -> u64 {
    o["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn line(type_: &str, object: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": type_, "object": object})).expect("json");
    v.push(b'\n');
    Bytes::from(v)
}

pub struct Filter {
    pub def: ResourceDef,
    pub ns: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    fn matches(&self, o: &Value) -> bool {
        let ns_ok = match &self.ns {
            Some(ns) if self.def.namespaced => o["metadata"]["namespace"] == ns.as_str(),
            _ => true,
        };
        ns_ok && self.labels.matches(o.pointer("/metadata/labels")) && self.fields.matches(o)
    }
}

pub fn stream(
    shared: &Arc<Shared>,
    filter: Filter,
    resource_version: Option<&str>,
    timeout: Option<Duration>,
) -> impl Stream<Item = Bytes> + Send + 'static {
    let (rx, initial, since) = {
        let st = shared.lock();
        let rx = shared.watch_tx.subscribe();
        let current: u64 = st.store.current_rv().parse().unwrap_or(0);
        let initial: Vec<Bytes> = match resource_version {
            None | Some("") | Some("0") => st
                .store
                .all(&filter.def, filter.ns.as_deref())
                .iter()
                .filter(|o| filter.matches(o))
                .map(|o| line("ADDED", o))
                .collect(),
            Some(_) => Vec::new(),
        };
        let since = match resource_version {
            Some(v) if !v.is_empty() && v != "0" => v.parse().unwrap_or(current),
            _ => current,
        };
        (rx, initial, since)
    };
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let live = stream::unfold(
        (rx, filter, false),
        move |(mut rx, filter, done)| async move {
            if done {
                return None;
            }
            loop {
                let next = match deadline {
                    Some(d) => match tokio::time::timeout_at(d, rx.recv()).await {
                        Ok(r) => r,
                        Err(_) => return None,
                    },
                    None => rx.recv().await,
                };
                match next {
                    Ok(ev) => {
                        if ev.group != filter.def.group || ev.plural != filter.def.plural {
                            continue;
                        }
                        if rv_of(&ev.object) <= since || !filter.matches(&ev.object) {
                            continue;
                        }
                        return Some((line(ev.type_, &ev.object), (rx, filter, false)));
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let gone = json!({
                            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": "too old resource version", "reason": "Expired", "code": 410,
                        });
                        return Some((line("ERROR", &gone), (rx, filter, true)));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    );
    stream::iter(initial).chain(live)
}
