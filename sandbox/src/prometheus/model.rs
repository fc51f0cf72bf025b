//! The simulated cluster's series, as node-exporter, cAdvisor (the kubelet's
//! `/metrics/cadvisor`), kube-state-metrics, the kubelet, the exporters' own `process_*`
//! metrics and the Train-Ticket services' `http_requests_total` write them, scraped by a
//! kube-prometheus style Prometheus at a fixed interval (each target at its own offset).
//!
//! Every value is a pure function of the [`World`] (pod lives, fault windows and their
//! [`Effects`], service [`Health`]), the time and the seed:
//!
//! - a counter is the closed-form integral of its rate since the series began, so it is
//!   monotonic, and a replaced pod is a new series starting at 0 (a killed pod's series stops:
//!   the next scrape writes a staleness marker);
//! - a rate is `base + amplitude × W'(t)`, `W` a piecewise-linear walk through
//!   [`World::noise`] knots every 15 s, plus what the active faults add: integrals are sums
//!   over the fault segments, never over samples;
//! - a container's CPU is capped at its limit (`500m` for Train-Ticket's services, as in its
//!   deploy.yaml), as the CFS quota does: a stressed service sits at its limit and its
//!   `container_cpu_cfs_throttled_*` counters climb.
//!
//! History: the fake cluster's pods are created when the sandbox starts, but a plan's windows
//! reach back before that (collect-metrics' default window starts a minute before the run). The
//! pods that exist when the sandbox starts, and the nodes, are given a past: their series begin
//! [`HISTORY_MS`] (1 h) before the sandbox started, as if the deployment had been running for
//! an hour. Pods created later (a pod-kill's replacements, a rollout) begin when created.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use super::eval::{Labels, Source};
use crate::kube_fake::PodLife;
use crate::world::{Effects, NoiseKey, World};

/// The default scrape interval (kube-prometheus' ServiceMonitors use 15–30 s).
pub const SCRAPE_MS: i64 = 15_000;
/// How far back the series of the sandbox's initial pods and its nodes reach.
pub const HISTORY_MS: i64 = 3_600_000;
/// The walk's knot spacing, in seconds.
const KNOT_S: f64 = 15.0;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const MIB: f64 = 1024.0 * 1024.0;
const NODE_CPUS: usize = 4;
const NODE_MEMORY: f64 = 16.0 * GIB;
const MODES: [(&str, f64); 7] = [
    ("user", 0.68),
    ("system", 0.22),
    ("softirq", 0.04),
    ("iowait", 0.02),
    ("steal", 0.02),
    ("irq", 0.01),
    ("nice", 0.01),
];

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Faults' effects on one pod, constant within each segment `[from, to)`.
#[derive(Clone, Debug)]
struct Segment {
    from: i64,
    to: i64,
    effects: Effects,
}

#[derive(Clone, Debug)]
struct Container {
    name: String,
    /// Mean CPU in cores when unstressed.
    cpu: f64,
    /// `resources.limits.cpu` in cores (0: none).
    cpu_limit: f64,
    /// Mean working set in bytes.
    memory: f64,
    /// `resources.limits.memory` (0: none).
    memory_limit: f64,
    /// Mean disk writes in bytes/s.
    writes: f64,
    image: String,
    id: String,
    /// Walk keys of its CPU, memory and disk writes.
    cpu_key: NoiseKey,
    mem_key: NoiseKey,
    fs_key: NoiseKey,
}

#[derive(Clone, Debug)]
struct Pod {
    namespace: String,
    name: String,
    app: String,
    uid: String,
    ip: String,
    node: usize,
    /// When its series begin (backdated for the sandbox's initial pods).
    start: i64,
    ready: Option<i64>,
    end: Option<i64>,
    restarts: u32,
    containers: Vec<Container>,
    segments: Vec<Segment>,
    /// The app's error share (from [`World::health`]) by segment `(from, share)`.
    errors: Vec<(i64, f64)>,
    /// Requests per second the pod serves (Train-Ticket services only).
    requests: f64,
    req_key: NoiseKey,
}

#[derive(Clone, Debug)]
struct Node {
    name: String,
    ip: String,
    boot: i64,
}

/// What one series' samples are computed from.
#[derive(Clone, Copy, Debug)]
enum Signal {
    Const(f64),
    /// A pod's container (`None`: the pod's cgroup, all containers; `Some(usize::MAX)`: the
    /// pause container).
    Cpu(usize, Slot),
    Throttled(usize, Slot, bool),
    CfsPeriods(usize, Slot),
    WorkingSet(usize, Slot),
    Usage(usize, Slot),
    MemLimit(usize, Slot),
    FailCount(usize, Slot),
    Processes(usize, Slot),
    FsWrites(usize, Slot),
    NetBytes(usize, bool),
    Requests(usize, bool),
    Ready(usize, bool),
    Up(usize),
    Phase(usize, bool),
    NodeCpu(usize, usize),
    NodeLoad(usize, i64),
    NodeMem(usize, u8),
    NodeFsAvail(usize, f64),
    NodeDisk(usize, u8),
    NodeNet(usize, bool),
    NodeNetRare(usize, f64),
    ProcCpu(f64),
    ProcGauge(f64, f64),
    Volumes(usize),
}

#[derive(Clone, Copy, Debug)]
enum Slot {
    Pod,
    Pause,
    Container(usize),
}

struct Series {
    labels: Labels,
    /// First and last instant a sample can have (the last: exclusive; `i64::MAX`: alive).
    start: i64,
    end: i64,
    /// The target's scrape offset within the scrape interval.
    phase: i64,
    signal: Signal,
    /// The walk's key (the series' identity).
    key: Option<NoiseKey>,
}

/// A snapshot of every series, built from the world's history at one moment; sampled up to
/// `now` (the request's time).
pub struct Model {
    world: World,
    pods: Vec<Pod>,
    nodes: Vec<Node>,
    series: Vec<Series>,
    /// The history start (see the module docs).
    origin: i64,
    /// Every target's scrape interval.
    scrape: i64,
    /// Per backend app (not the gateway): its requests per second and its error share by
    /// segment, which the gateway answers too (it proxies every API call).
    backends: Vec<(f64, Vec<(i64, f64)>)>,
    /// Node sums over `[a, b)` (busy CPU seconds, bytes written), shared by the node's many
    /// per-CPU and per-mode series.
    memo: Mutex<HashMap<(u8, usize, i64, i64), f64>>,
}

