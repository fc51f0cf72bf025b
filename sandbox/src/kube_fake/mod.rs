//! A fake Kubernetes API server for tests: plain HTTP on 127.0.0.1, speaking the real REST API
//! (paths, verbs, status codes, JSON shapes, `Status` error bodies) for what ttplan uses, with
//! tiny controllers (ReplicaSet/StatefulSet, Chaos Mesh, ChaosBlade) and a WebSocket
//! port-forward that really forwards bytes to a local TCP address.
//!
//! It runs on its own tokio runtime thread, so it works the same from `#[tokio::test]` and from
//! plain `#[test]`s that run the `ttplan` binary:
//!
//! ```ignore
//! let kube = FakeKube::builder().train_ticket("default").chaosblade(true).start();
//! let kubeconfig = kube.write_kubeconfig(dir.path());
//! // KUBECONFIG=<kubeconfig> ttplan run …  or  Config::from_custom_kubeconfig(…)
//! assert!(kube.requests().iter().any(|r| r.method == "PATCH"));
//! ```
//!
//! What it serves: `/version`, discovery (`/api`, `/apis`, per group/version resource lists);
//! a generic store for every resource (LIST with label/field selectors and paging, WATCH, GET,
//! POST, PUT, server-side apply, merge and JSON patches, DELETE with finalizers, `dryRun`,
//! `/status` for resources that have that subresource); pods with realistic status, logs
//! (kubelet rules: container choice, previous instance, tailLines, sinceTime/sinceSeconds,
//! timestamps, limitBytes; chunked), core and events.k8s.io/v1 events, Services; controllers:
//! ReplicaSet/StatefulSet recreation, Chaos Mesh (the upstream reconcile pipeline, see
//! chaosmesh.rs; Schedule `@every`; Workflow chaos nodes), ChaosBlade; port-forward over WebSocket (`v4.channel.k8s.io`).
//!
//! Approximations, on purpose: server-side apply merges the applied configuration into the
//! live object (no field ownership, so never a conflict, and fields dropped from a later
//! apply are not removed); strategic merge patch is a JSON merge patch; a deleted pod is gone
//! at once (no Terminating grace period); `follow=true` logs end with the content; one node
//! per pod, no scheduling. Not served (404/406): aggregated discovery, exec/attach, other
//! subresources (scale, eviction…).

#![allow(dead_code, unused_imports)]

mod chaosblade;
mod chaosmesh;
mod controller;
mod discovery;
mod kubeconfig;
mod logs;
mod pods;
mod portforward;
mod rollout;
mod selectors;
mod server;
mod services;
mod status;
mod store;
mod util;
mod watch;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

pub use discovery::ResourceDef;
pub use logs::LogSource;
pub use pods::{ContainerSeed, Owner, PodSeed, TRAIN_TICKET_SERVICES};
pub use services::{ServiceSeed, TRAIN_TICKET_SERVICE_PORTS};

/// Which container instance's log a request reads (see [`FakeKube::set_log_feed`]).
pub struct LogRequest<'a> {
    pub namespace: &'a str,
    pub pod: &'a str,
    pub container: &'a str,
    /// The last terminated instance (`previous=true`, or a crash-looping container).
    pub previous: bool,
}

/// Log content computed when a log is read; `None` keeps the seeded content.
pub type LogFeed = Arc<dyn Fn(&LogRequest) -> Option<LogSource> + Send + Sync>;

/// The controllers' delays. Short defaults keep tests fast; every wait inside the fake is one
/// of these (no other sleeps are used for synchronization).
#[derive(Clone, Debug)]
pub struct Delays {
    /// Controller-runtime's latency from a change to the next reconcile of the object.
    pub chaos_reconcile: Duration,
    /// The records step's Apply (selection and the chaos-daemon round trip): records absent
    /// (conditions all False) until it ends.
    pub chaos_inject: Duration,
    /// Chaos object deleted (or paused) → records recovered, finalizer removed.
    pub chaos_recover: Duration,
    /// Pod of a workload deleted → replacement pod created.
    pub pod_recreate: Duration,
    /// Replacement pod created → Running and Ready.
    pub pod_ready: Duration,
    /// ChaosBlade Initialized → Running/Error (the operator's `Executor.Create`).
    pub blade: Duration,
    /// ChaosBlade deleted → Destroyed (the operator's `Executor.Destroy`).
    pub blade_destroy: Duration,
}

