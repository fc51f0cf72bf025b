//! Kubernetes probes: list the selected objects (resource, namespace, label selector, name
//! prefixes) and judge their number, how many are ready, a field's value, or their absence.

use ::kube::core::DynamicObject;
use ::kube::discovery::ApiResource;
use serde_json::json;

use super::http::same;
use super::{Evaluation, ProbeSpec, ReadyCount};
use crate::kube::pods::PodQuery;
use crate::steps::api::StepCtx;

/// The resource to list: `resource` (plural) in `api_version`, `apps/v1` for the workload
/// kinds when no version is given.
pub fn api_resource(spec: &ProbeSpec) -> ApiResource {
    let plural = spec.resource.clone().unwrap_or_else(|| "pods".into());
    let api_version = spec.api_version.clone().unwrap_or_else(|| {
        match plural.as_str() {
            "deployments" | "statefulsets" | "daemonsets" | "replicasets" => "apps/v1",
            _ => "v1",
        }
        .into()
    });
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), api_version.clone()),
    };
    ApiResource {
        group,
        version,
        api_version,
        kind: plural.clone(),
        plural,
    }
}

pub async fn evaluate(spec: &ProbeSpec, ctx: &StepCtx) -> Evaluation {
    let kube = match ctx.kube().await {
        Ok(k) => k,
        Err(e) => return Evaluation::unknown(e.to_string()),
    };
    let ar = api_resource(spec);
    let ns = spec
        .namespace
        .clone()
        .unwrap_or_else(|| kube.namespace.clone());
    let query = PodQuery {
        namespace: &ns,
        selector: spec.selector.as_deref(),
        name_prefixes: &spec.name_prefixes,
    };
    let list = match query.objects(kube, &ar).await {
        Ok(l) => l,
        Err(e) => return Evaluation::unknown(e.to_string()),
    };
    let objects: Vec<&DynamicObject> = list.iter().collect();
    judge(spec, &objects)
}

fn judge(spec: &ProbeSpec, objects: &[&DynamicObject]) -> Evaluation {
    let total = objects.len() as u64;
    let ready = objects.iter().filter(|o| is_ready(o)).count() as u64;
    let mut value = json!({ "objects": total, "ready": ready });
    if let Some(want) = spec.ready {
        let (ok, why) = match want {
            ReadyCount::All => (
                total > 0 && ready == total,
                format!("{ready} of {total} ready"),
            ),
            ReadyCount::AtLeast(n) => (ready >= n, format!("{ready} ready, expected at least {n}")),
        };
        return Evaluation::new(value, Some(ok), (!ok).then_some(why));
    }
    if let Some(absent) = spec.absent {
        let ok = (total == 0) == absent;
        let why = if absent {
            format!("{total} object(s) still match")
        } else {
            "nothing matches".into()
        };
        return Evaluation::new(value, Some(ok), (!ok).then_some(why));
    }
    if let (Some(ptr), Some(want)) = (&spec.field, &spec.equals) {
        let off: Vec<String> = objects
            .iter()
            .filter(|o| {
                let doc = serde_json::to_value(o).unwrap_or_default();
                !doc.pointer(ptr).is_some_and(|v| same(v, want))
            })
            .map(|o| o.metadata.name.clone().unwrap_or_default())
            .collect();
        value["matching"] = json!(total - off.len() as u64);
        let ok = total > 0 && off.is_empty();
        let why = if total == 0 {
            "nothing matches the selector".to_string()
        } else {
            format!("{ptr} is not {want} on {}", off.join(", "))
        };
        return Evaluation::new(value, Some(ok), (!ok).then_some(why));
    }
    let expect = spec.expect.clone().unwrap_or_default();
    let miss = expect.miss(total as f64);
    Evaluation::new(
        value,
        Some(miss.is_none()),
        miss.map(|m| format!("object count {m}")),
    )
}

/// Ready: a `Ready` (pods) or `Available` (deployments) condition that is `True`, else all
/// desired replicas ready. An object being deleted is not ready: it is going away.
fn is_ready(o: &DynamicObject) -> bool {
    if o.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let status = &o.data["status"];
    if let Some(conds) = status["conditions"].as_array() {
        let true_of = |t: &str| {
            conds
                .iter()
                .any(|c| c["type"] == t && c["status"] == "True")
        };
        if conds
            .iter()
            .any(|c| c["type"] == "Ready" || c["type"] == "Available")
        {
            return true_of("Ready") || true_of("Available");
        }
    }
    let want = o.data["spec"]["replicas"].as_u64();
    let have = status["readyReplicas"].as_u64().unwrap_or(0);
    want.is_some_and(|w| w > 0 && have >= w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn obj(v: Value) -> DynamicObject {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn readiness_of_pods_and_workloads() {
        let ready_pod = obj(json!({"metadata": {"name": "a"}, "status": {"conditions": [
            {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]}}));
        let unready_pod = obj(json!({"metadata": {"name": "b"}, "status": {"conditions": [
            {"type": "Ready", "status": "False"}]}}));
        let terminating = obj(
            json!({"metadata": {"name": "c", "deletionTimestamp": "2025-01-01T00:00:00Z"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        );
        let sts = obj(
            json!({"metadata": {"name": "d"}, "spec": {"replicas": 2}, "status": {"readyReplicas": 2}}),
        );
        assert!(is_ready(&ready_pod) && is_ready(&sts));
        assert!(!is_ready(&unready_pod) && !is_ready(&terminating));
    }
}