/// A [`Model`] sampled up to `now` (the request's time): what queries read.
pub struct View<'a> {
    pub model: &'a Model,
    pub now: i64,
}

/// What changes the series' history: pods created, deleted and ready, faults applied and
/// recovered.
pub type Fingerprint = (usize, usize, usize, usize, usize);

/// The history's [`Fingerprint`]: a model is rebuilt when it differs.
pub fn fingerprint(world: &World) -> Fingerprint {
    let pods = world.pods();
    let faults = world.faults();
    (
        pods.len(),
        pods.iter().filter(|p| p.deleted.is_some()).count(),
        pods.iter().filter(|p| p.ready.is_some()).count(),
        faults.len(),
        faults.iter().filter(|f| f.recovered.is_some()).count(),
    )
}

impl Model {
    /// The series of `world` as of now. `started` is when the sandbox started: pods that
    /// existed then have a past (module docs).
    pub fn build(world: &World, started: DateTime<Utc>, scrape_ms: i64) -> Model {
        let origin = ms(started) - HISTORY_MS;
        let lives = world.pods();
        let faults = world.faults();
        let mut node_names: BTreeSet<String> = (1..=3).map(|i| format!("fake-node-{i}")).collect();
        node_names.extend(
            lives
                .iter()
                .map(|p| p.node.clone())
                .filter(|n| !n.is_empty()),
        );
        let nodes: Vec<Node> = node_names
            .into_iter()
            .enumerate()
            .map(|(i, name)| Node {
                ip: format!("172.18.0.{}", i + 2),
                boot: origin - 3 * 86_400_000 - i as i64 * 3_600_000,
                name,
            })
            .collect();
        let mut pods = Vec::with_capacity(lives.len());
        for life in &lives {
            pods.push(pod(world, life, &faults, &nodes, ms(started), origin));
        }
        let mut m = Model {
            world: world.clone(),
            pods,
            nodes,
            series: Vec::new(),
            origin,
            scrape: scrape_ms.max(1),
            backends: Vec::new(),
            memo: Mutex::default(),
        };
        m.health();
        m.catalogue();
        m
    }

