//! Pods: seeds, realistic Pod objects (status, conditions, containerStatuses, ownerReferences),
//! the workload controller that recreates deleted pods, and the kubelet's rules for which
//! container instance a log request reads.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use super::controller::record_event;
use super::logs::LogSource;
use super::status::ApiError;
use super::util::{now_rfc3339, random_hex, random_suffix, template_hash};
use super::{Shared, State};

/// The 46 Deployments of Train-Ticket's `deploy.yaml` (each labelled `app: <name>`).
pub const TRAIN_TICKET_SERVICES: &[&str] = &[
    "ts-admin-basic-info-service",
    "ts-admin-order-service",
    "ts-admin-route-service",
    "ts-admin-travel-service",
    "ts-admin-user-service",
    "ts-assurance-service",
    "ts-auth-service",
    "ts-avatar-service",
    "ts-basic-service",
    "ts-cancel-service",
    "ts-config-service",
    "ts-consign-price-service",
    "ts-consign-service",
    "ts-contacts-service",
    "ts-delivery-service",
    "ts-execute-service",
    "ts-food-service",
    "ts-food-delivery-service",
    "ts-gateway-service",
    "ts-inside-payment-service",
    "ts-news-service",
    "ts-notification-service",
    "ts-order-other-service",
    "ts-order-service",
    "ts-payment-service",
    "ts-preserve-other-service",
    "ts-preserve-service",
    "ts-price-service",
    "ts-rebook-service",
    "ts-route-plan-service",
    "ts-route-service",
    "ts-seat-service",
    "ts-security-service",
    "ts-station-food-service",
    "ts-station-service",
    "ts-ticket-office-service",
    "ts-train-food-service",
    "ts-train-service",
    "ts-travel-plan-service",
    "ts-travel-service",
    "ts-travel2-service",
    "ts-user-service",
    "ts-verification-code-service",
    "ts-voucher-service",
    "ts-wait-order-service",
    "ts-ui-dashboard",
];

#[derive(Clone, Debug)]
pub struct ContainerSeed {
    pub name: String,
    pub image: String,
    pub ready: bool,
    pub restart_count: u32,
    /// `state.waiting.reason`, e.g. `CrashLoopBackOff`; the container is then not ready.
    pub waiting: Option<String>,
    pub log: LogSource,
    /// Log of the previous (terminated) instance; exists only when `restart_count > 0`.
    pub previous_log: Option<LogSource>,
    pub ports: Vec<u16>,
}

