//! Self-test of the fake Kubernetes API server: the real `kube` client, configured from the
//! kubeconfig the fake writes, must get what a real cluster would answer.

use super::{blade_api, chaos_api};
use crate::kube_fake;

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::AsyncReadExt;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, LogParams, Patch,
    PatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use kube_fake::{ContainerSeed, Delays, FakeKube, LogSource, PodSeed};

const NS: &str = "train-ticket";

async fn client(kube: &FakeKube, dir: &Path) -> Client {
    let path = kube.write_kubeconfig(dir);
    let kc = Kubeconfig::read_from(&path).expect("kubeconfig parses");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    assert_eq!(config.default_namespace, "default");
    Client::try_from(config).expect("client")
}

fn dynamic(v: Value) -> DynamicObject {
    serde_json::from_value(v).expect("dynamic object")
}

/// Bounded polling of the API (the test's side; the fake itself never polls).
async fn poll<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn condition(obj: &DynamicObject, t: &str) -> Option<String> {
    obj.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)
        .and_then(|c| c["status"].as_str().map(String::from))
}

fn api_code<T: std::fmt::Debug>(r: kube::Result<T>) -> u16 {
    match r {
        Err(kube::Error::Api(s)) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn stress(name: &str, labels: Value) -> DynamicObject {
    dynamic(json!({
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": "StressChaos",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "mode": "all",
            "selector": {"namespaces": [NS], "labelSelectors": labels},
            "stressors": {"cpu": {"workers": 1, "load": 50}},
        }
    }))
}

#[tokio::test]
async fn version_discovery_and_missing_crd() {
    let kube = FakeKube::builder().train_ticket(NS).start();
    let dir = tempfile::tempdir().unwrap();
    let client = client(&kube, dir.path()).await;
    let v = client.apiserver_version().await.unwrap();
    assert_eq!(v.major, "1");

    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    let (ar, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk(
            "chaos-mesh.org",
            "v1alpha1",
            "StressChaos",
        ))
        .expect("StressChaos discovered");
    assert_eq!(ar.plural, "stresschaos");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    assert!(discovery
        .resolve_gvk(&GroupVersionKind::gvk(
            "chaosblade.io",
            "v1alpha1",
            "ChaosBlade"
        ))
        .is_none());

    // ChaosBlade is not installed: its paths are 404 with a Status body.
    assert_eq!(
        api_code(blade_api(&client).list(&ListParams::default()).await),
        404
    );
    assert_eq!(api_code(blade_api(&client).get("nope").await), 404);
    // Installed kind, missing object.
    assert_eq!(
        api_code(
            chaos_api(&client, NS, "StressChaos", "stresschaos")
                .get("nope")
                .await
        ),
        404
    );
}

#[tokio::test]
async fn pods_list_with_label_and_field_selectors() {
    let kube = FakeKube::builder()
        .train_ticket(NS)
        .pod(
            PodSeed::deployment("ts-auth-service", NS)
                .container(ContainerSeed::new("ts-auth-service").crash_loop()),
        )
        .start();
    let dir = tempfile::tempdir().unwrap();
    let pods: Api<Pod> = Api::namespaced(client(&kube, dir.path()).await, NS);

    let all = pods.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        all.items.len(),
        49,
        "46 ts-* services + tsdb-mysql + nacos + rabbitmq"
    );

    let order = pods
        .list(&ListParams::default().labels("app=ts-order-service"))
        .await
        .unwrap();
    assert_eq!(order.items.len(), 1);
    let pod = &order.items[0];
    let name = pod.metadata.name.clone().unwrap();
    assert!(name.starts_with("ts-order-service-"), "{name}");
    let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.kind, "ReplicaSet");
    assert!(name.starts_with(&format!("{}-", owner.name)));
    let status = pod.status.as_ref().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert!(status
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True"));

    let two = pods
        .list(&ListParams::default().labels("app in (ts-order-service, ts-auth-service)"))
        .await
        .unwrap();
    assert_eq!(two.items.len(), 2);
    let not_ts = pods
        .list(&ListParams::default().labels("app notin (nacos,tsdb-mysql),app!=rabbitmq"))
        .await
        .unwrap();
    assert_eq!(not_ts.items.len(), 46);
    let by_name = pods
        .list(&ListParams::default().fields(&format!("metadata.name={name}")))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);

    // The crash-looping pod: Running phase, not Ready, waiting CrashLoopBackOff with a restart.
    let auth = pods
        .list(&ListParams::default().labels("app=ts-auth-service"))
        .await
        .unwrap()
        .items
        .remove(0);
    let cs = &auth
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    assert!(!cs.ready);
    assert_eq!(cs.restart_count, 1);
    assert_eq!(
        cs.state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("CrashLoopBackOff")
    );

    let services: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(pods.clone().into_client(), NS);
    let svc = services.get("ts-order-service").await.unwrap();
    let spec = svc.spec.unwrap();
    assert_eq!(spec.ports.unwrap()[0].port, 12031);
    assert_eq!(spec.selector.unwrap()["app"], "ts-order-service");
    let all_svcs = services.list(&ListParams::default()).await.unwrap();
    assert_eq!(all_svcs.items.len(), 44);
    let all_ns: Api<Pod> = Api::all(pods.clone().into_client());
    assert_eq!(
        all_ns
            .list(&ListParams::default().fields("status.phase=Running"))
            .await
            .unwrap()
            .items
            .len(),
        49
    );
    let err = all_ns
        .list(&ListParams::default().fields("spec.bogus=1"))
        .await;
    assert_eq!(api_code(err), 400);
}