    /// The series as sampled up to `now`.
    pub fn at(&self, now: DateTime<Utc>) -> View<'_> {
        View {
            model: self,
            now: ms(now),
        }
    }

    fn memoized(&self, key: (u8, usize, i64, i64), f: impl FnOnce() -> f64) -> f64 {
        if let Some(v) = self
            .memo
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return *v;
        }
        let v = f();
        let mut memo = self.memo.lock().unwrap_or_else(|e| e.into_inner());
        if memo.len() > 200_000 {
            memo.clear();
        }
        memo.insert(key, v);
        v
    }

    /// Per app, the error share of each segment between the app's pod and fault events, from
    /// [`World::health`] at the segment's middle.
    fn health(&mut self) {
        let mut apps: BTreeMap<(String, String), BTreeSet<i64>> = BTreeMap::new();
        for p in &self.pods {
            if p.requests == 0.0 {
                continue;
            }
            let cuts = apps
                .entry((p.namespace.clone(), p.app.clone()))
                .or_default();
            cuts.insert(p.start);
            cuts.extend(p.ready);
            cuts.extend(p.end);
            for s in &p.segments {
                cuts.insert(s.from);
                if s.to != i64::MAX {
                    cuts.insert(s.to);
                }
            }
        }
        let mut per_app: BTreeMap<(String, String), Vec<(i64, f64)>> = BTreeMap::new();
        for ((ns, app), cuts) in apps {
            let cuts: Vec<i64> = cuts.into_iter().collect();
            let mut out = Vec::with_capacity(cuts.len());
            for (i, &from) in cuts.iter().enumerate() {
                let mid = match cuts.get(i + 1) {
                    Some(&to) => from + (to - from) / 2,
                    None => from + 1,
                };
                let at = DateTime::from_timestamp_millis(mid).unwrap_or_default();
                // Backdated time before the cluster existed: the pods as first seen.
                let at = at.max(
                    DateTime::from_timestamp_millis(self.origin + HISTORY_MS).unwrap_or_default(),
                );
                let h = self.world.health(&ns, &app, at);
                out.push((from, h.error_share));
            }
            per_app.insert((ns, app), out);
        }
        for p in &mut self.pods {
            if let Some(e) = per_app.get(&(p.namespace.clone(), p.app.clone())) {
                p.errors = e.clone();
            }
        }
        // The gateway forwards each app's share of the API traffic: an app's failures are
        // the gateway's 5xx too, and so is an app with no pod up (503).
        let mut rates: BTreeMap<(String, String), f64> = BTreeMap::new();
        for p in &self.pods {
            if p.requests > 0.0 && !is_entry(&p.app) {
                let r = rates
                    .entry((p.namespace.clone(), p.app.clone()))
                    .or_insert(0.0);
                *r = r.max(p.requests);
            }
        }
        self.backends = rates
            .into_iter()
            .map(|(k, r)| (r, per_app.remove(&k).unwrap_or_default()))
            .collect();
        let total: f64 = self.backends.iter().map(|b| b.0).sum();
        for p in &mut self.pods {
            if p.app == GATEWAY {
                p.requests = total;
            }
        }
    }

    fn catalogue(&mut self) {
        let mut out: Vec<Series> = Vec::new();
        let origin = self.origin;
        // --- node-exporter, the kubelet and their process metrics -------------------------
        for (n, node) in self.nodes.iter().enumerate() {
            let ne = target(&[
                ("container", "node-exporter"),
                ("endpoint", "https"),
                ("instance", &format!("{}:9100", node.ip)),
                ("job", "node-exporter"),
                ("namespace", "monitoring"),
                ("pod", &format!("node-exporter-{}", short_hash(&node.name))),
                ("service", "node-exporter"),
            ]);
            let phase = self.phase(&node.name);
            let mut add = |name: &str, extra: &[(&str, &str)], signal: Signal, start: i64| {
                out.push(series(&ne, name, extra, signal, start, i64::MAX, phase));
            };
            for cpu in 0..NODE_CPUS {
                let c = cpu.to_string();
                for (mi, (mode, _)) in MODES.iter().enumerate() {
                    add(
                        "node_cpu_seconds_total",
                        &[("cpu", &c), ("mode", mode)],
                        Signal::NodeCpu(n, mi + 1),
                        origin,
                    );
                }
                add(
                    "node_cpu_seconds_total",
                    &[("cpu", &c), ("mode", "idle")],
                    Signal::NodeCpu(n, 0),
                    origin,
                );
            }
            for (name, window) in [
                ("node_load1", 60),
                ("node_load5", 300),
                ("node_load15", 900),
            ] {
                add(name, &[], Signal::NodeLoad(n, window * 1000), origin);
            }
            for (i, name) in [
                "node_memory_MemTotal_bytes",
                "node_memory_MemAvailable_bytes",
                "node_memory_MemFree_bytes",
                "node_memory_Cached_bytes",
            ]
            .iter()
            .enumerate()
            {
                add(name, &[], Signal::NodeMem(n, i as u8), origin);
            }
            for (mount, device, fstype, size) in [
                ("/", "/dev/sda1", "ext4", 100.0 * GIB),
                ("/boot/efi", "/dev/sda15", "vfat", 0.1 * GIB),
            ] {
                let l = [
                    ("device", device),
                    ("fstype", fstype),
                    ("mountpoint", mount),
                ];
                add(
                    "node_filesystem_size_bytes",
                    &l,
                    Signal::Const(size),
                    origin,
                );
                add(
                    "node_filesystem_avail_bytes",
                    &l,
                    Signal::NodeFsAvail(n, size),
                    origin,
                );
            }
            for (i, name) in [
                "node_disk_read_bytes_total",
                "node_disk_written_bytes_total",
                "node_disk_io_time_seconds_total",
            ]
            .iter()
            .enumerate()
            {
                add(
                    name,
                    &[("device", "sda")],
                    Signal::NodeDisk(n, i as u8),
                    origin,
                );
            }
            for (rx, dir) in [(true, "receive"), (false, "transmit")] {
                let d = [("device", "eth0")];
                add(
                    &format!("node_network_{dir}_bytes_total"),
                    &d,
                    Signal::NodeNet(n, rx),
                    origin,
                );
                add(
                    &format!("node_network_{dir}_drop_total"),
                    &d,
                    Signal::NodeNetRare(n, 0.002),
                    origin,
                );
                add(
                    &format!("node_network_{dir}_errs_total"),
                    &d,
                    Signal::Const(0.0),
                    origin,
                );
            }
            add("up", &[], Signal::Const(1.0), origin);
            process_series(&mut out, &ne, phase, origin, 0.02, 20.0 * MIB, n);
            // The kubelet's own endpoint (`/metrics`).
            let kubelet = target(&[
                ("endpoint", "https-metrics"),
                ("instance", &format!("{}:10250", node.ip)),
                ("job", "kubelet"),
                ("metrics_path", "/metrics"),
                ("namespace", "kube-system"),
                ("node", &node.name),
                ("service", "kubelet"),
            ]);
            let phase = self.phase(&format!("kubelet/{}", node.name));
            for state in ["actual_state_of_world", "desired_state_of_world"] {
                for plugin in ["kubernetes.io/configmap", "kubernetes.io/projected"] {
                    out.push(series(
                        &kubelet,
                        "volume_manager_total_volumes",
                        &[("plugin_name", plugin), ("state", state)],
                        Signal::Volumes(n),
                        origin,
                        i64::MAX,
                        phase,
                    ));
                }
            }
            out.push(series(
                &kubelet,
                "up",
                &[],
                Signal::Const(1.0),
                origin,
                i64::MAX,
                phase,
            ));
            process_series(&mut out, &kubelet, phase, origin, 0.15, 110.0 * MIB, n + 10);
            let mut cadvisor = kubelet.clone();
            cadvisor.insert("metrics_path".into(), "/metrics/cadvisor".into());
            out.push(series(
                &cadvisor,
                "up",
                &[],
                Signal::Const(1.0),
                origin,
                i64::MAX,
                self.phase(&format!("cadvisor/{}", node.name)),
            ));
        }
        // --- kube-state-metrics and Prometheus itself ---------------------------------------
        let ksm = target(&[
            ("container", "kube-state-metrics"),
            ("endpoint", "http-metrics"),
            ("instance", "10.244.0.12:8080"),
            ("job", "kube-state-metrics"),
            ("service", "kube-state-metrics"),
        ]);
        let ksm_phase = self.phase("kube-state-metrics");
        out.push(series(
            &ksm,
            "up",
            &[("namespace", "monitoring")],
            Signal::Const(1.0),
            origin,
            i64::MAX,
            ksm_phase,
        ));
        let prom = target(&[
            ("container", "prometheus"),
            ("endpoint", "web"),
            ("instance", "10.244.0.7:9090"),
            ("job", "prometheus-k8s"),
            ("namespace", "monitoring"),
            ("pod", "prometheus-k8s-0"),
            ("service", "prometheus-k8s"),
        ]);
        let prom_phase = self.phase("prometheus");
        out.push(series(
            &prom,
            "up",
            &[],
            Signal::Const(1.0),
            origin,
            i64::MAX,
            prom_phase,
        ));
        process_series(&mut out, &prom, prom_phase, origin, 0.3, 900.0 * MIB, 100);
        // --- per pod ----------------------------------------------------------------------
        for (p, pod) in self.pods.iter().enumerate() {
            let node = &self.nodes[pod.node];
            let end = pod.end.unwrap_or(i64::MAX);
            let kubelet_phase = self.phase(&format!("cadvisor/{}", node.name));
            let base = target(&[
                ("endpoint", "https-metrics"),
                ("instance", &format!("{}:10250", node.ip)),
                ("job", "kubelet"),
                ("metrics_path", "/metrics/cadvisor"),
                ("namespace", &pod.namespace),
                ("node", &node.name),
                ("pod", &pod.name),
                ("service", "kubelet"),
            ]);
            let pod_cgroup = format!("/kubepods/burstable/pod{}", pod.uid);
            let mut slots: Vec<(Slot, Labels)> = Vec::new();
            let mut l = base.clone();
            l.insert("id".into(), pod_cgroup.clone());
            slots.push((Slot::Pod, l));
            let mut l = base.clone();
            l.insert("container".into(), "POD".into());
            l.insert(
                "id".into(),
                format!("{pod_cgroup}/{}", short_hash(&pod.name)),
            );
            l.insert("image".into(), "registry.k8s.io/pause:3.9".into());
            l.insert("name".into(), short_hash(&pod.name));
            slots.push((Slot::Pause, l));
            for (c, cont) in pod.containers.iter().enumerate() {
                let mut l = base.clone();
                l.insert("container".into(), cont.name.clone());
                l.insert("id".into(), format!("{pod_cgroup}/{}", cont.id));
                l.insert("image".into(), cont.image.clone());
                l.insert("name".into(), cont.id.clone());
                slots.push((Slot::Container(c), l));
            }
            for (slot, l) in &slots {
                let mut add = |name: &str, extra: &[(&str, &str)], signal: Signal| {
                    out.push(series(
                        l,
                        name,
                        extra,
                        signal,
                        pod.start,
                        end,
                        kubelet_phase,
                    ));
                };
                add(
                    "container_cpu_usage_seconds_total",
                    &[("cpu", "total")],
                    Signal::Cpu(p, *slot),
                );
                add(
                    "container_memory_working_set_bytes",
                    &[],
                    Signal::WorkingSet(p, *slot),
                );
                add("container_memory_usage_bytes", &[], Signal::Usage(p, *slot));
                add(
                    "container_spec_memory_limit_bytes",
                    &[],
                    Signal::MemLimit(p, *slot),
                );
                add("container_memory_failcnt", &[], Signal::FailCount(p, *slot));
                add("container_processes", &[], Signal::Processes(p, *slot));
                let limited = match slot {
                    Slot::Container(c) => pod.containers[*c].cpu_limit > 0.0,
                    Slot::Pod => pod.containers.iter().any(|c| c.cpu_limit > 0.0),
                    Slot::Pause => false,
                };
                if limited {
                    add(
                        "container_cpu_cfs_periods_total",
                        &[],
                        Signal::CfsPeriods(p, *slot),
                    );
                    add(
                        "container_cpu_cfs_throttled_periods_total",
                        &[],
                        Signal::Throttled(p, *slot, false),
                    );
                    add(
                        "container_cpu_cfs_throttled_seconds_total",
                        &[],
                        Signal::Throttled(p, *slot, true),
                    );
                }
                if let Slot::Container(_) = slot {
                    add(
                        "container_fs_writes_bytes_total",
                        &[("device", "/dev/sda")],
                        Signal::FsWrites(p, *slot),
                    );
                }
                if let Slot::Pause = slot {
                    // cAdvisor reports the pod's network on its sandbox (pause) container.
                    for (rx, dir) in [(true, "receive"), (false, "transmit")] {
                        let i = [("interface", "eth0")];
                        add(
                            &format!("container_network_{dir}_bytes_total"),
                            &i,
                            Signal::NetBytes(p, rx),
                        );
                        add(
                            &format!("container_network_{dir}_packets_dropped_total"),
                            &i,
                            Signal::Const(0.0),
                        );
                        add(
                            &format!("container_network_{dir}_errors_total"),
                            &i,
                            Signal::Const(0.0),
                        );
                    }
                }
            }
            // kube-state-metrics: the object's own namespace/pod/container (honorLabels).
            let mut k = ksm.clone();
            k.insert("namespace".into(), pod.namespace.clone());
            k.insert("pod".into(), pod.name.clone());
            k.insert("uid".into(), pod.uid.clone());
            let mut add = |name: &str, extra: &[(&str, &str)], signal: Signal| {
                out.push(series(&k, name, extra, signal, pod.start, end, ksm_phase));
            };
            add(
                "kube_pod_status_ready",
                &[("condition", "true")],
                Signal::Ready(p, true),
            );
            add(
                "kube_pod_status_ready",
                &[("condition", "false")],
                Signal::Ready(p, false),
            );
            add(
                "kube_pod_status_ready",
                &[("condition", "unknown")],
                Signal::Const(0.0),
            );
            add(
                "kube_pod_status_phase",
                &[("phase", "Running")],
                Signal::Phase(p, true),
            );
            add(
                "kube_pod_status_phase",
                &[("phase", "Pending")],
                Signal::Phase(p, false),
            );
            for phase in ["Succeeded", "Failed", "Unknown"] {
                add(
                    "kube_pod_status_phase",
                    &[("phase", phase)],
                    Signal::Const(0.0),
                );
            }
            add(
                "kube_pod_info",
                &[
                    ("host_ip", &node.ip),
                    ("node", &node.name),
                    ("pod_ip", &pod.ip),
                ],
                Signal::Const(1.0),
            );
            for cont in &pod.containers {
                let c = [("container", cont.name.as_str())];
                add(
                    "kube_pod_container_status_restarts_total",
                    &c,
                    Signal::Const(f64::from(pod.restarts)),
                );
                add(
                    "kube_pod_container_status_ready",
                    &c,
                    Signal::Ready(p, true),
                );
                add(
                    "kube_pod_container_status_running",
                    &c,
                    Signal::Phase(p, true),
                );
            }
            // The service's own endpoint: scraped once its container listens (Ready).
            if let (true, Some(first)) = (pod.requests > 0.0, pod.containers.first()) {
                let app_target = target(&[
                    ("container", &first.name),
                    ("endpoint", "http"),
                    ("instance", &format!("{}:8080", pod.ip)),
                    ("job", &pod.app),
                    ("namespace", &pod.namespace),
                    ("pod", &pod.name),
                    ("service", &pod.app),
                ]);
                let phase = self.phase(&pod.name);
                out.push(series(
                    &app_target,
                    "up",
                    &[],
                    Signal::Up(p),
                    pod.start,
                    end,
                    phase,
                ));
                if let Some(ready) = pod.ready {
                    for (code, errors) in [("200", false), ("500", true)] {
                        out.push(series(
                            &app_target,
                            "http_requests_total",
                            &[("code", code), ("method", "GET")],
                            Signal::Requests(p, errors),
                            ready,
                            end,
                            phase,
                        ));
                    }
                }
            }
        }
        for s in &mut out {
            let id: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.key = Some(self.world.noise_key(&id.join(",")));
        }
        self.series = out;
    }

    fn phase(&self, target: &str) -> i64 {
        (self.world.noise(&format!("scrape/{target}"), 0) * self.scrape as f64) as i64
    }

    /// The walk `W(t)` of `key` in seconds (|W'| ≤ 0.5).
    fn walk(&self, key: NoiseKey, t: i64) -> f64 {
        let x = t as f64 / 1000.0 / KNOT_S;
        let k = x.floor();
        let f = x - k;
        let a = self.world.noise_of(key, k as i64) - 0.5;
        let b = self.world.noise_of(key, k as i64 + 1) - 0.5;
        (a + (b - a) * f) * KNOT_S * 0.5
    }

    /// `∫ₐᵇ base·(1 + amp·W'(t)) dt`, seconds.
    fn flow(&self, key: NoiseKey, base: f64, amp: f64, a: i64, b: i64) -> f64 {
        if b <= a {
            return 0.0;
        }
        base * ((b - a) as f64 / 1000.0 + amp * (self.walk(key, b) - self.walk(key, a)))
    }

    /// The walk's level at `t`, in `[-0.5, 0.5]`.
    fn wiggle(&self, key: NoiseKey, t: i64) -> f64 {
        self.walk(key, t) / (KNOT_S * 0.5)
    }

    /// `f(effects, from, to)` summed over the pod's fault segments within `[a, b)`, pieces
    /// without a fault given default effects.
    fn over_segments(
        &self,
        p: usize,
        a: i64,
        b: i64,
        mut f: impl FnMut(&Effects, i64, i64) -> f64,
    ) -> f64 {
        let pod = &self.pods[p];
        let (a, b) = (a.max(pod.start), b.min(pod.end.unwrap_or(i64::MAX)));
        if b <= a {
            return 0.0;
        }
        let none = Effects::default();
        let mut total = 0.0;
        let mut cur = a;
        for s in &pod.segments {
            if s.to <= cur || s.from >= b {
                continue;
            }
            if s.from > cur {
                total += f(&none, cur, s.from);
                cur = s.from;
            }
            let to = s.to.min(b);
            total += f(&s.effects, cur, to);
            cur = to;
        }
        if cur < b {
            total += f(&none, cur, b);
        }
        total
    }

    fn effects_at(&self, p: usize, t: i64) -> Effects {
        self.pods[p]
            .segments
            .iter()
            .find(|s| s.from <= t && t < s.to)
            .map(|s| s.effects.clone())
            .unwrap_or_default()
    }

    fn containers(&self, p: usize, slot: Slot) -> Vec<usize> {
        match slot {
            Slot::Container(c) => vec![c],
            Slot::Pod => (0..self.pods[p].containers.len()).collect(),
            Slot::Pause => Vec::new(),
        }
    }

    /// CPU seconds of a container over `[a, b)`: its walk, plus the stress, capped at its
    /// limit (a stressor joins the first container's cgroup, as chaos-daemon does).
    fn cpu_seconds(&self, p: usize, c: usize, a: i64, b: i64) -> f64 {
        let cont = &self.pods[p].containers[c];
        let key = cont.cpu_key;
        self.over_segments(p, a, b, |e, x, y| {
            let extra = if c == 0 { e.cpu_cores } else { 0.0 };
            if cont.cpu_limit > 0.0 && cont.cpu + extra >= cont.cpu_limit * 0.95 {
                cont.cpu_limit * 0.97 * (y - x) as f64 / 1000.0
            } else {
                self.flow(key, cont.cpu, 0.6, x, y) + extra * (y - x) as f64 / 1000.0
            }
        })
    }

    fn slot_cpu(&self, p: usize, slot: Slot, a: i64, b: i64) -> f64 {
        let pause = self.over_segments(p, a, b, |_, x, y| 0.0004 * (y - x) as f64 / 1000.0);
        match slot {
            Slot::Pause => pause,
            Slot::Container(c) => self.cpu_seconds(p, c, a, b),
            Slot::Pod => {
                pause
                    + (0..self.pods[p].containers.len())
                        .map(|c| self.cpu_seconds(p, c, a, b))
                        .sum::<f64>()
            }
        }
    }

    /// Throttled periods (or seconds) over `[a, b)`: a saturated quota throttles most periods.
    fn throttled(&self, p: usize, slot: Slot, seconds: bool, a: i64, b: i64) -> f64 {
        self.containers(p, slot)
            .into_iter()
            .map(|c| {
                let cont = &self.pods[p].containers[c];
                self.over_segments(p, a, b, |e, x, y| {
                    let extra = if c == 0 { e.cpu_cores } else { 0.0 };
                    let d = (y - x) as f64 / 1000.0;
                    let demand = cont.cpu + extra;
                    let saturated = cont.cpu_limit > 0.0 && demand >= cont.cpu_limit * 0.95;
                    match (saturated, seconds) {
                        (true, false) => 9.0 * d,
                        (true, true) => (demand - cont.cpu_limit * 0.97).max(0.05) * d,
                        (false, false) => 0.05 * d,
                        (false, true) => 0.002 * d,
                    }
                })
            })
            .sum()
    }

    /// Memory stress in bytes: `size` in bytes, or a share of the limit (of the node's memory
    /// when the container has none).
    fn stress_bytes(cont: &Container, e: &Effects) -> f64 {
        let of = if cont.memory_limit > 0.0 {
            cont.memory_limit
        } else {
            NODE_MEMORY * 0.5
        };
        e.memory_bytes + e.memory_share * of
    }

    fn working_set(&self, p: usize, slot: Slot, t: i64) -> f64 {
        let pod = &self.pods[p];
        let e = self.effects_at(p, t);
        match slot {
            Slot::Pause => 0.6 * MIB,
            _ => {
                let ws: f64 = self
                    .containers(p, slot)
                    .into_iter()
                    .map(|c| {
                        let cont = &pod.containers[c];
                        let mut v = cont.memory * (1.0 + 0.1 * self.wiggle(cont.mem_key, t));
                        if c == 0 {
                            v += Self::stress_bytes(cont, &e);
                        }
                        if cont.memory_limit > 0.0 {
                            v = v.min(cont.memory_limit * 0.98);
                        }
                        v
                    })
                    .sum();
                if matches!(slot, Slot::Pod) {
                    ws + 0.6 * MIB
                } else {
                    ws
                }
            }
        }
    }

    fn capped(&self, p: usize, c: usize, e: &Effects) -> bool {
        let cont = &self.pods[p].containers[c];
        c == 0
            && cont.memory_limit > 0.0
            && cont.memory * 1.05 + Self::stress_bytes(cont, e) >= cont.memory_limit * 0.98
    }

    fn fs_writes(&self, p: usize, c: usize, a: i64, b: i64) -> f64 {
        let cont = &self.pods[p].containers[c];
        self.over_segments(p, a, b, |e, x, y| {
            let extra = if c == 0 { e.io_write_bytes_per_s } else { 0.0 };
            self.flow(cont.fs_key, cont.writes, 0.8, x, y) + extra * (y - x) as f64 / 1000.0
        })
    }

    /// The 5xx the gateway answers over `[a, b)` for its backends' failures.
    fn proxied_errors(&self, a: i64, b: i64) -> f64 {
        self.memoized((2, 0, a, b), || {
            let mut total = 0.0;
            for (rate, segments) in &self.backends {
                for (i, &(from, share)) in segments.iter().enumerate() {
                    let to = segments.get(i + 1).map_or(i64::MAX, |x| x.0);
                    let (x, y) = (a.max(from), b.min(to));
                    if y > x {
                        total += rate * share * (y - x) as f64 / 1000.0;
                    }
                }
            }
            total
        })
    }

    /// Requests served over `[a, b)` (only while Ready); `errors`: the 5xx among them, at the
    /// app's error share plus a 0.2 % background (the gateway's: its backends' too).
    fn requests(&self, p: usize, errors: bool, a: i64, b: i64) -> f64 {
        let pod = &self.pods[p];
        let Some(ready) = pod.ready else { return 0.0 };
        let a = a.max(ready);
        if errors && pod.app == GATEWAY {
            let b = b.min(pod.end.unwrap_or(i64::MAX));
            if b <= a {
                return 0.0;
            }
            let gateways = self
                .pods
                .iter()
                .filter(|g| g.app == GATEWAY && g.namespace == pod.namespace)
                .filter(|g| g.ready.is_some_and(|r| r <= b) && g.end.is_none_or(|e| e > a))
                .count()
                .max(1) as f64;
            return 0.002 * self.flow(pod.req_key, pod.requests, 0.6, a, b)
                + self.proxied_errors(a, b) / gateways;
        }
        let key = pod.req_key;
        if !errors {
            return self.flow(
                key,
                pod.requests,
                0.6,
                a,
                b.min(pod.end.unwrap_or(i64::MAX)),
            );
        }
        let b = b.min(pod.end.unwrap_or(i64::MAX));
        let mut total = 0.0;
        for (i, &(from, share)) in pod.errors.iter().enumerate() {
            let to = pod.errors.get(i + 1).map_or(i64::MAX, |x| x.0);
            let (x, y) = (a.max(from), b.min(to));
            if y > x {
                total += (0.002 + share).min(1.0) * self.flow(key, pod.requests, 0.6, x, y);
            }
        }
        // Before the first cut (none for a ready pod): background only.
        if let Some(&(first, _)) = pod.errors.first() {
            if a < first {
                total += 0.002 * self.flow(key, pod.requests, 0.6, a, b.min(first));
            }
        } else {
            total += 0.002 * self.flow(key, pod.requests, 0.6, a, b);
        }
        total
    }

    fn net_bytes(&self, p: usize, rx: bool, a: i64, b: i64) -> f64 {
        let (per_req, base) = if rx {
            (1800.0, 3000.0)
        } else {
            (2600.0, 2500.0)
        };
        let pod = &self.pods[p];
        let (a2, b2) = (a.max(pod.start), b.min(pod.end.unwrap_or(i64::MAX)));
        let idle = if b2 > a2 {
            base * (b2 - a2) as f64 / 1000.0
        } else {
            0.0
        };
        per_req * (self.requests(p, false, a, b) + self.requests(p, true, a, b)) + idle
    }

    fn node_pods(&self, n: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.pods.len()).filter(move |&p| self.pods[p].node == n)
    }

    /// The node's busy CPU seconds over `[a, b)`: its pods plus the system's own.
    fn node_busy(&self, n: usize, a: i64, b: i64) -> f64 {
        self.memoized((0, n, a, b), || {
            let key = self
                .world
                .noise_key(&format!("node-cpu/{}", self.nodes[n].name));
            self.flow(key, 0.35, 0.5, a, b)
                + self
                    .node_pods(n)
                    .map(|p| self.slot_cpu(p, Slot::Pod, a, b))
                    .sum::<f64>()
        })
    }

    fn node_written(&self, n: usize, a: i64, b: i64) -> f64 {
        self.memoized((1, n, a, b), || {
            let key = self
                .world
                .noise_key(&format!("node-disk/{}", self.nodes[n].name));
            self.flow(key, 180_000.0, 0.8, a, b)
                + self
                    .node_pods(n)
                    .map(|p| {
                        (0..self.pods[p].containers.len())
                            .map(|c| self.fs_writes(p, c, a, b))
                            .sum::<f64>()
                    })
                    .sum::<f64>()
        })
    }

    /// One sample of series `id` at `t`.
    fn value(&self, id: usize, t: i64) -> f64 {
        let s = &self.series[id];
        let key = s.key.unwrap_or_else(|| self.world.noise_key(""));
        let from = s.start;
        match s.signal {
            Signal::Const(v) => v,
            Signal::Cpu(p, slot) => self.slot_cpu(p, slot, from, t),
            Signal::Throttled(p, slot, secs) => self.throttled(p, slot, secs, from, t),
            Signal::CfsPeriods(p, slot) => {
                let n = self.containers(p, slot).len() as f64;
                n * 10.0 * (t - from) as f64 / 1000.0
            }
            Signal::WorkingSet(p, slot) => self.working_set(p, slot, t),
            Signal::Usage(p, slot) => {
                let cache = self
                    .containers(p, slot)
                    .into_iter()
                    .map(|c| self.pods[p].containers[c].memory * 0.25)
                    .sum::<f64>();
                self.working_set(p, slot, t) + cache
            }
            Signal::MemLimit(p, slot) => match slot {
                Slot::Container(c) => self.pods[p].containers[c].memory_limit,
                Slot::Pod => self.pods[p].containers.iter().map(|c| c.memory_limit).sum(),
                Slot::Pause => 0.0,
            },
            Signal::FailCount(p, slot) => self
                .containers(p, slot)
                .into_iter()
                .map(|c| {
                    self.over_segments(p, from, t, |e, x, y| {
                        if self.capped(p, c, e) {
                            20.0 * (y - x) as f64 / 1000.0
                        } else {
                            0.0
                        }
                    })
                })
                .sum::<f64>()
                .floor(),
            Signal::Processes(p, slot) => {
                let e = self.effects_at(p, t);
                let stressed = e.cpu_cores > 0.0
                    || e.memory_bytes > 0.0
                    || e.memory_share > 0.0
                    || e.io_write_bytes_per_s > 0.0;
                let own = self.containers(p, slot).len() as f64;
                let pause = if matches!(slot, Slot::Pod | Slot::Pause) {
                    1.0
                } else {
                    0.0
                };
                let stress = if stressed && !matches!(slot, Slot::Pause) {
                    3.0
                } else {
                    0.0
                };
                own + pause + stress
            }
            Signal::FsWrites(p, Slot::Container(c)) => self.fs_writes(p, c, from, t),
            Signal::FsWrites(..) => 0.0,
            Signal::NetBytes(p, rx) => self.net_bytes(p, rx, from, t),
            Signal::Requests(p, errors) => {
                let all = self.requests(p, false, from, t).round();
                let bad = self.requests(p, true, from, t).round().min(all);
                if errors {
                    bad
                } else {
                    all - bad
                }
            }
            Signal::Ready(p, want) => {
                let ready = self.pods[p].ready.is_some_and(|r| r <= t);
                f64::from(u8::from(ready == want))
            }
            Signal::Phase(p, running) => {
                let ready = self.pods[p].ready.is_some_and(|r| r <= t);
                f64::from(u8::from(ready == running))
            }
            Signal::Up(p) => f64::from(u8::from(self.pods[p].ready.is_some_and(|r| r <= t))),
            Signal::NodeCpu(n, mode) => {
                let node = &self.nodes[n];
                let busy = self.node_busy(n, node.boot, t) / NODE_CPUS as f64;
                if mode == 0 {
                    (t - node.boot) as f64 / 1000.0 - busy
                } else {
                    busy * MODES[mode - 1].1
                }
            }
            Signal::NodeLoad(n, window) => {
                self.node_busy(n, t - window, t) / (window as f64 / 1000.0)
                    * (1.0 + 0.1 * self.wiggle(key, t))
            }
            Signal::NodeMem(n, which) => {
                let used: f64 = 1.5 * GIB
                    + self
                        .node_pods(n)
                        .filter(|&p| self.alive(p, t))
                        .map(|p| self.working_set(p, Slot::Pod, t))
                        .sum::<f64>();
                let cached = 3.0 * GIB * (1.0 + 0.05 * self.wiggle(key, t));
                match which {
                    0 => NODE_MEMORY,
                    1 => (NODE_MEMORY - used).max(0.0),
                    2 => (NODE_MEMORY - used - cached).max(0.0),
                    _ => cached,
                }
            }
            Signal::NodeFsAvail(n, size) => {
                let written = self.node_written(n, self.origin, t);
                (size * 0.55 - 0.05 * written).max(0.0)
            }
            Signal::NodeDisk(n, which) => {
                let node = &self.nodes[n];
                match which {
                    0 => self.flow(key, 40_000.0, 0.8, node.boot, t),
                    1 => self.node_written(n, node.boot, t),
                    _ => {
                        0.01 * (t - node.boot) as f64 / 1000.0
                            + self.node_written(n, node.boot, t) / 150e6
                    }
                }
            }
            Signal::NodeNet(n, rx) => {
                let node = &self.nodes[n];
                self.flow(key, 25_000.0, 0.5, node.boot, t)
                    + self
                        .node_pods(n)
                        .map(|p| self.net_bytes(p, rx, node.boot, t))
                        .sum::<f64>()
            }
            Signal::NodeNetRare(n, per_s) => {
                (per_s * (t - self.nodes[n].boot) as f64 / 1000.0).floor()
            }
            Signal::ProcCpu(rate) => self.flow(key, rate, 0.5, from - 86_400_000, t),
            Signal::ProcGauge(level, amp) => level * (1.0 + amp * self.wiggle(key, t)),
            Signal::Volumes(n) => self.node_pods(n).filter(|&p| self.alive(p, t)).count() as f64,
        }
    }

    fn alive(&self, p: usize, t: i64) -> bool {
        let pod = &self.pods[p];
        pod.start <= t && pod.end.is_none_or(|e| t < e)
    }

    /// Scrape instants of `id` in `(lo, hi]` with a sample (not after `now`).
    fn scrapes(&self, id: usize, lo: i64, hi: i64, now: i64) -> impl Iterator<Item = i64> {
        let s = &self.series[id];
        let hi = hi.min(now).min(s.end - 1);
        let lo = lo.max(s.start - 1);
        let first = (lo - s.phase).div_euclid(self.scrape) + 1;
        let (phase, scrape) = (s.phase, self.scrape);
        (first..)
            .map(move |k| phase + k * scrape)
            .take_while(move |&t| t <= hi)
    }
}

