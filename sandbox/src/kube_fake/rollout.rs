//! The Deployment controller's rolling update, as far as a run sees it: re-applying a
//! Deployment with a changed pod template (the campaign's `instrument` + `kube-apply` steps add
//! the JaCoCo agent) replaces its pods with new ones under new names.
//!
//! Modelled on kubernetes/kubernetes `pkg/controller/deployment`:
//! - sync.go `getNewReplicaSet`: a template change makes a new ReplicaSet
//!   `<deployment>-<pod-template-hash>` (the hash of the template, controller_utils.go
//!   `ComputeHash`), owned by the Deployment; its pods carry the `pod-template-hash` label;
//! - rolling.go `rolloutRolling` with the default strategy (maxSurge 25% rounded up = 1,
//!   maxUnavailable 25% rounded down = 0 for small replica counts): a new pod is created first
//!   (Pending, ContainerCreating), an old pod is deleted only once the new one is Ready, and the
//!   old ReplicaSet is scaled to 0 (it stays, as revision history);
//! - an unchanged template (re-applying the same manifest) changes nothing.
//!
//! A Deployment created through the API (not seeded) gets its ReplicaSet and pods the same way.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use super::pods::{
    create_pod, def, mark_ready, owner_ref, pod_json, ContainerSeed, Owner, PodSeed, Workload,
};
use super::store::Change;
use super::util::{random_suffix, template_hash};
use super::Shared;

/// Reacts to a Deployment written through the API.
pub fn on_deployment_change(shared: &Arc<Shared>, change: &Change) {
    let (deployment, created) = match change {
        Change::Created(new) => (new.clone(), true),
        Change::Updated { old, new } if old["spec"]["template"] != new["spec"]["template"] => {
            (new.clone(), false)
        }
        _ => return,
    };
    let shared2 = shared.clone();
    shared
        .rt
        .spawn(async move { roll_out(&shared2, &deployment, created).await });
}