impl Default for Delays {
    fn default() -> Self {
        Delays {
            chaos_reconcile: Duration::from_millis(10),
            chaos_inject: Duration::from_millis(150),
            chaos_recover: Duration::from_millis(150),
            pod_recreate: Duration::from_millis(100),
            pod_ready: Duration::from_millis(200),
            blade: Duration::from_millis(150),
            blade_destroy: Duration::from_millis(150),
        }
    }
}

/// One HTTP request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub content_type: Option<String>,
    pub body: String,
    pub at: DateTime<Utc>,
}

impl RecordedRequest {
    /// Decoded query parameters, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        server::query_pairs(self.query.as_deref().unwrap_or(""))
    }

    pub fn query_param(&self, key: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

/// An injection or recovery as the fake Chaos Mesh controller recorded it (the same instant
/// it wrote into `status.experiment.containerRecords[].events[].timestamp`, which has whole
/// seconds only).
#[derive(Clone, Debug)]
pub struct ChaosTimestamp {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// Record id: `ns/pod` or `ns/pod/container`.
    pub target: String,
    /// `Apply` or `Recover`.
    pub operation: String,
    pub at: DateTime<Utc>,
    /// The chaos object's `spec` when this happened (what the fault does: the sandbox's
    /// simulation reads it after the object is gone).
    pub spec: Value,
}

/// A pod's life as the fake's controllers made it: created, and deleted (by a pod-kill, a
/// rollout or a client) — the pods of the past that the sandbox's simulated series show.
#[derive(Clone, Debug)]
pub struct PodLife {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub created: DateTime<Utc>,
    pub deleted: Option<DateTime<Utc>>,
    /// `spec.nodeName`.
    pub node: String,
    /// Container names, in spec order.
    pub containers: Vec<String>,
    /// When every container became ready (`None`: not yet, or crash-looping).
    pub ready: Option<DateTime<Utc>>,
    /// Restarts of its containers as created (a crash-looping replacement's count).
    pub restarts: u32,
}

pub(crate) struct State {
    pub store: store::Store,
    pub pods: HashMap<(String, String), pods::PodRuntime>,
    pub workloads: HashMap<(String, String), pods::Workload>,
    /// Every pod ever created, in creation order.
    pub pod_history: Vec<PodLife>,
}

/// (plural, namespace, name) of a chaos object.
pub(crate) type ChaosKey = (String, String, String);

pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub defs: Vec<ResourceDef>,
    pub delays: Delays,
    pub recovery_hangs: bool,
    /// Chaos Mesh versions whose selector reports an empty selection as "no target has been
    /// selected" rather than "no pod is selected".
    pub legacy_selection_message: bool,
    /// The chaos work queue: (plural, namespace, name) → (reconciling, changed meanwhile).
    pub chaos_queue: Mutex<HashMap<ChaosKey, (bool, bool)>>,
    pub token: String,
    pub requests: Mutex<Vec<RecordedRequest>>,
    pub chaos_timeline: Mutex<Vec<ChaosTimestamp>>,
    pub log_feed: Mutex<Option<LogFeed>>,
    /// (pod name, or workload name / `app` label) + port → local TCP address.
    pub forwards: Mutex<HashMap<(String, u16), String>>,
    pub rt: tokio::runtime::Handle,
    pub addr: SocketAddr,
    pub watch_tx: tokio::sync::broadcast::Sender<watch::WatchEvent>,
}