impl Model {
    /// How many series the model holds.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

impl View<'_> {
    /// Whether series `id` has a sample in `[start, end]`.
    pub fn has_samples(&self, id: usize, start: i64, end: i64) -> bool {
        self.model
            .scrapes(id, start.saturating_sub(1), end, self.now)
            .next()
            .is_some()
    }
}

impl Source for View<'_> {
    fn select(&self, matches: &dyn Fn(&Labels) -> bool) -> Vec<usize> {
        (0..self.model.series.len())
            .filter(|&i| matches(&self.model.series[i].labels))
            .collect()
    }

    fn labels(&self, id: usize) -> &Labels {
        &self.model.series[id].labels
    }

    fn samples(&self, id: usize, lo: i64, hi: i64, out: &mut Vec<(i64, f64)>) {
        for t in self.model.scrapes(id, lo, hi, self.now) {
            out.push((t, self.model.value(id, t)));
        }
    }

    fn last(&self, id: usize, lo: i64, hi: i64) -> Option<(i64, f64)> {
        let s = &self.model.series[id];
        let hi = hi.min(self.now);
        // The latest scrape at or before `hi`; once the series has ended, the first scrape after
        // its end wrote a staleness marker.
        let k = (hi - s.phase).div_euclid(self.model.scrape);
        let t = s.phase + k * self.model.scrape;
        if t >= s.end || t < s.start || t <= lo {
            return None;
        }
        Some((t, self.model.value(id, t)))
    }
}

