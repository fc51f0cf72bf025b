//! The simulation's ground truth: which pods lived when, which faults were active on which pod
//! when, and what each fault does to a service ([`Effects`]). Every simulated signal (metrics,
//! traces, API answers, logs) is a pure function of this history, the time and the seed, so
//! two reads of the same window agree and a run is reproducible given `--seed`.
//!
//! The history is the fake cluster's own: pods from its ReplicaSet/StatefulSet controllers
//! (pod-kill gives new names), injections and recoveries from its Chaos Mesh and ChaosBlade
//! controllers with the object's spec at that moment (the object is gone after recovery).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::kube_fake::{ChaosTimestamp, FakeKube, PodLife, Shared};

/// One fault on one target, from its injection to its recovery (`None`: still active).
#[derive(Clone, Debug)]
pub struct FaultLife {
    /// `StressChaos`, `NetworkChaos`, `HTTPChaos`, `DNSChaos`, `PodChaos`, `IOChaos`,
    /// `ChaosBlade`…
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// The pod the record targets.
    pub pod: String,
    pub spec: Value,
    pub applied: DateTime<Utc>,
    pub recovered: Option<DateTime<Utc>>,
}

impl FaultLife {
    pub fn active_at(&self, t: DateTime<Utc>) -> bool {
        self.applied <= t && self.recovered.is_none_or(|r| t < r)
    }
}

/// An HTTP request a fault aborts (HTTPChaos `abort: true`).
#[derive(Clone, Debug, PartialEq)]
pub struct HttpAbort {
    /// `None`: any method.
    pub method: Option<String>,
    /// A path pattern with `*` wildcards, as in HTTPChaos `path`.
    pub path: String,
}

/// A ChaosBlade JVM fault on one method.
#[derive(Clone, Debug, PartialEq)]
pub struct JvmFault {
    /// `throwCustomException`, `return`, `delay`…
    pub action: String,
    pub class: String,
    pub method: String,
    /// The action's other flags (`exception`, `exception-message`, `value`, `time`…).
    pub flags: Vec<(String, String)>,
}

/// What the active faults do to one pod at one instant. Zero/empty: unaffected.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Effects {
    /// Extra CPU cores burnt (StressChaos `cpu`: workers × load%).
    pub cpu_cores: f64,
    /// Extra memory, as a share of the container's limit (StressChaos `memory` size `N%`),
    pub memory_share: f64,
    /// … or in bytes (`size: 256MB`).
    pub memory_bytes: f64,
    /// Extra disk writes in bytes/s (stress-ng `--iomix`/`--hdd` stressors).
    pub io_write_bytes_per_s: f64,
    /// Added latency on the pod's network (NetworkChaos delay: latency + jitter/2).
    pub latency_ms: f64,
    /// Share of the pod's packets dropped (NetworkChaos loss).
    pub loss: f64,
    /// Requests the pod's proxy aborts.
    pub http_aborts: Vec<HttpAbort>,
    /// Host patterns (`ts-order-service*`) the pod's DNS lookups fail for (DNSChaos error).
    pub dns_errors: Vec<String>,
    pub jvm: Vec<JvmFault>,
    /// Apps whose traffic with this pod the fault is limited to (NetworkChaos `target`); empty:
    /// all peers.
    pub peers: Vec<String>,
}

/// The simulated world of one sandbox: the cluster's history plus the seed.
#[derive(Clone)]
pub struct World {
    shared: Arc<Shared>,
    seed: u64,
    /// Per pod: the `class#method`s the simulated traffic ran since the pod's coverage agent
    /// was last reset (what its JaCoCo agent dumps).
    calls: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>,
}

/// How one service (all pods of an `app`) answers at one instant: what the simulated
/// metrics, traces, API answers and logs all derive from, so they agree.
#[derive(Clone, Debug, PartialEq)]
pub struct Health {
    /// Pods of the app alive (0: every request fails, as during a pod-kill restart).
    pub pods_up: usize,
    /// Share of requests that fail (5xx / exceptions), 0..=1.
    pub error_share: f64,
    /// Mean latency of a request served by the app, in ms.
    pub latency_ms: f64,
}