#[tokio::test]
async fn stresschaos_apply_inject_delete() {
    let kube = FakeKube::builder().train_ticket(NS).start();
    let dir = tempfile::tempdir().unwrap();
    let client = client(&kube, dir.path()).await;
    let api = chaos_api(&client, NS, "StressChaos", "stresschaos");
    let obj = stress("cpu-order", json!({"app": "ts-order-service"}));
    let applied = api
        .patch(
            "cpu-order",
            &PatchParams::apply("ttplan").force(),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap();
    assert!(applied.metadata.uid.is_some() && applied.metadata.resource_version.is_some());
    assert_eq!(applied.metadata.generation, Some(1));
    // Re-applying the same configuration is an update, not an error.
    api.patch(
        "cpu-order",
        &PatchParams::apply("ttplan").force(),
        &Patch::Apply(&obj),
    )
    .await
    .unwrap();

    let req = kube
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH")
        .unwrap();
    assert_eq!(
        req.path,
        format!("/apis/chaos-mesh.org/v1alpha1/namespaces/{NS}/stresschaos/cpu-order")
    );
    assert_eq!(
        req.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(req.query_param("fieldManager").as_deref(), Some("ttplan"));
    assert_eq!(req.query_param("force").as_deref(), Some("true"));

    let injected = poll("injection", async || {
        let o = api.get("cpu-order").await.unwrap();
        (condition(&o, "AllInjected").as_deref() == Some("True")).then_some(o)
    })
    .await;
    assert_eq!(condition(&injected, "Selected").as_deref(), Some("True"));
    assert_eq!(condition(&injected, "Paused").as_deref(), Some("False"));
    assert_eq!(injected.data["status"]["experiment"]["desiredPhase"], "Run");
    let records = injected.data["status"]["experiment"]["containerRecords"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(records.len(), 1);
    let pod = kube.pod_names(NS, "ts-order-service").remove(0);
    assert_eq!(records[0]["id"], format!("{NS}/{pod}/ts-order-service"));
    assert_eq!(records[0]["phase"], "Injected");
    assert_eq!(records[0]["events"][0]["operation"], "Apply");
    assert!(injected
        .metadata
        .finalizers
        .as_ref()
        .unwrap()
        .contains(&"chaos-mesh/records".to_string()));

    // Delete: 200 with the object (finalizer pending), then 404 once recovered.
    let deleted = api
        .delete("cpu-order", &DeleteParams::default())
        .await
        .unwrap();
    let left = deleted
        .left()
        .expect("object while the finalizer is pending");
    assert!(left.metadata.deletion_timestamp.is_some());
    poll("recovery", async || {
        api.get("cpu-order").await.is_err().then_some(())
    })
    .await;
    assert_eq!(api_code(api.get("cpu-order").await), 404);

    let timeline = kube.chaos_timeline();
    let ops: Vec<&str> = timeline.iter().map(|t| t.operation.as_str()).collect();
    assert_eq!(ops, ["Apply", "Recover"]);
    assert!(timeline[0].at <= timeline[1].at);
}

#[tokio::test]
async fn no_target_selected_emits_failed_event() {
    let kube = FakeKube::builder().train_ticket(NS).start();
    let dir = tempfile::tempdir().unwrap();
    let client = client(&kube, dir.path()).await;
    let api = chaos_api(&client, NS, "StressChaos", "stresschaos");
    let obj = stress("nobody", json!({"app": "no-such-service"}));
    api.patch(
        "nobody",
        &PatchParams::apply("ttplan").force(),
        &Patch::Apply(&obj),
    )
    .await
    .unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let ev = poll("Failed event", async || {
        events
            .list(&ListParams::default().fields("involvedObject.name=nobody,reason=Failed"))
            .await
            .unwrap()
            .items
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(
        ev.message.as_deref(),
        Some("Failed to select targets: no pod is selected")
    );
    let ann = ev.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        ann.get("chaos-mesh.org/activity").map(String::as_str),
        Some("select targets")
    );
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    assert_eq!(ev.involved_object.kind.as_deref(), Some("StressChaos"));
    assert!(ev.first_timestamp.is_some() && ev.last_timestamp.is_some());
    let o = api.get("nobody").await.unwrap();
    assert_eq!(condition(&o, "Selected").as_deref(), Some("False"));
    // Like the real records controller: no records at all, not an empty list.
    assert!(o.data["status"]["experiment"]["containerRecords"].is_null());
    // Deleting it still goes through the finalizer, which clears with nothing to recover.
    api.delete("nobody", &DeleteParams::default())
        .await
        .unwrap();
    poll("gone", async || {
        api.get("nobody").await.is_err().then_some(())
    })
    .await;
}

/// controllers/common/condition recomputes the conditions from the records, so before the
/// records step has selected anything every object shows all four conditions False; the
/// conditions then lag the records by one pass.
#[tokio::test]
async fn new_objects_pass_through_the_all_false_transient() {
    let kube = FakeKube::builder()
        .train_ticket(NS)
        .delays(Delays {
            chaos_inject: Duration::from_millis(800),
            ..Delays::default()
        })
        .start();
    let dir = tempfile::tempdir().unwrap();
    let client = client(&kube, dir.path()).await;
    let api = chaos_api(&client, NS, "StressChaos", "stresschaos");
    let obj = stress("slow", json!({"app": "ts-order-service"}));
    api.patch(
        "slow",
        &PatchParams::apply("ttplan").force(),
        &Patch::Apply(&obj),
    )
    .await
    .unwrap();
    let transient = poll("conditions", async || {
        let o = api.get("slow").await.unwrap();
        condition(&o, "Selected").is_some().then_some(o)
    })
    .await;
    for c in ["Selected", "AllInjected", "AllRecovered", "Paused"] {
        assert_eq!(condition(&transient, c).as_deref(), Some("False"), "{c}");
    }
    assert!(transient.data["status"]["experiment"]["containerRecords"].is_null());
    assert_eq!(
        transient.data["status"]["experiment"]["desiredPhase"],
        "Run"
    );
    let done = poll("injected", async || {
        let o = api.get("slow").await.unwrap();
        (condition(&o, "AllInjected").as_deref() == Some("True")).then_some(o)
    })
    .await;
    assert_eq!(
        done.data["status"]["experiment"]["containerRecords"][0]["phase"],
        "Injected"
    );
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let reasons: Vec<String> = events
        .list(&ListParams::default().fields("involvedObject.name=slow"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    for r in ["FinalizerInited", "Started", "Applied"] {
        assert!(reasons.iter().any(|x| x == r), "{r} in {reasons:?}");
    }
}

#[tokio::test]
async fn older_controllers_word_an_empty_selection_differently() {
    let kube = FakeKube::builder()
        .train_ticket(NS)
        .legacy_selection_message(true)
        .start();
    let dir = tempfile::tempdir().unwrap();
    let client = client(&kube, dir.path()).await;
    let api = chaos_api(&client, NS, "StressChaos", "stresschaos");
    let obj = stress("nobody", json!({"app": "no-such-service"}));
    api.patch(
        "nobody",
        &PatchParams::apply("ttplan").force(),
        &Patch::Apply(&obj),
    )
    .await
    .unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let ev = poll("Failed event", async || {
        events
            .list(&ListParams::default().fields("involvedObject.name=nobody,reason=Failed"))
            .await
            .unwrap()
            .items
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(
        ev.message.as_deref(),
        Some("Failed to select targets: no target has been selected")
    );
}

/// controllers/schedule/cron spawns `<schedule>-xxxxx` children labelled `managed-by`, gc/
/// keeps `historyLimit` finished ones.
#[tokio::test]
async fn a_schedule_spawns_labelled_children_and_collects_old_ones() {
    let kube = FakeKube::builder().train_ticket(NS).start();
    let dir = tempfile::tempdir().unwrap();
    let client = client(&kube, dir.path()).await;
    let api = chaos_api(&client, NS, "Schedule", "schedules");
    let obj = dynamic(json!({
        "apiVersion": "chaos-mesh.org/v1alpha1", "kind": "Schedule",
        "metadata": {"name": "kills", "namespace": NS},
        "spec": {"schedule": "@every 400ms", "type": "PodChaos", "historyLimit": 2,
                 "podChaos": {"action": "pod-kill", "mode": "one", "selector": {"labelSelectors": {"app": "ts-order-service"}}}}
    }));
    api.patch(
        "kills",
        &PatchParams::apply("ttplan").force(),
        &Patch::Apply(&obj),
    )
    .await
    .unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let spawned = poll("four children", async || {
        let evs: Vec<Event> = events
            .list(&ListParams::default().fields("involvedObject.name=kills,reason=Spawned"))
            .await
            .unwrap()
            .items;
        (evs.len() >= 4).then_some(evs)
    })
    .await;
    let first = spawned[0].message.clone().unwrap();
    let child = first.strip_prefix("Create new object: kills-").unwrap();
    assert_eq!(child.len(), 5, "{first}");
    let kids = kube.list("chaos-mesh.org", "podchaos");
    assert!(kids.len() <= 3, "history is collected: {}", kids.len());
    for k in &kids {
        assert_eq!(k["metadata"]["labels"]["managed-by"], "kills");
        assert_eq!(k["metadata"]["ownerReferences"][0]["kind"], "Schedule");
    }
    // The collected children's Applied events stay: which pod died when.
    poll("four Applied events", async || {
        let applied = kube
            .events(NS)
            .into_iter()
            .filter(|e| e["reason"] == "Applied" && e["involvedObject"]["kind"] == "PodChaos")
            .count();
        (applied >= 4).then_some(())
    })
    .await;
    api.delete("kills", &DeleteParams::default()).await.unwrap();
    poll("children gone", async || {
        kube.list("chaos-mesh.org", "podchaos")
            .is_empty()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn hanging_recovery_is_released_by_forced_clean_annotation() {
    let kube = FakeKube::builder()
        .train_ticket(NS)
        .recovery_hangs(true)
        .start();
    let dir = tempfile::tempdir().unwrap();
    let client = client(&kube, dir.path()).await;
    let api = chaos_api(&client, NS, "NetworkChaos", "networkchaos");
    let obj = dynamic(json!({
        "apiVersion": "chaos-mesh.org/v1alpha1", "kind": "NetworkChaos",
        "metadata": {"name": "delay", "namespace": NS},
        "spec": {"action": "delay", "mode": "one", "selector": {"labelSelectors": {"app": "ts-travel-service"}}, "delay": {"latency": "100ms"}}
    }));
    api.patch(
        "delay",
        &PatchParams::apply("ttplan").force(),
        &Patch::Apply(&obj),
    )
    .await
    .unwrap();
    let o = poll("injection", async || {
        let o = api.get("delay").await.unwrap();
        (condition(&o, "AllInjected").as_deref() == Some("True")).then_some(o)
    })
    .await;
    let pod = kube.pod_names(NS, "ts-travel-service").remove(0);
    assert_eq!(
        o.data["status"]["experiment"]["containerRecords"][0]["id"],
        format!("{NS}/{pod}")
    );

    // Pause, then resume.
    let pause = json!({"metadata": {"annotations": {"experiment.chaos-mesh.org/pause": "true"}}});
    api.patch("delay", &PatchParams::default(), &Patch::Merge(&pause))
        .await
        .unwrap();
    poll("paused", async || {
        (condition(&api.get("delay").await.unwrap(), "Paused").as_deref() == Some("True"))
            .then_some(())
    })
    .await;

    api.delete("delay", &DeleteParams::default()).await.unwrap();
    // Several recovery delays later it is still there.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(api
        .get("delay")
        .await
        .unwrap()
        .metadata
        .deletion_timestamp
        .is_some());
    let forced = json!({"metadata": {"annotations": {"chaos-mesh.chaos-mesh.org/cleanFinalizer": "forced"}}});
    api.patch("delay", &PatchParams::default(), &Patch::Merge(&forced))
        .await
        .unwrap();
    // The next pass's CleanReconciler honours the annotation although nothing recovered.
    poll("forced cleanup", async || {
        api.get("delay").await.is_err().then_some(())
    })
    .await;
    assert_eq!(api_code(api.get("delay").await), 404);
}

#[tokio::test]
async fn pod_kill_recreates_pod_and_broken_deployment_crash_loops() {
    let kube = FakeKube::builder()
        .train_ticket(NS)
        .pod(
            PodSeed::deployment("ts-food-service", NS)
                .container(
                    ContainerSeed::new("ts-food-service")
                        .log(LogSource::text("started\ncrashed: NPE")),
                )
                .broken(1),
        )
        .start();
    let dir = tempfile::tempdir().unwrap();
    let client = client(&kube, dir.path()).await;
    let before = kube.pod_names(NS, "ts-food-service");
    let api = chaos_api(&client, NS, "PodChaos", "podchaos");
    let obj = dynamic(json!({
        "apiVersion": "chaos-mesh.org/v1alpha1", "kind": "PodChaos",
        "metadata": {"name": "kill", "namespace": NS},
        "spec": {"action": "pod-kill", "mode": "one", "selector": {"labelSelectors": {"app": "ts-food-service"}}}
    }));
    api.patch(
        "kill",
        &PatchParams::apply("ttplan").force(),
        &Patch::Apply(&obj),
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let new_pod = poll("replacement pod", async || {
        let list = pods
            .list(&ListParams::default().labels("app=ts-food-service"))
            .await
            .unwrap();
        list.items
            .into_iter()
            .find(|p| p.metadata.name.as_ref() != before.first())
    })
    .await;
    let name = new_pod.metadata.name.clone().unwrap();
    let rs = new_pod.metadata.owner_references.as_ref().unwrap()[0]
        .name
        .clone();
    assert!(
        name.starts_with(&format!("{rs}-")) && name.len() == rs.len() + 6,
        "{name}"
    );
    let cs = &new_pod
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    assert_eq!(
        cs.state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("CrashLoopBackOff")
    );
    // The crashed instance's log is the previous log.
    let prev = pods
        .logs(
            &name,
            &LogParams {
                previous: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(prev, "started\ncrashed: NPE\n");
    let o = api.get("kill").await.unwrap();
    assert_eq!(condition(&o, "AllInjected").as_deref(), Some("True"));

    // Broken only once: killing it again gives a pod that becomes Ready.
    kube.delete_pod(NS, &name);
    poll("ready replacement", async || {
        let list = pods
            .list(&ListParams::default().labels("app=ts-food-service"))
            .await
            .unwrap();
        list.items.into_iter().find(|p| {
            p.metadata.name.as_deref() != Some(&name)
                && p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
    })
    .await;
}

#[tokio::test]
async fn logs_streaming_options_previous_and_events() {
    let t0 = chrono::Utc::now() - chrono::Duration::seconds(100);
    let kube = FakeKube::builder()
        .train_ticket(NS)
        .pod(
            PodSeed::deployment("ts-order-service", NS).container(
                ContainerSeed::new("ts-order-service")
                    .log(
                        LogSource::generated(100_000, 120)
                            .starting_at(t0, Duration::from_millis(1)),
                    )
                    .restarts(2)
                    .previous_log(LogSource::text("old instance\nboom")),
            ),
        )
        .pod(
            PodSeed::new("two-containers", NS)
                .container(ContainerSeed::new("a"))
                .container(ContainerSeed::new("b"))
                .disappear_after_log_requests(2),
        )
        .start();
    kube.add_event(
        NS,
        "Pod",
        "two-containers",
        "Pulled",
        "Container image pulled",
        "Normal",
    );
    let dir = tempfile::tempdir().unwrap();
    let client = client(&kube, dir.path()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let name = kube.pod_names(NS, "ts-order-service").remove(0);

    let mut reader = pods
        .log_stream(
            &name,
            &LogParams {
                container: Some("ts-order-service".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // Read with a fixed buffer, as a collector streaming to disk would. (futures' `read_to_end`
    // re-zeroes its whole spare capacity after every Pending: quadratic on a 12 MB stream.)
    let (mut all, mut buf) = (Vec::new(), vec![0u8; 64 * 1024]);
    loop {
        let n = reader.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
    }
    assert_eq!(all.len(), 100_000 * 121);
    assert!(all.starts_with(format!("{}\n", LogSource::generated_line(0, 120)).as_bytes()));

    let tail = pods
        .logs(
            &name,
            &LogParams {
                tail_lines: Some(3),
                timestamps: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let lines: Vec<&str> = tail.lines().collect();
    assert_eq!(lines.len(), 3);
    let (ts, text) = lines[2].split_once(' ').unwrap();
    assert!(
        ts.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(ts).is_ok(),
        "{ts}"
    );
    assert_eq!(text, LogSource::generated_line(99_999, 120));

    // sinceTime (whole seconds): 50 s after t0 → at most the last ~50 000 lines.
    let since: k8s_openapi::jiff::Timestamp = (t0 + chrono::Duration::seconds(50))
        .to_rfc3339()
        .parse()
        .unwrap();
    let recent = pods
        .logs(
            &name,
            &LogParams {
                since_time: Some(since),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let n = recent.lines().count();
    assert!((49_000..=51_000).contains(&n), "{n}");
    let limited = pods
        .logs(
            &name,
            &LogParams {
                limit_bytes: Some(1000),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(limited.len(), 1000);

    let prev = pods
        .logs(
            &name,
            &LogParams {
                previous: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(prev, "old instance\nboom\n");
    let other = kube.pod_names(NS, "ts-route-service").remove(0);
    let err = pods
        .logs(
            &other,
            &LogParams {
                previous: true,
                ..Default::default()
            },
        )
        .await;
    match err {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 400);
            assert_eq!(s.message, format!("previous terminated container \"ts-route-service\" in pod \"{other}\" not found"));
        }
        other => panic!("{other:?}"),
    }

    // Multi-container pod: container required; it disappears after 2 log requests.
    assert_eq!(
        api_code(pods.logs("two-containers", &LogParams::default()).await),
        400
    );
    pods.logs(
        "two-containers",
        &LogParams {
            container: Some("a".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    pods.logs(
        "two-containers",
        &LogParams {
            container: Some("b".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        api_code(
            pods.logs(
                "two-containers",
                &LogParams {
                    container: Some("a".into()),
                    ..Default::default()
                }
            )
            .await
        ),
        404
    );

    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let list = events.list(&ListParams::default()).await.unwrap();
    let pulled = list
        .items
        .iter()
        .find(|e| e.reason.as_deref() == Some("Pulled"))
        .unwrap();
    assert_eq!(
        pulled.involved_object.name.as_deref(),
        Some("two-containers")
    );
    assert_eq!(pulled.count, Some(1));
    assert!(list
        .items
        .iter()
        .any(|e| e.reason.as_deref() == Some("Scheduled")));

    // The same events through events.k8s.io/v1.
    let v1: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), NS);
    let list = v1
        .list(&ListParams::default().fields("regarding.name=two-containers,reason=Pulled"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(
        list.items[0].note.as_deref(),
        Some("Container image pulled")
    );
    assert_eq!(list.items[0].deprecated_count, Some(1));
}

#[tokio::test]
async fn portforward_round_trip_and_missing_target() {
    // A local "JVM agent": replies to 5 bytes with them upper-cased; on "quit!" it closes the
    // connection itself, otherwise it waits for the client to close (like JaCoCo's tcpserver).
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = echo.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 5];
                s.read_exact(&mut buf).await.unwrap();
                s.write_all(&buf.to_ascii_uppercase()).await.unwrap();
                if &buf != b"quit!" {
                    let mut rest = Vec::new();
                    let _ = s.read_to_end(&mut rest).await;
                }
                let _ = s.shutdown().await;
            });
        }
    });
    let kube = FakeKube::builder()
        .train_ticket(NS)
        .forward("ts-order-service", 6300, &echo_addr)
        .start();
    let dir = tempfile::tempdir().unwrap();
    let client = client(&kube, dir.path()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let name = kube.pod_names(NS, "ts-order-service").remove(0);

    // The client closes first: a clean shutdown in both directions.
    let mut pf = pods.portforward(&name, &[6300]).await.unwrap();
    let mut stream = pf.take_stream(6300).unwrap();
    stream.write_all(b"hello").await.unwrap();
    let mut out = [0u8; 5];
    stream.read_exact(&mut out).await.unwrap();
    assert_eq!(&out, b"HELLO");
    drop(stream);
    pf.join().await.unwrap();
    let pf_req = kube
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/portforward"))
        .unwrap();
    assert_eq!(
        pf_req.path,
        format!("/api/v1/namespaces/{NS}/pods/{name}/portforward")
    );
    assert_eq!(pf_req.query_param("ports").as_deref(), Some("6300"));

    // The pod side closes first: the client reads to EOF. (kube's `join` then reports
    // SendAfterClosing, as it does against a real kubelet, which closes the WebSocket too.)
    let mut pf = pods.portforward(&name, &[6300]).await.unwrap();
    let mut stream = pf.take_stream(6300).unwrap();
    stream.write_all(b"quit!").await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    assert_eq!(out, b"QUIT!");

    // No target for this pod/port: the kubelet's error arrives on the error channel.
    let other = kube.pod_names(NS, "ts-user-service").remove(0);
    let mut pf = pods.portforward(&other, &[6300]).await.unwrap();
    let err = pf.take_error(6300).unwrap().await.expect("error message");
    assert!(
        err.starts_with("error forwarding port 6300 to pod"),
        "{err}"
    );

    assert_eq!(
        api_code(pods.portforward("no-such-pod", &[6300]).await.map(|_| ())),
        404
    );
}

#[tokio::test]
async fn chaosblade_operator_lifecycle() {
    let kube = FakeKube::builder()
        .train_ticket(NS)
        .chaosblade(true)
        .start();
    let dir = tempfile::tempdir().unwrap();
    let client = client(&kube, dir.path()).await;
    let api = blade_api(&client);
    let pod = kube.pod_names(NS, "ts-order-service").remove(0);
    let blade = |name: &str, pod: &str| {
        dynamic(json!({
            "apiVersion": "chaosblade.io/v1alpha1", "kind": "ChaosBlade",
            "metadata": {"name": name},
            "spec": {"experiments": [{
                "scope": "container", "target": "jvm", "action": "delay", "desc": "test",
                "matchers": [
                    {"name": "names", "value": [pod]}, {"name": "namespace", "value": [NS]},
                    {"name": "container-names", "value": ["ts-order-service"]},
                    {"name": "classname", "value": ["a.B"]}, {"name": "methodname", "value": ["m"]},
                ],
            }]},
        }))
    };
    api.create(&Default::default(), &blade("0123456789abcdef", &pod))
        .await
        .unwrap();
    let o = api.get("0123456789abcdef").await.unwrap();
    assert_eq!(o.data["status"]["phase"], "Initialized");
    let running = poll("Running", async || {
        let o = api.get("0123456789abcdef").await.unwrap();
        (o.data["status"]["phase"] == "Running").then_some(o)
    })
    .await;
    let res = &running.data["status"]["expStatuses"][0]["resStatuses"][0];
    assert_eq!(res["kind"], "container");
    assert!(res["identifier"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{NS}/")));
    assert_eq!(
        running.metadata.finalizers.as_deref(),
        Some(&["finalizer.chaosblade.io".to_string()][..])
    );

    api.delete("0123456789abcdef", &DeleteParams::default())
        .await
        .unwrap();
    poll("destroyed", async || {
        api.get("0123456789abcdef").await.is_err().then_some(())
    })
    .await;

    api.create(
        &Default::default(),
        &blade("fedcba9876543210", "no-such-pod"),
    )
    .await
    .unwrap();
    let failed = poll("Error", async || {
        let o = api.get("fedcba9876543210").await.unwrap();
        (o.data["status"]["phase"] == "Error").then_some(o)
    })
    .await;
    assert_eq!(failed.data["status"]["expStatuses"][0]["success"], false);
    assert_eq!(
        api_code(
            api.create(&Default::default(), &blade("fedcba9876543210", "x"))
                .await
        ),
        409
    );
}

#[tokio::test]
async fn schedule_creates_children_and_takes_them_along() {
    let kube = FakeKube::builder().train_ticket(NS).start();
    let dir = tempfile::tempdir().unwrap();
    let client = client(&kube, dir.path()).await;
    let schedules = chaos_api(&client, NS, "Schedule", "schedules");
    let obj = dynamic(json!({
        "apiVersion": "chaos-mesh.org/v1alpha1", "kind": "Schedule",
        "metadata": {"name": "kill-every", "namespace": NS},
        "spec": {"schedule": "@every 200ms", "type": "PodChaos", "concurrencyPolicy": "Allow", "historyLimit": 5,
                 "podChaos": {"action": "pod-kill", "mode": "one", "selector": {"labelSelectors": {"app": "ts-price-service"}}}}
    }));
    schedules
        .patch(
            "kill-every",
            &PatchParams::apply("ttplan").force(),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap();
    let podchaos = chaos_api(&client, NS, "PodChaos", "podchaos");
    poll("two children", async || {
        (podchaos
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len()
            >= 2)
            .then_some(())
    })
    .await;
    let s = schedules.get("kill-every").await.unwrap();
    assert!(s.data["status"]["active"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));
    schedules
        .delete("kill-every", &DeleteParams::default())
        .await
        .unwrap();
    poll("children gone", async || {
        podchaos
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
            .then_some(())
    })
    .await;
}

/// Raw HTTP from a plain (blocking) test: what ttplan's subprocess tests see without a client.
fn raw(
    kube: &FakeKube,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let mut s = std::net::TcpStream::connect(kube.addr()).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code: u16 = resp[9..12].parse().unwrap();
    let body = resp.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (code, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn raw_http_errors_are_status_objects() {
    let kube = FakeKube::builder().train_ticket(NS).start();
    let auth = format!("Bearer {}", kube.token());
    let auth = [("Authorization", auth.as_str())];

    let (code, body) = raw(&kube, "GET", "/api/v1/pods", &[], "");
    assert_eq!((code, body["reason"].as_str()), (401, Some("Unauthorized")));

    let (code, body) = raw(&kube, "GET", "/apis/nope.io/v1/things", &auth, "");
    assert_eq!(code, 404);
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["status"], "Failure");

    let path = format!("/apis/chaos-mesh.org/v1alpha1/namespaces/{NS}/stresschaos/x");
    let yaml = format!("apiVersion: chaos-mesh.org/v1alpha1\nkind: StressChaos\nmetadata:\n  name: x\n  namespace: {NS}\nspec:\n  mode: one\n");
    let apply = [auth[0], ("Content-Type", "application/apply-patch+yaml")];
    let (code, body) = raw(&kube, "PATCH", &path, &apply, &yaml);
    assert_eq!(code, 422, "{body}");
    assert!(body["message"].as_str().unwrap().contains("fieldManager"));
    // dryRun: the same answer, nothing stored.
    let (code, _) = raw(
        &kube,
        "PATCH",
        &format!("{path}?fieldManager=ttplan&dryRun=All"),
        &apply,
        &yaml,
    );
    assert_eq!(code, 201);
    assert_eq!(raw(&kube, "GET", &path, &auth, "").0, 404);
    let (code, body) = raw(
        &kube,
        "PATCH",
        &format!("{path}?fieldManager=ttplan"),
        &apply,
        &yaml,
    );
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["metadata"]["managedFields"][0]["manager"], "ttplan");

    let create = [auth[0], ("Content-Type", "application/json")];
    let obj = json!({"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "StressChaos", "metadata": {"name": "x"}, "spec": {}});
    let (code, body) = raw(
        &kube,
        "POST",
        &format!("/apis/chaos-mesh.org/v1alpha1/namespaces/{NS}/stresschaos"),
        &create,
        &obj.to_string(),
    );
    assert_eq!(code, 409);
    assert_eq!(body["reason"], "AlreadyExists");
    assert_eq!(
        body["details"],
        json!({"name": "x", "group": "chaos-mesh.org", "kind": "stresschaos"})
    );

    let (code, body) = raw(
        &kube,
        "GET",
        &format!("/api/v1/namespaces/{NS}/pods/nope"),
        &auth,
        "",
    );
    assert_eq!(code, 404);
    assert_eq!(body["message"], "pods \"nope\" not found");

    // Workflow has a status subresource; chaos kinds do not.
    let wf = format!("/apis/chaos-mesh.org/v1alpha1/namespaces/{NS}/workflows");
    let obj = json!({"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "Workflow", "metadata": {"name": "wf"}, "spec": {"entry": "e", "templates": []}});
    assert_eq!(raw(&kube, "POST", &wf, &create, &obj.to_string()).0, 201);
    let (_, current) = raw(&kube, "GET", &format!("{wf}/wf"), &auth, "");
    let mut with_status = current.clone();
    with_status["status"] = json!({"conditions": [{"type": "Accomplished", "status": "False"}]});
    let (code, body) = raw(
        &kube,
        "PUT",
        &format!("{wf}/wf/status"),
        &create,
        &with_status.to_string(),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"]["conditions"][0]["type"], "Accomplished");
    assert_eq!(
        raw(
            &kube,
            "GET",
            &format!("/apis/chaos-mesh.org/v1alpha1/namespaces/{NS}/stresschaos/x/status"),
            &auth,
            ""
        )
        .0,
        404
    );

    // Merge patch, then DELETE of a custom resource without finalizers answers a Success Status.
    let merge = [auth[0], ("Content-Type", "application/merge-patch+json")];
    let (code, body) = raw(
        &kube,
        "PATCH",
        &format!("{wf}/wf"),
        &merge,
        r#"{"metadata":{"annotations":{"a":"b"}}}"#,
    );
    assert_eq!(
        (code, body["metadata"]["annotations"]["a"].as_str()),
        (200, Some("b"))
    );
    let (code, body) = raw(&kube, "DELETE", &format!("{wf}/wf"), &auth, "");
    assert_eq!(
        (code, body["kind"].as_str(), body["status"].as_str()),
        (200, Some("Status"), Some("Success"))
    );
    assert_eq!(raw(&kube, "GET", &format!("{wf}/wf"), &auth, "").0, 404);

    let (code, body) = raw(&kube, "GET", "/apis", &auth, "");
    assert_eq!(code, 200);
    assert!(body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["name"] == "chaos-mesh.org"));
    let (code, body) = raw(&kube, "GET", "/apis/chaos-mesh.org/v1alpha1", &auth, "");
    assert_eq!(code, 200);
    assert!(body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "stresschaos"
            && r["kind"] == "StressChaos"
            && r["namespaced"] == true));
    assert!(kube.requests().len() >= 8);
}

#[tokio::test]
async fn watch_streams_changes_after_a_list() {
    use futures_util::{StreamExt, TryStreamExt};
    use kube::api::{WatchEvent, WatchParams};
    let kube = FakeKube::builder().train_ticket(NS).start();
    let dir = tempfile::tempdir().unwrap();
    let pods: Api<Pod> = Api::namespaced(client(&kube, dir.path()).await, NS);
    let lp = ListParams::default().labels("app=ts-order-service");
    let list = pods.list(&lp).await.unwrap();
    let old = list.items[0].metadata.name.clone().unwrap();
    let rv = list.metadata.resource_version.unwrap();

    let wp = WatchParams::default()
        .labels("app=ts-order-service")
        .timeout(10);
    let mut events = pods.watch(&wp, &rv).await.unwrap().boxed();
    kube.delete_pod(NS, &old);
    let mut seen = Vec::new();
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(5), events.try_next())
        .await
        .expect("watch event in time")
        .unwrap()
    {
        match ev {
            WatchEvent::Added(p) => seen.push(format!("ADDED {}", p.metadata.name.unwrap())),
            WatchEvent::Modified(p) => seen.push(format!("MODIFIED {}", p.metadata.name.unwrap())),
            WatchEvent::Deleted(p) => seen.push(format!("DELETED {}", p.metadata.name.unwrap())),
            other => panic!("{other:?}"),
        }
        // Replacement created (Pending), then Ready.
        if seen.iter().any(|s| s.starts_with("MODIFIED")) {
            break;
        }
    }
    assert_eq!(seen[0], format!("DELETED {old}"));
    assert!(seen[1].starts_with("ADDED ts-order-service-"), "{seen:?}");
    assert!(
        seen[2].starts_with("MODIFIED ts-order-service-"),
        "{seen:?}"
    );

    // resourceVersion "0": the current objects first, as ADDED.
    let mut events = pods.watch(&wp, "0").await.unwrap().boxed();
    match events.try_next().await.unwrap() {
        Some(WatchEvent::Added(p)) => {
            assert!(p.metadata.name.unwrap().starts_with("ts-order-service-"))
        }
        other => panic!("{other:?}"),
    }
}

/// Re-applying a Deployment with a changed template (what the campaign's `instrument` +
/// `kube-apply` do) rolls its pod over: a new ReplicaSet, a new pod under a new name that
/// becomes Ready, the old pod gone and not replaced; the same manifest again changes nothing.
#[tokio::test]
async fn server_side_apply_of_a_changed_deployment_rolls_its_pods_over() {
    let kube = FakeKube::builder()
        .pod(PodSeed::deployment("ts-order-service", NS))
        .start();
    let dir = tempfile::tempdir().unwrap();
    let client = client(&kube, dir.path()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let names = async || -> Vec<(String, bool)> {
        pods.list(&ListParams::default().labels("app=ts-order-service"))
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|p| {
                let ready = p
                    .status
                    .and_then(|s| s.conditions)
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                (p.metadata.name.unwrap(), ready)
            })
            .collect()
    };
    let before = names().await;
    assert_eq!(before.len(), 1, "{before:?}");
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"));
    let deployments: Api<DynamicObject> = Api::namespaced_with(client.clone(), NS, &ar);
    let manifest = |agent: bool| {
        let mut c =
            json!({"name": "ts-order-service", "image": "codewisdom/ts-order-service:1.0.0"});
        if agent {
            c["env"] = json!([{"name": "JAVA_TOOL_OPTIONS", "value": "-javaagent:/jacoco/jacocoagent.jar=output=tcpserver"}]);
        }
        dynamic(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "ts-order-service", "namespace": NS},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "ts-order-service"}},
                     "template": {"metadata": {"labels": {"app": "ts-order-service"}},
                                  "spec": {"containers": [c]}}},
        }))
    };
    let pp = PatchParams::apply("ttplan").force();
    deployments
        .patch("ts-order-service", &pp, &Patch::Apply(manifest(true)))
        .await
        .unwrap();
    let after = poll("the new pod Ready and the old one gone", async || {
        let now = names().await;
        (now.len() == 1 && now[0].1 && now[0].0 != before[0].0).then_some(now)
    })
    .await;
    let rs: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        NS,
        &ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "ReplicaSet")),
    );
    // The new pod runs the new template: the agent's variable is in its container.
    let new_pod = pods.get(&after[0].0).await.unwrap();
    let env = new_pod.spec.unwrap().containers[0].env.clone().unwrap();
    assert_eq!(env[0].name, "JAVA_TOOL_OPTIONS");
    let sets = rs.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(sets.len(), 2, "the old ReplicaSet stays, scaled to 0");
    let old = sets
        .iter()
        .find(|s| !after[0].0.starts_with(s.metadata.name.as_deref().unwrap()))
        .unwrap();
    assert_eq!(old.data["spec"]["replicas"], 0);
    let history = kube.pod_history();
    let old_life = history.iter().find(|l| l.name == before[0].0).unwrap();
    assert!(old_life.deleted.is_some(), "{old_life:?}");
    // The same manifest again: no rollout.
    deployments
        .patch("ts-order-service", &pp, &Patch::Apply(manifest(true)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(names().await, after);
}