fn target(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn series(
    target: &Labels,
    name: &str,
    extra: &[(&str, &str)],
    signal: Signal,
    start: i64,
    end: i64,
    phase: i64,
) -> Series {
    let mut labels = target.clone();
    labels.insert("__name__".into(), name.into());
    for (k, v) in extra {
        if !v.is_empty() {
            labels.insert(k.to_string(), v.to_string());
        }
    }
    Series {
        labels,
        start,
        end,
        phase,
        signal,
        key: None,
    }
}

/// The `process_*` metrics a Go exporter writes about itself.
fn process_series(
    out: &mut Vec<Series>,
    target: &Labels,
    phase: i64,
    origin: i64,
    cpu: f64,
    rss: f64,
    salt: usize,
) {
    let fds = 18.0 + (salt % 7) as f64 * 4.0;
    for (name, signal) in [
        ("process_cpu_seconds_total", Signal::ProcCpu(cpu)),
        ("process_open_fds", Signal::ProcGauge(fds, 0.2)),
        ("process_max_fds", Signal::Const(1_048_576.0)),
        ("process_resident_memory_bytes", Signal::ProcGauge(rss, 0.1)),
        (
            "process_virtual_memory_bytes",
            Signal::ProcGauge(rss * 6.0, 0.02),
        ),
        (
            "process_start_time_seconds",
            Signal::Const(((origin - 86_400_000) / 1000) as f64),
        ),
    ] {
        out.push(series(target, name, &[], signal, origin, i64::MAX, phase));
    }
}

const GATEWAY: &str = "ts-gateway-service";

/// The services a search-book-pay API flow calls.
const BOOKING_PATH: [&str; 18] = [
    "ts-auth-service",
    "ts-user-service",
    "ts-verification-code-service",
    "ts-travel-service",
    "ts-travel2-service",
    "ts-ticketinfo-service",
    "ts-basic-service",
    "ts-station-service",
    "ts-train-service",
    "ts-route-service",
    "ts-price-service",
    "ts-seat-service",
    "ts-order-service",
    "ts-order-other-service",
    "ts-preserve-service",
    "ts-contacts-service",
    "ts-security-service",
    "ts-inside-payment-service",
];

/// The entry points: the API gateway and the UI's nginx.
fn is_entry(app: &str) -> bool {
    app == GATEWAY || app == "ts-ui-dashboard"
}

/// A stable 12-hex-digit id from a name (container and pod ids in labels).
fn short_hash(name: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:012x}", h & 0xffff_ffff_ffff)
}