/// The template's containers as the fake kubelet runs them; a container keeps the log of the
/// same-named container of the previous template.
fn containers_of(template: &Value, previous: &[ContainerSeed]) -> Vec<ContainerSeed> {
    let specs = template["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    specs
        .iter()
        .filter_map(|c| {
            let name = c["name"].as_str()?;
            let mut seed = previous
                .iter()
                .find(|p| p.name == name)
                .cloned()
                .unwrap_or_else(|| ContainerSeed::new(name));
            if let Some(image) = c["image"].as_str() {
                seed = seed.image(image);
            }
            seed.ports = c["ports"]
                .as_array()
                .map(|ports| {
                    ports
                        .iter()
                        .filter_map(|p| p["containerPort"].as_u64())
                        .filter_map(|p| u16::try_from(p).ok())
                        .collect()
                })
                .unwrap_or_default();
            Some(seed)
        })
        .collect()
}

/// Copies the template's pod spec onto a pod's: container fields by container name, and the
/// pod-level fields (`initContainers`, `volumes`, …) the fake does not write itself.
fn overlay_template(pod: &mut Value, template: &Value) {
    let Some(t) = template.as_object() else {
        return;
    };
    for (k, v) in t {
        if k == "containers" {
            continue;
        }
        pod[k.as_str()] = v.clone();
    }
    let (Some(pod_cs), Some(t_cs)) = (
        pod["containers"].as_array_mut(),
        template["containers"].as_array(),
    ) else {
        return;
    };
    for c in pod_cs.iter_mut() {
        let Some(tc) = t_cs.iter().find(|tc| tc["name"] == c["name"]) else {
            continue;
        };
        if let (Some(c), Some(tc)) = (c.as_object_mut(), tc.as_object()) {
            for (k, v) in tc {
                c.insert(k.clone(), v.clone());
            }
        }
    }
}

async fn roll_out(shared: &Arc<Shared>, deployment: &Value, created: bool) {
    let ns = deployment["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let name = deployment["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let key = (ns.clone(), name.clone());
    let template = deployment["spec"]["template"].clone();
    let hash = template_hash(&format!("{name}/{template}"));
    let (pods_def, rs_def) = (def(shared, "", "pods"), def(shared, "apps", "replicasets"));
    // Step 1: the new ReplicaSet and its pods, starting; the old pods leave the workload (their
    // ReplicaSet is scaled down, so nothing replaces them once deleted).
    let started = shared.mutate(|st| {
        let existing = st
            .workloads
            .get(&key)
            .map(|w| (w.seed.clone(), w.owner_ref.clone(), w.hash.clone(), w.broken_remaining));
        let existing = existing.as_ref().map(|(seed, owner_ref, hash, broken)| {
            (seed, owner_ref, hash, *broken)
        });
        if existing.is_some_and(|(_, _, h, _)| *h == hash) {
            return None;
        }
        if created && existing.is_some() {
            // A seeded Deployment's own creation: its pods exist already.
            return None;
        }
        let mut seed = match existing {
            Some((seed, ..)) => seed.clone(),
            None => PodSeed::deployment(&name, &ns),
        };
        let labels: BTreeMap<String, String> =
            serde_json::from_value(template["metadata"]["labels"].clone()).unwrap_or_default();
        if !labels.is_empty() {
            seed.labels = labels;
        }
        seed.containers = containers_of(&template, &seed.containers);
        seed.owner = Owner::Deployment;
        if let Some(n) = deployment["spec"]["replicas"].as_u64() {
            seed.replicas = u32::try_from(n).unwrap_or(1);
        }
        let old_rs = existing.map(|(_, owner_ref, ..)| owner_ref["name"].clone());
        let mut rs_labels = seed.labels.clone();
        rs_labels.insert("pod-template-hash".into(), hash.clone());
        let mut rs_template = template.clone();
        rs_template["metadata"]["labels"] = json!(rs_labels);
        let rs = st
            .store
            .create(
                &rs_def,
                Some(&ns),
                json!({
                    "apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "metadata": {"name": format!("{name}-{hash}"), "labels": rs_labels,
                                 "ownerReferences": [owner_ref("apps/v1", "Deployment", deployment)]},
                    "spec": {"replicas": seed.replicas, "selector": {"matchLabels": rs_labels}, "template": rs_template},
                    "status": {"replicas": seed.replicas, "readyReplicas": 0, "availableReplicas": 0, "observedGeneration": 1},
                }),
            )
            .ok()?;
        if let Some(old) = old_rs.as_ref().and_then(Value::as_str) {
            let _ = st.store.update_with(&rs_def, Some(&ns), old, |rs| {
                rs["spec"]["replicas"] = json!(0);
                rs["status"] = json!({"replicas": 0, "observedGeneration": 2});
                Ok(())
            });
        }
        let old_pods: Vec<String> = st
            .pods
            .iter_mut()
            .filter(|(_, r)| r.workload.as_ref() == Some(&key))
            .map(|((_, pod), r)| {
                r.workload = None;
                pod.clone()
            })
            .collect();
        let w = Workload {
            seed: seed.clone(),
            broken_remaining: 0,
            owner_ref: owner_ref("apps/v1", "ReplicaSet", &rs),
            hash: hash.clone(),
        };
        let mut new_pods = Vec::new();
        for _ in 0..seed.replicas {
            let pod = format!("{name}-{hash}-{}", random_suffix());
            create_pod(
                st,
                &pods_def,
                &seed,
                &pod,
                seed.containers.clone(),
                Some(&w),
                true,
            );
            // A pod's spec is its template's (plus the defaults the fake already wrote): the
            // agent's env, volumes and init containers the `instrument` step added show.
            let _ = st.store.update_with(&pods_def, Some(&ns), &pod, |p| {
                overlay_template(&mut p["spec"], &template["spec"]);
                Ok(())
            });
            new_pods.push(pod);
        }
        let broken = existing.map_or(0, |(.., broken)| broken);
        st.workloads.insert(
            key.clone(),
            Workload {
                broken_remaining: broken,
                ..w
            },
        );
        Some((seed, new_pods, old_pods))
    });
    let Some((seed, new_pods, old_pods)) = started else {
        return;
    };
    tokio::time::sleep(shared.delays.pod_ready).await;
    // Step 2: the new pods are Ready; the old ones go.
    shared.mutate(|st| {
        let owner = st.workloads.get(&key).map(|w| w.owner_ref.clone());
        for pod in &new_pods {
            let Some(labels) = st
                .store
                .peek(&pods_def, Some(&ns), pod)
                .and_then(|p| serde_json::from_value(p["metadata"]["labels"].clone()).ok())
            else {
                continue;
            };
            let ready = pod_json(
                &ns,
                pod,
                &seed,
                &seed.containers,
                &labels,
                owner.as_ref(),
                false,
            );
            let _ = st.store.update_with(&pods_def, Some(&ns), pod, |p| {
                p["status"] = ready["status"].clone();
                Ok(())
            });
            mark_ready(st, &ns, pod);
        }
        for pod in &old_pods {
            let _ = st.store.delete(&pods_def, Some(&ns), pod);
        }
        let n = seed.replicas;
        let _ = st.store.update_with(&rs_def, Some(&ns), &format!("{name}-{hash}"), |rs| {
            rs["status"] = json!({"replicas": n, "readyReplicas": n, "availableReplicas": n, "observedGeneration": 1});
            Ok(())
        });
    });
}
