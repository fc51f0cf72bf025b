//! The sandbox's self-tests through its public surface, as ttplan uses it: the real `kube`
//! client against the fake API server, and the simulated Train-Ticket API's answers under
//! faults. They live in the library's test binary so the workspace links one test executable
//! per crate (issue 13).

mod kube_fake;
mod sim_traffic;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::Client;

/// A Chaos Mesh kind in `namespace`, as ttplan's client reaches it.
fn chaos_api(client: &Client, namespace: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("chaos-mesh.org", "v1alpha1", kind),
        plural,
    );
    Api::namespaced_with(client.clone(), namespace, &ar)
}

/// ChaosBlade objects (cluster-scoped).
fn blade_api(client: &Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("chaosblade.io", "v1alpha1", "ChaosBlade"),
        "chaosblades",
    );
    Api::all_with(client.clone(), &ar)
}