impl Shared {
    pub fn def(&self, group: &str, plural: &str) -> Option<&ResourceDef> {
        self.defs
            .iter()
            .find(|d| d.group == group && d.plural == plural)
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` under the store lock, then lets the controllers react to what changed
    /// (outside the lock).
    pub fn mutate<R>(self: &Arc<Self>, f: impl FnOnce(&mut State) -> R) -> R {
        let (r, changes) = {
            let mut st = self.lock();
            let r = f(&mut st);
            let changes = st.store.take_changes();
            // Broadcast under the lock so watchers see changes in store order (see watch.rs).
            for (def, change) in &changes {
                let _ = self
                    .watch_tx
                    .send(watch::WatchEvent::from_change(def, change));
            }
            (r, changes)
        };
        for (def, change) in changes {
            controller::dispatch(self, &def, &change);
        }
        r
    }
}

pub struct FakeKubeBuilder {
    chaos_mesh: bool,
    chaosblade: bool,
    delays: Delays,
    recovery_hangs: bool,
    legacy_selection_message: bool,
    seeds: Vec<PodSeed>,
    services: Vec<ServiceSeed>,
    namespaces: Vec<String>,
    forwards: Vec<(String, u16, String)>,
    token: String,
}

impl FakeKubeBuilder {
    /// Chaos Mesh CRDs installed (default: yes).
    pub fn chaos_mesh(mut self, installed: bool) -> Self {
        self.chaos_mesh = installed;
        self
    }

    /// ChaosBlade CRD installed (default: no).
    pub fn chaosblade(mut self, installed: bool) -> Self {
        self.chaosblade = installed;
        self
    }

    pub fn delays(mut self, delays: Delays) -> Self {
        self.delays = delays;
        self
    }

    /// Chaos Mesh recovery never finishes (the finalizer stays) until the object carries the
    /// annotation `chaos-mesh.chaos-mesh.org/cleanFinalizer: forced`.
    pub fn recovery_hangs(mut self, hangs: bool) -> Self {
        self.recovery_hangs = hangs;
        self
    }

    /// The controller words an empty selection "Failed to select targets: no target has been
    /// selected" (as some Chaos Mesh versions do) instead of "…: no pod is selected"
    /// (pkg/selector/pod/selector.go `ErrNoPodSelected`).
    pub fn legacy_selection_message(mut self, legacy: bool) -> Self {
        self.legacy_selection_message = legacy;
        self
    }

    /// Seeds pods (standalone, or the pods of a Deployment/StatefulSet). A seed with the same
    /// namespace and name as an earlier one replaces it, so a test can adjust one service of
    /// [`train_ticket`](Self::train_ticket).
    pub fn pod(mut self, seed: PodSeed) -> Self {
        self.seeds
            .retain(|s| !(s.name == seed.name && s.namespace == seed.namespace));
        if !self.namespaces.contains(&seed.namespace) {
            self.namespaces.push(seed.namespace.clone());
        }
        self.seeds.push(seed);
        self
    }

    pub fn namespace(mut self, ns: &str) -> Self {
        if !self.namespaces.iter().any(|n| n == ns) {
            self.namespaces.push(ns.to_string());
        }
        self
    }

    /// Seeds a Service (replacing one of the same namespace and name), e.g. a labelled
    /// Prometheus or SkyWalking endpoint for discovery.
    pub fn service(mut self, seed: ServiceSeed) -> Self {
        self.services
            .retain(|s| !(s.name == seed.name && s.namespace == seed.namespace));
        self.services.push(seed);
        self
    }

    /// The Train-Ticket deployment of `../shared/fixtures/train-ticket/deploy.yaml`: its 46
    /// Deployments (label `app: <name>`, one container named after the service), plus the
    /// `tsdb-mysql` and `nacos` StatefulSets and the `rabbitmq` Deployment, all Running/Ready,
    /// and the Services of `svc.yaml`.
    pub fn train_ticket(mut self, ns: &str) -> Self {
        for name in pods::TRAIN_TICKET_SERVICES {
            self = self.pod(PodSeed::deployment(name, ns));
        }
        self = self.pod(
            PodSeed::statefulset("tsdb-mysql", ns)
                .container(ContainerSeed::new("mysql").image("mysql:5.7")),
        );
        self = self.pod(
            PodSeed::statefulset("nacos", ns)
                .container(ContainerSeed::new("nacos").image("nacos/nacos-server:2.0.1")),
        );
        self = self.pod(
            PodSeed::deployment("rabbitmq", ns)
                .container(ContainerSeed::new("rabbitmq").image("rabbitmq:3.8-management")),
        );
        // The 44 Services of svc.yaml (gateway and UI dashboard are NodePort there).
        for (name, port) in services::TRAIN_TICKET_SERVICE_PORTS {
            let seed = ServiceSeed::new(name, ns);
            let seed = match *name {
                "ts-gateway-service" => seed.node_port("http", *port, 30467),
                "ts-ui-dashboard" => seed.node_port("http", *port, 32677),
                _ => seed.port("http", *port),
            };
            self = self.service(seed);
        }
        self
    }

    /// Port-forwards to `pod` (a pod name, or a workload name matching any of its pods) on
    /// `port` are connected to the local TCP address `target`.
    pub fn forward(mut self, pod: &str, port: u16, target: &str) -> Self {
        self.forwards
            .push((pod.to_string(), port, target.to_string()));
        self
    }

    pub fn token(mut self, token: &str) -> Self {
        self.token = token.to_string();
        self
    }

    /// Binds 127.0.0.1:0 and starts the server and controllers on a dedicated runtime thread.
    pub fn start(self) -> FakeKube {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("kube-fake".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("kube fake runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind 127.0.0.1:0");
                    let addr = listener.local_addr().expect("local addr");
                    let shared = Arc::new(Shared {
                        state: Mutex::new(State {
                            store: store::Store::default(),
                            pods: HashMap::new(),
                            workloads: HashMap::new(),
                            pod_history: Vec::new(),
                        }),
                        defs: discovery::catalogue(self.chaos_mesh, self.chaosblade),
                        delays: self.delays,
                        recovery_hangs: self.recovery_hangs,
                        legacy_selection_message: self.legacy_selection_message,
                        chaos_queue: Mutex::new(HashMap::new()),
                        token: self.token,
                        requests: Mutex::new(Vec::new()),
                        watch_tx: tokio::sync::broadcast::channel(4096).0,
                        chaos_timeline: Mutex::new(Vec::new()),
                        log_feed: Mutex::new(None),
                        forwards: Mutex::new(
                            self.forwards
                                .into_iter()
                                .map(|(p, port, t)| ((p, port), t))
                                .collect(),
                        ),
                        rt: tokio::runtime::Handle::current(),
                        addr,
                    });
                    pods::seed(&shared, &self.namespaces, &self.seeds);
                    services::seed(&shared, &self.services);
                    tx.send(shared.clone()).expect("report start");
                    server::serve(listener, shared, stop_rx).await;
                });
            })
            .expect("spawn kube fake thread");
        let shared = rx.recv().expect("kube fake failed to start");
        FakeKube {
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

/// A running fake API server. Dropping it stops the server.
pub struct FakeKube {
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeKube {
    pub fn builder() -> FakeKubeBuilder {
        FakeKubeBuilder {
            chaos_mesh: true,
            chaosblade: false,
            delays: Delays::default(),
            recovery_hangs: false,
            legacy_selection_message: false,
            seeds: Vec::new(),
            services: Vec::new(),
            namespaces: vec!["default".into(), "kube-system".into()],
            forwards: Vec::new(),
            token: "fake-token".into(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// Writes `<dir>/kubeconfig` (cluster `fake`, context `fake`, user `fake` with a static
    /// token) and returns its path; point `KUBECONFIG` at it.
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        kubeconfig::write(dir, &self.url(), &self.shared.token)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn clear_requests(&self) {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Every pod created so far (deleted ones too), in creation order.
    pub fn pod_history(&self) -> Vec<PodLife> {
        self.shared.lock().pod_history.clone()
    }

    /// A handle that reads the cluster's history after this value is moved (the simulation's).
    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Every injection/recovery the fake Chaos Mesh controller performed, in order.
    pub fn chaos_timeline(&self) -> Vec<ChaosTimestamp> {
        self.shared
            .chaos_timeline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// One stored object (any resource), as JSON.
    pub fn get(
        &self,
        group: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let def = self.shared.def(group, plural)?.clone();
        self.shared
            .lock()
            .store
            .peek(&def, namespace, name)
            .cloned()
    }

    /// All stored objects of a resource (all namespaces).
    pub fn list(&self, group: &str, plural: &str) -> Vec<Value> {
        match self.shared.def(group, plural) {
            Some(def) => {
                let def = def.clone();
                self.shared.lock().store.all(&def, None)
            }
            None => Vec::new(),
        }
    }

    /// Names of the pods in `namespace` whose `app` label is `app`, sorted.
    pub fn pod_names(&self, namespace: &str, app: &str) -> Vec<String> {
        self.list("", "pods")
            .into_iter()
            .filter(|p| {
                p["metadata"]["namespace"] == namespace && p["metadata"]["labels"]["app"] == app
            })
            .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
            .collect()
    }

    /// Core events stored in `namespace`.
    pub fn events(&self, namespace: &str) -> Vec<Value> {
        self.list("", "events")
            .into_iter()
            .filter(|e| e["metadata"]["namespace"] == namespace)
            .collect()
    }

    /// Creates (or replaces) an object directly, as if a controller had; controllers react.
    pub fn put(&self, group: &str, plural: &str, namespace: Option<&str>, obj: Value) {
        let def = self
            .shared
            .def(group, plural)
            .expect("known resource")
            .clone();
        let name = obj["metadata"]["name"]
            .as_str()
            .expect("metadata.name")
            .to_string();
        self.shared
            .mutate(|st| {
                if st.store.peek(&def, namespace, &name).is_some() {
                    st.store.update_with(&def, namespace, &name, |o| {
                        *o = obj;
                        Ok(())
                    })
                } else {
                    st.store.create(&def, namespace, obj)
                }
            })
            .expect("store object");
    }

    /// Adds a core Event (as a component other than ttplan would).
    pub fn add_event(
        &self,
        namespace: &str,
        involved_kind: &str,
        involved_name: &str,
        reason: &str,
        message: &str,
        type_: &str,
    ) {
        let involved = serde_json::json!({
            "apiVersion": "v1", "kind": involved_kind,
            "metadata": {"name": involved_name, "namespace": namespace, "uid": util::random_uid()},
        });
        self.shared.mutate(|st| {
            controller::record_event(&mut st.store, &involved, reason, message, type_, "test")
        });
    }

    /// Deletes a pod as `kubectl delete pod` would; its workload recreates it.
    pub fn delete_pod(&self, namespace: &str, name: &str) -> bool {
        let def = self.shared.def("", "pods").expect("pods").clone();
        self.shared
            .mutate(|st| st.store.delete(&def, Some(namespace), name))
            .is_ok()
    }

    /// Makes the next `times` replacement pods of a workload crash-loop (see [`PodSeed::broken`]).
    pub fn set_broken(&self, namespace: &str, workload: &str, times: u32) {
        if let Some(w) = self
            .shared
            .lock()
            .workloads
            .get_mut(&(namespace.to_string(), workload.to_string()))
        {
            w.broken_remaining = times;
        }
    }

    /// Computes pod logs when they are read (the sandbox's simulated services), after the
    /// kubelet's rules chose the container instance; `since`, `tail`, `timestamps` and
    /// `limitBytes` then apply to what it returns.
    pub fn set_log_feed(&self, feed: LogFeed) {
        *self
            .shared
            .log_feed
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(feed);
    }

    /// Adds or changes a port-forward target while running.
    pub fn set_forward(&self, pod: &str, port: u16, target: &str) {
        self.shared
            .forwards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((pod.to_string(), port), target.to_string());
    }

    /// Polls (every 10 ms, up to `timeout`) until `f` holds; for tests, not used by the fake.
    pub fn wait_until(&self, timeout: Duration, mut f: impl FnMut(&FakeKube) -> bool) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if f(self) {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Do not join: dropping from inside an async test must not block that runtime; the
        // fake's thread ends by itself once its server loop returns.
        drop(self.thread.take());
    }
}

/// Labels helper for seeds: `labels(&[("app", "x")])`.
pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