/// One pod's model: containers sized as Train-Ticket's deploy.yaml (`requests 100m/300Mi`,
/// `limits 500m/2000Mi` for the `ts-` services; the databases and middleware unlimited),
/// fault segments from [`World::effects`].
fn pod(
    world: &World,
    life: &PodLife,
    faults: &[crate::world::FaultLife],
    nodes: &[Node],
    started: i64,
    origin: i64,
) -> Pod {
    let app = life
        .labels
        .get("app")
        .cloned()
        .unwrap_or_else(|| life.name.clone());
    let created = ms(life.created);
    // Created with the sandbox (within its start-up): given a past.
    let start = if created <= started { origin } else { created };
    let ready = if created <= started {
        life.ready.map(|_| origin)
    } else {
        life.ready.map(ms)
    };
    let n = |key: &str| world.noise(&format!("{key}/{}", life.name), 0);
    let is_ts = app.starts_with("ts-");
    let containers = life
        .containers
        .iter()
        .map(|c| {
            let java = is_ts
                && !matches!(
                    app.as_str(),
                    "ts-ui-dashboard"
                        | "ts-avatar-service"
                        | "ts-news-service"
                        | "ts-ticket-office-service"
                        | "ts-voucher-service"
                );
            let (cpu, memory, writes) = if app.contains("mysql") {
                (
                    0.08 + 0.08 * n("cpu"),
                    450.0 * MIB + 200.0 * MIB * n("mem"),
                    60_000.0,
                )
            } else if java {
                (
                    0.02 + 0.08 * n("cpu"),
                    380.0 * MIB + 300.0 * MIB * n("mem"),
                    4_000.0,
                )
            } else {
                (
                    0.01 + 0.03 * n("cpu"),
                    60.0 * MIB + 140.0 * MIB * n("mem"),
                    2_000.0,
                )
            };
            Container {
                name: c.clone(),
                cpu,
                cpu_limit: if is_ts { 0.5 } else { 0.0 },
                memory,
                memory_limit: if is_ts { 2000.0 * MIB } else { 0.0 },
                writes: writes * (0.5 + n("fs")),
                image: format!("codewisdom/{c}:1.0.0"),
                id: short_hash(&format!("{}/{c}", life.name)),
                cpu_key: world.noise_key(&format!("cpu/{}/{c}", life.name)),
                mem_key: world.noise_key(&format!("mem/{}/{c}", life.name)),
                fs_key: world.noise_key(&format!("fs/{}/{c}", life.name)),
            }
        })
        .collect();
    // Fault segments: cut at every injection/recovery on this pod; effects at each middle.
    let mut cuts: BTreeSet<i64> = BTreeSet::new();
    for f in faults
        .iter()
        .filter(|f| f.pod == life.name && (f.namespace.is_empty() || f.namespace == life.namespace))
    {
        cuts.insert(ms(f.applied));
        cuts.insert(f.recovered.map_or(i64::MAX, ms));
    }
    let cuts: Vec<i64> = cuts.into_iter().collect();
    let mut segments = Vec::new();
    for w in cuts.windows(2) {
        // Cuts are whole milliseconds, the records' instants finer: look inside the segment,
        // never at its truncated start (which can fall before the injection).
        let mid = if w[1] == i64::MAX {
            w[0] + 1
        } else {
            w[0] + ((w[1] - w[0]) / 2).max(1)
        };
        let at = DateTime::from_timestamp_millis(mid).unwrap_or_default();
        let effects = world.effects(&life.namespace, &life.name, at);
        if effects != Effects::default() {
            segments.push(Segment {
                from: w[0],
                to: w[1],
                effects,
            });
        }
    }
    let node = nodes.iter().position(|x| x.name == life.node).unwrap_or(0);
    // A booking-heavy API mix (the campaign's EvoMaster suites search, book and pay): the
    // services on that path get most calls. The gateway's rate is its backends' sum (set by
    // `Model::health`).
    let requests = if !is_ts {
        0.0
    } else if is_entry(&app) {
        15.0 + 10.0 * n("req")
    } else if BOOKING_PATH.contains(&app.as_str()) {
        2.0 + 3.0 * n("req")
    } else {
        0.3 + 0.7 * n("req")
    };
    Pod {
        namespace: life.namespace.clone(),
        name: life.name.clone(),
        uid: format!(
            "{}-{}",
            short_hash(&life.name),
            &short_hash(&format!("uid/{}", life.name))[..8]
        ),
        ip: format!("10.244.{}.{}", node + 1, 2 + (n("ip") * 250.0) as u32),
        app,
        node,
        start,
        ready,
        end: life.deleted.map(ms),
        restarts: life.restarts,
        containers,
        segments,
        errors: Vec::new(),
        requests,
        req_key: world.noise_key(&format!("req/{}", life.name)),
    }
}