impl World {
    pub fn new(kube: &FakeKube, seed: u64) -> World {
        World {
            shared: kube.shared(),
            seed,
            calls: Arc::default(),
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Every pod that ever lived, in creation order.
    pub fn pods(&self) -> Vec<PodLife> {
        self.shared.lock().pod_history.clone()
    }

    /// Pods alive at `t`.
    pub fn pods_at(&self, t: DateTime<Utc>) -> Vec<PodLife> {
        self.pods()
            .into_iter()
            .filter(|p| p.created <= t && p.deleted.is_none_or(|d| t < d))
            .collect()
    }

    /// Pods alive and Ready at `t`: the endpoints a Service routes to (a replacement pod is
    /// not until its containers started).
    pub fn serving_at(&self, t: DateTime<Utc>) -> Vec<PodLife> {
        self.pods_at(t)
            .into_iter()
            .filter(|p| p.ready.is_some_and(|r| r <= t))
            .collect()
    }

    /// Every fault window, paired from the controllers' Apply/Recover records in order.
    pub fn faults(&self) -> Vec<FaultLife> {
        let timeline = self
            .shared
            .chaos_timeline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        pair(&timeline)
    }

    /// The effects of every fault active on `pod` (in `namespace`) at `t`.
    pub fn effects(&self, namespace: &str, pod: &str, t: DateTime<Utc>) -> Effects {
        let mut e = Effects::default();
        for f in self.faults() {
            if f.pod == pod && f.namespace_matches(namespace) && f.active_at(t) {
                add_effects(&mut e, &f);
            }
        }
        e
    }

    /// The app of a pod (its `app` label).
    pub fn app_of(&self, namespace: &str, pod: &str) -> Option<String> {
        self.pods()
            .into_iter()
            .rev()
            .find(|p| p.namespace == namespace && p.name == pod)
            .and_then(|p| p.labels.get("app").cloned())
    }

    /// The service-level view of `app` at `t`, from its live pods' effects. Endpoint-level
    /// faults (an HTTP abort on one path, a JVM fault on one method, a DNS error for one
    /// callee) count as a partial error share here; the request simulation applies them per
    /// request.
    pub fn health(&self, namespace: &str, app: &str, t: DateTime<Utc>) -> Health {
        let pods: Vec<PodLife> = self
            .pods_at(t)
            .into_iter()
            .filter(|p| {
                p.namespace == namespace && p.labels.get("app").map(String::as_str) == Some(app)
            })
            .collect();
        if pods.is_empty() {
            return Health {
                pods_up: 0,
                error_share: 1.0,
                latency_ms: 0.0,
            };
        }
        let (mut err, mut lat) = (0.0, 0.0);
        for p in &pods {
            let e = self.effects(namespace, &p.name, t);
            let mut share: f64 = e.loss;
            if !e.http_aborts.is_empty() {
                share = share.max(0.5);
            }
            if !e.dns_errors.is_empty() {
                share = share.max(0.4);
            }
            if !e.jvm.is_empty() {
                share = share.max(0.3);
            }
            err += share;
            // A saturated CPU slows every request; a delay adds to it.
            lat += BASE_LATENCY_MS * (1.0 + e.cpu_cores) + e.latency_ms;
        }
        let n = pods.len() as f64;
        Health {
            pods_up: pods.len(),
            error_share: (err / n).min(1.0),
            latency_ms: lat / n,
        }
    }

    /// Records that simulated traffic ran `class#method` in `pod` (its agent's next dump).
    pub fn record_call(&self, pod: &str, class: &str, method: &str) {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(pod.to_string())
            .or_default()
            .insert(format!("{class}#{method}"));
    }

    /// The `class#method`s run in `pod` since its last reset; `reset` clears them (a JaCoCo
    /// dump with reset).
    pub fn calls(&self, pod: &str, reset: bool) -> BTreeSet<String> {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        if reset {
            calls.remove(pod).unwrap_or_default()
        } else {
            calls.get(pod).cloned().unwrap_or_default()
        }
    }

    /// A deterministic value in `[0, 1)` for `key` at second `t`: the simulation's only
    /// source of randomness (same seed, key and second → same value).
    pub fn noise(&self, key: &str, t: i64) -> f64 {
        self.noise_of(self.noise_key(key), t)
    }

    /// `key` hashed once, for a signal that reads [`World::noise`] of one key at many
    /// instants: `noise_of(noise_key(k), t) == noise(k, t)`.
    pub fn noise_key(&self, key: &str) -> NoiseKey {
        let mut h = self.seed ^ 0x9e37_79b9_7f4a_7c15;
        for b in key.bytes() {
            h = splitmix(h ^ u64::from(b));
        }
        NoiseKey(h)
    }

    /// [`World::noise`] of a hashed key.
    pub fn noise_of(&self, key: NoiseKey, t: i64) -> f64 {
        let h = splitmix(key.0 ^ (t as u64));
        (h >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A noise key hashed with the seed ([`World::noise_key`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NoiseKey(u64);

/// A healthy request's mean latency in the simulation.
pub const BASE_LATENCY_MS: f64 = 20.0;

impl FaultLife {
    fn namespace_matches(&self, ns: &str) -> bool {
        // ChaosBlade objects are cluster-scoped: the namespace is the target's, in its record.
        self.namespace.is_empty() || self.namespace == ns
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The pod of a record id: Chaos Mesh `ns/pod[/container]`, ChaosBlade `ns/node/pod/container`.
fn record_pod(kind: &str, target: &str) -> (String, String) {
    let parts: Vec<&str> = target.split('/').collect();
    let ns = parts.first().copied().unwrap_or("").to_string();
    let pod = if kind == "ChaosBlade" {
        parts.get(2)
    } else {
        parts.get(1)
    };
    (ns, pod.copied().unwrap_or("").to_string())
}

fn pair(timeline: &[ChaosTimestamp]) -> Vec<FaultLife> {
    let mut out: Vec<FaultLife> = Vec::new();
    for t in timeline {
        let (ns, pod) = record_pod(&t.kind, &t.target);
        let namespace = if t.namespace.is_empty() {
            ns
        } else {
            t.namespace.clone()
        };
        let open = out.iter_mut().rev().find(|f| {
            f.kind == t.kind
                && f.name == t.name
                && f.namespace == namespace
                && f.pod == pod
                && f.recovered.is_none()
        });
        match (t.operation.as_str(), open) {
            ("Apply", None) => out.push(FaultLife {
                kind: t.kind.clone(),
                namespace,
                name: t.name.clone(),
                pod,
                spec: t.spec.clone(),
                applied: t.at,
                recovered: None,
            }),
            ("Recover", Some(f)) => f.recovered = Some(t.at),
            // A second Apply of an active record (a re-injection) or a Recover without an
            // Apply changes nothing.
            _ => {}
        }
    }
    out
}

/// `8s`, `500ms`, `1m` → milliseconds (Chaos Mesh durations).
fn duration_ms(s: &str) -> f64 {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((s, "ms"), |i| s.split_at(i));
    let n: f64 = num.trim().parse().unwrap_or(0.0);
    n * match unit {
        "us" | "µs" => 0.001,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => 1.0,
    }
}

/// `256MB`, `1GiB`, `512k` → bytes; `85%` → (0, 0.85).
fn size(s: &str) -> (f64, f64) {
    let s = s.trim();
    if let Some(p) = s.strip_suffix('%') {
        return (0.0, p.trim().parse::<f64>().unwrap_or(0.0) / 100.0);
    }
    let i = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (num, unit) = s.split_at(i);
    let n: f64 = num.trim().parse().unwrap_or(0.0);
    let mult = match unit
        .to_ascii_lowercase()
        .trim_end_matches('b')
        .trim_end_matches('i')
    {
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        _ => 1.0,
    };
    (n * mult, 0.0)
}

fn num(v: &Value) -> f64 {
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        .unwrap_or(0.0)
}

fn add_effects(e: &mut Effects, f: &FaultLife) {
    let spec = &f.spec;
    match f.kind.as_str() {
        "StressChaos" => {
            let cpu = &spec["stressors"]["cpu"];
            if !cpu.is_null() {
                e.cpu_cores += num(&cpu["workers"]).max(1.0) * num(&cpu["load"]) / 100.0;
            }
            let mem = &spec["stressors"]["memory"];
            if let Some(s) = mem["size"].as_str() {
                let (bytes, share) = size(s);
                e.memory_bytes += bytes;
                e.memory_share += share;
            }
            let ng = spec["stressngStressors"].as_str().unwrap_or("");
            for (i, w) in ng.split_whitespace().enumerate() {
                if matches!(w, "--iomix" | "--hdd" | "--io") {
                    let workers = ng
                        .split_whitespace()
                        .nth(i + 1)
                        .and_then(|n| n.parse::<f64>().ok())
                        .unwrap_or(1.0);
                    // One stress-ng I/O worker on a container's overlay disk: ~40 MB/s.
                    e.io_write_bytes_per_s += workers * 40.0 * 1024.0 * 1024.0;
                }
                if matches!(w, "--cpu") {
                    e.cpu_cores += 1.0;
                }
            }
        }
        "NetworkChaos" => {
            match spec["action"].as_str().unwrap_or("") {
                "delay" => {
                    let d = &spec["delay"];
                    e.latency_ms += duration_ms(d["latency"].as_str().unwrap_or("0"))
                        + duration_ms(d["jitter"].as_str().unwrap_or("0")) / 2.0;
                }
                "loss" => e.loss = (e.loss + num(&spec["loss"]["loss"]) / 100.0).min(1.0),
                "partition" => e.loss = 1.0,
                _ => {}
            }
            e.peers.extend(target_apps(&spec["target"]["selector"]));
        }
        "HTTPChaos" => {
            if spec["abort"].as_bool() == Some(true) {
                e.http_aborts.push(HttpAbort {
                    method: spec["method"].as_str().map(str::to_string),
                    path: spec["path"].as_str().unwrap_or("*").to_string(),
                });
            }
            if let Some(d) = spec["delay"].as_str() {
                e.latency_ms += duration_ms(d);
            }
        }
        "DNSChaos" if spec["action"].as_str() == Some("error") => {
            let pats = spec["patterns"].as_array().cloned().unwrap_or_default();
            if pats.is_empty() {
                e.dns_errors.push("*".into());
            }
            e.dns_errors
                .extend(pats.iter().filter_map(Value::as_str).map(str::to_string));
        }
        "ChaosBlade" => {
            for exp in spec["experiments"].as_array().into_iter().flatten() {
                if exp["target"].as_str() != Some("jvm") {
                    continue;
                }
                let mut jf = JvmFault {
                    action: exp["action"].as_str().unwrap_or("").to_string(),
                    class: String::new(),
                    method: String::new(),
                    flags: Vec::new(),
                };
                for m in exp["matchers"].as_array().into_iter().flatten() {
                    let name = m["name"].as_str().unwrap_or("");
                    let value = m["value"]
                        .as_array()
                        .and_then(|v| v.first())
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    match name {
                        "classname" => jf.class = value,
                        "methodname" => jf.method = value,
                        _ => jf.flags.push((name.to_string(), value)),
                    }
                }
                e.jvm.push(jf);
            }
        }
        _ => {}
    }
}

/// The `app` values a NetworkChaos `target.selector` names (labelSelectors and `app In`
/// expressions; enough for the campaign's plans).
fn target_apps(sel: &Value) -> Vec<String> {
    let mut out: Vec<String> = sel["labelSelectors"]["app"]
        .as_str()
        .map(|s| vec![s.to_string()])
        .unwrap_or_default();
    for x in sel["expressionSelectors"].as_array().into_iter().flatten() {
        if x["key"] == "app" && x["operator"] == "In" {
            out.extend(
                x["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_string),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(kind: &str, target: &str, op: &str, at: i64, spec: Value) -> ChaosTimestamp {
        ChaosTimestamp {
            kind: kind.into(),
            namespace: if kind == "ChaosBlade" {
                String::new()
            } else {
                "default".into()
            },
            name: "x".into(),
            target: target.into(),
            operation: op.into(),
            at: DateTime::from_timestamp(at, 0).unwrap(),
            spec,
        }
    }

    #[test]
    fn records_pair_into_windows_per_pod() {
        let spec = json!({"stressors": {"cpu": {"workers": 2, "load": 80}}});
        let f = pair(&[
            ts("StressChaos", "default/a", "Apply", 10, spec.clone()),
            ts("StressChaos", "default/b", "Apply", 11, spec.clone()),
            ts("StressChaos", "default/a", "Recover", 20, spec.clone()),
            ts("StressChaos", "default/a", "Recover", 21, spec.clone()),
        ]);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].pod, "a");
        assert_eq!(f[0].recovered.map(|t| t.timestamp()), Some(20));
        assert!(f[1].recovered.is_none());
        let mut e = Effects::default();
        add_effects(&mut e, &f[0]);
        assert!((e.cpu_cores - 1.6).abs() < 1e-9);
    }

    #[test]
    fn blade_records_name_the_pod_third() {
        let spec = json!({"experiments": [{"target": "jvm", "action": "throwCustomException",
            "matchers": [{"name": "classname", "value": ["order.service.OrderServiceImpl"]},
                         {"name": "methodname", "value": ["create"]},
                         {"name": "exception", "value": ["java.lang.RuntimeException"]}]}]});
        let f = pair(&[ts(
            "ChaosBlade",
            "default/node-1/ts-order-1/c",
            "Apply",
            5,
            spec,
        )]);
        assert_eq!(
            (f[0].namespace.as_str(), f[0].pod.as_str()),
            ("default", "ts-order-1")
        );
        let mut e = Effects::default();
        add_effects(&mut e, &f[0]);
        assert_eq!(e.jvm[0].method, "create");
        assert_eq!(e.jvm[0].flags[0].0, "exception");
    }

    #[test]
    fn network_and_sizes_parse_as_chaos_mesh_writes_them() {
        assert_eq!(duration_ms("8s"), 8000.0);
        assert_eq!(duration_ms("500ms"), 500.0);
        assert_eq!(size("85%"), (0.0, 0.85));
        assert_eq!(size("256MB"), (256.0 * 1024.0 * 1024.0, 0.0));
        let f = FaultLife {
            kind: "NetworkChaos".into(),
            namespace: "default".into(),
            name: "n".into(),
            pod: "p".into(),
            spec: json!({"action": "delay", "delay": {"latency": "8s", "jitter": "2s"},
                "target": {"selector": {"expressionSelectors": [
                    {"key": "app", "operator": "In", "values": ["ts-order-service"]}]}}}),
            applied: DateTime::from_timestamp(0, 0).unwrap(),
            recovered: None,
        };
        let mut e = Effects::default();
        add_effects(&mut e, &f);
        assert_eq!(e.latency_ms, 9000.0);
        assert_eq!(e.peers, vec!["ts-order-service".to_string()]);
    }
}