impl ContainerSeed {
    pub fn new(name: &str) -> Self {
        ContainerSeed {
            name: name.to_string(),
            image: format!("codewisdom/{name}:1.0.0"),
            ready: true,
            restart_count: 0,
            waiting: None,
            log: LogSource::empty(),
            previous_log: None,
            ports: Vec::new(),
        }
    }
    pub fn image(mut self, image: &str) -> Self {
        self.image = image.to_string();
        self
    }
    pub fn not_ready(mut self) -> Self {
        self.ready = false;
        self
    }
    pub fn restarts(mut self, n: u32) -> Self {
        self.restart_count = n;
        self
    }
    pub fn waiting(mut self, reason: &str) -> Self {
        self.waiting = Some(reason.to_string());
        self.ready = false;
        self
    }
    /// `CrashLoopBackOff` with at least one restart (so a previous instance exists).
    pub fn crash_loop(self) -> Self {
        let n = self.restart_count.max(1);
        self.waiting("CrashLoopBackOff").restarts(n)
    }
    pub fn log(mut self, log: LogSource) -> Self {
        self.log = log;
        self
    }
    pub fn previous_log(mut self, log: LogSource) -> Self {
        self.previous_log = Some(log);
        self
    }
    pub fn port(mut self, port: u16) -> Self {
        self.ports.push(port);
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Owner {
    /// A bare pod: deleted means gone.
    None,
    /// Pods `<name>-<hash>-<5 chars>` owned by ReplicaSet `<name>-<hash>`; recreated under a new name.
    Deployment,
    /// Pods `<name>-<i>` owned by the StatefulSet; recreated under the same name.
    StatefulSet,
}

/// A bare pod, or the pod template (plus replica count) of a Deployment/StatefulSet.
#[derive(Clone, Debug)]
pub struct PodSeed {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`, e.g. `kubectl.kubernetes.io/default-container`.
    pub annotations: BTreeMap<String, String>,
    pub containers: Vec<ContainerSeed>,
    pub phase: String,
    pub owner: Owner,
    pub replicas: u32,
    /// The next N replacement pods crash-loop instead of becoming Ready.
    pub broken: u32,
    /// After this many log requests to one of these pods, the pod is deleted.
    pub disappear_after_log_requests: Option<u32>,
}

impl PodSeed {
    fn base(name: &str, ns: &str, owner: Owner) -> Self {
        PodSeed {
            name: name.to_string(),
            namespace: ns.to_string(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            containers: Vec::new(),
            phase: "Running".into(),
            owner,
            replicas: 1,
            broken: 0,
            disappear_after_log_requests: None,
        }
    }

    /// A bare pod named `name` (add containers with [`container`](Self::container)).
    pub fn new(name: &str, ns: &str) -> Self {
        Self::base(name, ns, Owner::None)
    }

    /// The pods of Deployment `name`: label `app: name`, one container `name`.
    pub fn deployment(name: &str, ns: &str) -> Self {
        let mut s = Self::base(name, ns, Owner::Deployment).label("app", name);
        s.containers.push(ContainerSeed::new(name));
        s
    }

    /// The pods of StatefulSet `name` (`name-0`, …): label `app: name`.
    pub fn statefulset(name: &str, ns: &str) -> Self {
        let mut s = Self::base(name, ns, Owner::StatefulSet).label("app", name);
        s.containers.push(ContainerSeed::new(name));
        s
    }

    pub fn annotation(mut self, k: &str, v: &str) -> Self {
        self.annotations.insert(k.to_string(), v.to_string());
        self
    }

    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.insert(k.to_string(), v.to_string());
        self
    }

    /// Adds a container, replacing one of the same name; for workloads the first call replaces
    /// the default container.
    pub fn container(mut self, c: ContainerSeed) -> Self {
        let default_only = self.owner != Owner::None
            && self.containers.len() == 1
            && self.containers[0].name == self.name;
        if default_only && c.name != self.name {
            self.containers.clear();
        }
        self.containers.retain(|x| x.name != c.name);
        self.containers.push(c);
        self
    }

    pub fn phase(mut self, phase: &str) -> Self {
        self.phase = phase.to_string();
        self
    }
    pub fn replicas(mut self, n: u32) -> Self {
        self.replicas = n;
        self
    }
    pub fn broken(mut self, times: u32) -> Self {
        self.broken = times;
        self
    }
    pub fn disappear_after_log_requests(mut self, k: u32) -> Self {
        self.disappear_after_log_requests = Some(k);
        self
    }
}

/// Controller-side record of a Deployment/StatefulSet.
pub struct Workload {
    pub seed: PodSeed,
    pub broken_remaining: u32,
    pub owner_ref: Value,
    pub hash: String,
}

/// What the fake kubelet knows about a pod beyond its JSON: the log content of its containers.
pub struct PodRuntime {
    pub containers: Vec<ContainerSeed>,
    pub log_requests: u32,
    pub disappear_after: Option<u32>,
    pub workload: Option<(String, String)>,
}

pub(super) fn def(shared: &Shared, group: &str, plural: &str) -> super::ResourceDef {
    shared
        .def(group, plural)
        .expect("built-in resource")
        .clone()
}

pub(super) fn owner_ref(api_version: &str, kind: &str, obj: &Value) -> Value {
    json!({
        "apiVersion": api_version, "kind": kind,
        "name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"],
        "controller": true, "blockOwnerDeletion": true,
    })
}

fn container_specs(containers: &[ContainerSeed]) -> Vec<Value> {
    containers
        .iter()
        .map(|c| {
            let ports: Vec<Value> = c
                .ports
                .iter()
                .map(|p| json!({"containerPort": p, "protocol": "TCP"}))
                .collect();
            json!({
                "name": c.name, "image": c.image, "imagePullPolicy": "IfNotPresent", "ports": ports,
                "resources": {}, "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
            })
        })
        .collect()
}

/// The Pod object. `starting` = just scheduled: Pending, containers ContainerCreating.
pub(super) fn pod_json(
    ns: &str,
    name: &str,
    seed: &PodSeed,
    containers: &[ContainerSeed],
    labels: &BTreeMap<String, String>,
    owner: Option<&Value>,
    starting: bool,
) -> Value {
    let now = now_rfc3339();
    let node = format!(
        "fake-node-{}",
        1 + (template_hash(name).len() + name.len()) % 3
    );
    let statuses: Vec<Value> = containers
        .iter()
        .map(|c| {
            if starting {
                return json!({
                    "name": c.name, "image": c.image, "imageID": "", "ready": false, "restartCount": 0,
                    "started": false, "state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {},
                });
            }
            let last_state = if c.restart_count > 0 {
                json!({"terminated": {
                    "exitCode": 1, "reason": "Error", "startedAt": now, "finishedAt": now,
                    "containerID": format!("containerd://{}", random_hex(64)),
                }})
            } else {
                json!({})
            };
            let state = match &c.waiting {
                Some(reason) => json!({"waiting": {
                    "reason": reason,
                    "message": format!("back-off 5m0s restarting failed container={} pod={name}_{ns}", c.name),
                }}),
                None => json!({"running": {"startedAt": now}}),
            };
            json!({
                "name": c.name, "image": c.image,
                "imageID": format!("docker.io/{}@sha256:{}", c.image.split(':').next().unwrap_or(""), random_hex(64)),
                "containerID": format!("containerd://{}", random_hex(64)),
                "ready": c.ready && c.waiting.is_none() && !starting,
                "started": c.waiting.is_none(),
                "restartCount": c.restart_count, "state": state, "lastState": last_state,
            })
        })
        .collect();
    let unready: Vec<&str> = containers
        .iter()
        .filter(|c| starting || !c.ready || c.waiting.is_some())
        .map(|c| c.name.as_str())
        .collect();
    let ready_cond = |t: &str| {
        if unready.is_empty() {
            json!({"type": t, "status": "True", "lastProbeTime": null, "lastTransitionTime": now})
        } else {
            json!({"type": t, "status": "False", "lastProbeTime": null, "lastTransitionTime": now,
                   "reason": "ContainersNotReady",
                   "message": format!("containers with unready status: [{}]", unready.join(" "))})
        }
    };
    let ip = format!("10.244.{}.{}", fastrand::u8(1..250), fastrand::u8(2..250));
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "containers": container_specs(containers), "nodeName": node, "restartPolicy": "Always",
            "schedulerName": "default-scheduler", "serviceAccountName": "default",
            "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
        },
        "status": {
            "phase": if starting { "Pending" } else { seed.phase.as_str() },
            "conditions": [
                {"type": "PodReadyToStartContainers", "status": if starting { "False" } else { "True" }, "lastProbeTime": null, "lastTransitionTime": now},
                {"type": "Initialized", "status": "True", "lastProbeTime": null, "lastTransitionTime": now},
                ready_cond("Ready"),
                ready_cond("ContainersReady"),
                {"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now},
            ],
            "hostIP": "172.18.0.2", "hostIPs": [{"ip": "172.18.0.2"}],
            "podIP": ip, "podIPs": [{"ip": ip}],
            "startTime": now, "qosClass": "BestEffort",
            "containerStatuses": statuses,
        },
    });
    if !seed.annotations.is_empty() {
        pod["metadata"]["annotations"] = json!(seed.annotations);
    }
    if let Some(o) = owner {
        pod["metadata"]["ownerReferences"] = json!([o]);
        pod["metadata"]["generateName"] = json!(format!("{}-", o["name"].as_str().unwrap_or("")));
    }
    pod
}

/// Creates one pod of a workload (or a bare pod) in the store and registers its runtime.
pub(super) fn create_pod(
    st: &mut State,
    pods_def: &super::ResourceDef,
    seed: &PodSeed,
    name: &str,
    containers: Vec<ContainerSeed>,
    workload: Option<&Workload>,
    starting: bool,
) {
    let mut labels = seed.labels.clone();
    if let Some(w) = workload {
        match seed.owner {
            Owner::Deployment => {
                labels.insert("pod-template-hash".into(), w.hash.clone());
            }
            Owner::StatefulSet => {
                labels.insert(
                    "controller-revision-hash".into(),
                    format!("{}-{}", seed.name, w.hash),
                );
                labels.insert(
                    "statefulset.kubernetes.io/pod-name".into(),
                    name.to_string(),
                );
            }
            Owner::None => {}
        }
    }
    let pod = pod_json(
        &seed.namespace,
        name,
        seed,
        &containers,
        &labels,
        workload.map(|w| &w.owner_ref),
        starting,
    );
    if let Ok(created) = st.store.create(pods_def, Some(&seed.namespace), pod) {
        let now = chrono::Utc::now();
        let all_ready = !starting && containers.iter().all(|c| c.ready && c.waiting.is_none());
        st.pod_history.push(super::PodLife {
            namespace: seed.namespace.clone(),
            name: name.to_string(),
            labels: labels.clone(),
            created: now,
            deleted: None,
            node: created["spec"]["nodeName"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            containers: containers.iter().map(|c| c.name.clone()).collect(),
            ready: all_ready.then_some(now),
            restarts: containers
                .iter()
                .map(|c| c.restart_count)
                .max()
                .unwrap_or(0),
        });
        record_event(
            &mut st.store,
            &created,
            "Scheduled",
            &format!(
                "Successfully assigned {}/{name} to {}",
                seed.namespace,
                created["spec"]["nodeName"].as_str().unwrap_or("")
            ),
            "Normal",
            "default-scheduler",
        );
        st.pods.insert(
            (seed.namespace.clone(), name.to_string()),
            PodRuntime {
                containers,
                log_requests: 0,
                disappear_after: seed.disappear_after_log_requests,
                workload: workload.map(|_| (seed.namespace.clone(), seed.name.clone())),
            },
        );
    }
}

fn replica_name(seed: &PodSeed, w: &Workload, i: u32) -> String {
    match seed.owner {
        Owner::Deployment => format!("{}-{}-{}", seed.name, w.hash, random_suffix()),
        _ => format!("{}-{i}", seed.name),
    }
}

/// Seeds namespaces, workload objects (Deployment + ReplicaSet, StatefulSet) and their pods.
pub fn seed(shared: &Arc<Shared>, namespaces: &[String], seeds: &[PodSeed]) {
    let (ns_def, pods_def) = (def(shared, "", "namespaces"), def(shared, "", "pods"));
    let (deploy_def, rs_def, sts_def) = (
        def(shared, "apps", "deployments"),
        def(shared, "apps", "replicasets"),
        def(shared, "apps", "statefulsets"),
    );
    shared.mutate(|st| {
        for ns in namespaces {
            let _ = st.store.create(&ns_def, None, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}));
        }
        for seed in seeds {
            let ns = seed.namespace.as_str();
            let match_labels = json!(seed.labels);
            let template = json!({"metadata": {"labels": seed.labels}, "spec": {"containers": container_specs(&seed.containers)}});
            let replicas_status = json!({"replicas": seed.replicas, "readyReplicas": seed.replicas, "availableReplicas": seed.replicas, "updatedReplicas": seed.replicas, "observedGeneration": 1});
            let hash = template_hash(&seed.name);
            let owner = match seed.owner {
                Owner::None => {
                    create_pod(st, &pods_def, seed, &seed.name, seed.containers.clone(), None, false);
                    continue;
                }
                Owner::Deployment => {
                    let d = st.store.create(&deploy_def, Some(ns), json!({
                        "apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": seed.name, "labels": seed.labels},
                        "spec": {"replicas": seed.replicas, "selector": {"matchLabels": match_labels}, "template": template},
                        "status": replicas_status,
                    })).expect("seed deployment");
                    let mut rs_labels = seed.labels.clone();
                    rs_labels.insert("pod-template-hash".into(), hash.clone());
                    let rs = st.store.create(&rs_def, Some(ns), json!({
                        "apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "metadata": {"name": format!("{}-{hash}", seed.name), "labels": rs_labels,
                                     "ownerReferences": [owner_ref("apps/v1", "Deployment", &d)]},
                        "spec": {"replicas": seed.replicas, "selector": {"matchLabels": rs_labels}, "template": template},
                        "status": replicas_status,
                    })).expect("seed replicaset");
                    owner_ref("apps/v1", "ReplicaSet", &rs)
                }
                Owner::StatefulSet => {
                    let s = st.store.create(&sts_def, Some(ns), json!({
                        "apiVersion": "apps/v1", "kind": "StatefulSet",
                        "metadata": {"name": seed.name, "labels": seed.labels},
                        "spec": {"replicas": seed.replicas, "serviceName": seed.name, "selector": {"matchLabels": match_labels}, "template": template},
                        "status": replicas_status,
                    })).expect("seed statefulset");
                    owner_ref("apps/v1", "StatefulSet", &s)
                }
            };
            let w = Workload { seed: seed.clone(), broken_remaining: seed.broken, owner_ref: owner, hash };
            for i in 0..seed.replicas {
                let name = replica_name(seed, &w, i);
                create_pod(st, &pods_def, seed, &name, seed.containers.clone(), Some(&w), false);
            }
            st.workloads.insert((ns.to_string(), seed.name.clone()), w);
        }
    });
}

/// Workload controller: a deleted pod of a Deployment/StatefulSet is replaced after
/// `delays.pod_recreate`; the replacement becomes Ready after `delays.pod_ready`, or
/// crash-loops while the workload is configured `broken`.
/// Records in the pod's history that it became Ready now (what the simulation routes to).
pub(super) fn mark_ready(st: &mut State, namespace: &str, name: &str) {
    if let Some(life) = st
        .pod_history
        .iter_mut()
        .rev()
        .find(|l| l.namespace == namespace && l.name == name && l.deleted.is_none())
    {
        life.ready.get_or_insert_with(chrono::Utc::now);
    }
}

pub fn on_pod_deleted(shared: &Arc<Shared>, pod: &Value) {
    let ns = pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    let runtime = {
        let mut st = shared.lock();
        if let Some(life) = st
            .pod_history
            .iter_mut()
            .rev()
            .find(|l| l.namespace == ns && l.name == name && l.deleted.is_none())
        {
            life.deleted = Some(chrono::Utc::now());
        }
        st.pods.remove(&(ns.clone(), name.clone()))
    };
    let Some(workload_key) = runtime.and_then(|r| r.workload) else {
        return;
    };
    let shared2 = shared.clone();
    shared.rt.spawn(async move {
        tokio::time::sleep(shared2.delays.pod_recreate).await;
        let pods_def = def(&shared2, "", "pods");
        let created = shared2.mutate(|st| {
            let w = st.workloads.get_mut(&workload_key)?;
            let seed = w.seed.clone();
            let broken = w.broken_remaining > 0;
            if broken {
                w.broken_remaining -= 1;
            }
            let w = st.workloads.get(&workload_key)?;
            let new_name = match seed.owner {
                Owner::StatefulSet => name.clone(),
                _ => format!("{}-{}-{}", seed.name, w.hash, random_suffix()),
            };
            let w = Workload {
                seed: seed.clone(),
                broken_remaining: 0,
                owner_ref: w.owner_ref.clone(),
                hash: w.hash.clone(),
            };
            if broken {
                // The new instance crashes: its current state is CrashLoopBackOff and the log of
                // the instance that crashed is what `previous` (and, while waiting, plain) reads.
                let containers: Vec<ContainerSeed> = seed
                    .containers
                    .iter()
                    .map(|c| {
                        let prev = c.previous_log.clone().unwrap_or_else(|| c.log.clone());
                        c.clone().crash_loop().previous_log(prev)
                    })
                    .collect();
                create_pod(st, &pods_def, &seed, &new_name, containers, Some(&w), false);
                let pod = st
                    .store
                    .peek(&pods_def, Some(&seed.namespace), &new_name)
                    .cloned()?;
                for c in &seed.containers {
                    record_event(
                        &mut st.store,
                        &pod,
                        "BackOff",
                        &format!(
                            "Back-off restarting failed container {} in pod {new_name}_{}({})",
                            c.name,
                            seed.namespace,
                            pod["metadata"]["uid"].as_str().unwrap_or("")
                        ),
                        "Warning",
                        "kubelet",
                    );
                }
                None
            } else {
                create_pod(
                    st,
                    &pods_def,
                    &seed,
                    &new_name,
                    seed.containers.clone(),
                    Some(&w),
                    true,
                );
                let uid = st.store.peek(&pods_def, Some(&seed.namespace), &new_name)?["metadata"]
                    ["uid"]
                    .clone();
                Some((seed, new_name, uid))
            }
        });
        let Some((seed, new_name, uid)) = created else {
            return;
        };
        tokio::time::sleep(shared2.delays.pod_ready).await;
        shared2.mutate(|st| {
            let containers = st
                .pods
                .get(&(seed.namespace.clone(), new_name.clone()))?
                .containers
                .clone();
            let labels: BTreeMap<String, String> = st
                .store
                .peek(&pods_def, Some(&seed.namespace), &new_name)
                .filter(|p| p["metadata"]["uid"] == uid)
                .and_then(|p| serde_json::from_value(p["metadata"]["labels"].clone()).ok())?;
            let w = st
                .workloads
                .get(&(seed.namespace.clone(), seed.name.clone()))?;
            let ready = pod_json(
                &seed.namespace,
                &new_name,
                &seed,
                &containers,
                &labels,
                Some(&w.owner_ref),
                false,
            );
            let pod = st
                .store
                .update_with(&pods_def, Some(&seed.namespace), &new_name, |p| {
                    p["status"] = ready["status"].clone();
                    p["spec"]["nodeName"] = ready["spec"]["nodeName"].clone();
                    Ok(())
                })
                .ok()?;
            if containers.iter().all(|c| c.ready && c.waiting.is_none()) {
                mark_ready(st, &seed.namespace, &new_name);
            }
            for c in &containers {
                record_event(
                    &mut st.store,
                    &pod,
                    "Started",
                    &format!("Started container {}", c.name),
                    "Normal",
                    "kubelet",
                );
            }
            Some(())
        });
    });
}

/// Which container instance a log request reads, following the kubelet
/// (`pkg/kubelet/kubelet_pods.go`, `validateContainerLogStatus`): running → current; waiting
/// after a restart (CrashLoopBackOff) → the last terminated instance, so a crash-looping
/// container's plain log is the crashed run's log; waiting without one → 400 "is waiting to
/// start"; `previous` → the last terminated instance or a 400. Without `container`, the API
/// server answers 400 for a pod with several containers: the default container
/// (`kubectl.kubernetes.io/default-container`, else the first) is chosen by kubectl, client side
/// (`staging/src/k8s.io/kubectl/pkg/cmd/util/podcmd/podcmd.go`, `FindOrDefaultContainerByName`).
/// Returns the log, whether the pod must now disappear (configured request budget spent) and
/// the instance read (container name, whether it is the previous one).
pub fn resolve_log(
    st: &mut State,
    pods_def: &super::ResourceDef,
    ns: &str,
    name: &str,
    container: Option<&str>,
    previous: bool,
) -> Result<(LogSource, bool, (String, bool)), ApiError> {
    let pod = st.store.get(pods_def, Some(ns), name)?;
    let rt = st
        .pods
        .get_mut(&(ns.to_string(), name.to_string()))
        .ok_or_else(|| ApiError::not_found(pods_def, name))?;
    let container = match container {
        Some(c) => c.to_string(),
        None if rt.containers.len() == 1 => rt.containers[0].name.clone(),
        None => {
            let names: Vec<&str> = rt.containers.iter().map(|c| c.name.as_str()).collect();
            return Err(ApiError::bad_request(&format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                names.join(" ")
            )));
        }
    };
    let seed = rt
        .containers
        .iter()
        .find(|c| c.name == container)
        .ok_or_else(|| {
            ApiError::bad_request(&format!(
                "container {container} is not valid for pod {name}"
            ))
        })?;
    let status = pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == container.as_str()))
        .cloned()
        .unwrap_or_default();
    let has_previous = status["lastState"]["terminated"].is_object();
    let previous_log = || seed.previous_log.clone().unwrap_or_else(LogSource::empty);
    let (source, read_previous) = if previous {
        if !has_previous {
            return Err(ApiError::bad_request(&format!(
                "previous terminated container \"{container}\" in pod \"{name}\" not found"
            )));
        }
        (previous_log(), true)
    } else if status["state"]["running"].is_object() {
        (seed.log.clone(), false)
    } else if has_previous {
        (previous_log(), true)
    } else {
        let reason = status["state"]["waiting"]["reason"]
            .as_str()
            .unwrap_or("ContainerCreating");
        return Err(ApiError::bad_request(&format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
        )));
    };
    rt.log_requests += 1;
    let disappear = rt.disappear_after.is_some_and(|k| rt.log_requests >= k);
    Ok((source, disappear, (container, read_previous)))
}
