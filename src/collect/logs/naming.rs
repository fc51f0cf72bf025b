//! File names of the log dataset and the arithmetic of the collection window — pure functions,
//! so the layout the published dataset depends on is pinned by unit tests.
//!
//! Layout under the log folder (`log_data/<EXP_NAME>` by default):
//! ```text
//! <pod>/<pod>_<ts>.log                      the default container (`kubectl logs POD`): every
//!                                           pod whose container ever started has it
//! <pod>/<pod>_previous_<ts>.log             its previous instance, only when not empty
//! <pod>/<pod>_<container>_<ts>.log          several containers: also one file per container…
//! <pod>/<pod>_<container>_previous_<ts>.log …and per previous instance (extras)
//! kubernetes_events_<ts>.json
//! log_collection_report_<ts>.json
//! ```
//! `<ts>` is `%Y%m%d_%H%M%S` in UTC, the shape of the published dataset. Pod and container
//! names are DNS labels/subdomains (no `_`), so a loader splitting on `_<ts>.log` or
//! `_previous_` reads the pod name of the pod-level files.

use chrono::{DateTime, Utc};

/// Which instance of a container a log belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Instance {
    /// The running (or last) instance.
    Current,
    /// The instance before the last restart (`previous=true`).
    Previous,
}

/// The collection's `<ts>` ([`crate::collect::file_ts`]), shared by every file of one
/// collection.
pub fn collection_ts(at: DateTime<Utc>) -> String {
    crate::collect::file_ts(at)
}

/// The annotation kubectl reads for the container of `kubectl logs POD`.
pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

/// The container `kubectl logs POD` reads: the one the default-container annotation names when
/// the pod has it, else the first (kubectl's `podcmd.FindOrDefaultContainerByName`; an
/// annotation naming no container of the pod falls back to the first, as current kubectl does).
pub fn default_container<'a>(
    annotation: Option<&str>,
    containers: &'a [String],
) -> Option<&'a str> {
    annotation
        .and_then(|a| containers.iter().find(|c| c.as_str() == a))
        .or_else(|| containers.first())
        .map(String::as_str)
}

/// The file name of one container log. `container` is named only for `per_container` files,
/// the extras of pods with several containers; the pod-level `<pod>_<ts>.log` is the default
/// container's.
pub fn log_file_name(
    pod: &str,
    container: &str,
    per_container: bool,
    instance: Instance,
    ts: &str,
) -> String {
    let mut name = String::with_capacity(pod.len() + container.len() + ts.len() + 16);
    name.push_str(pod);
    if per_container {
        name.push('_');
        name.push_str(container);
    }
    if instance == Instance::Previous {
        name.push_str("_previous");
    }
    name.push('_');
    name.push_str(ts);
    name.push_str(".log");
    name
}

pub fn events_file_name(ts: &str) -> String {
    format!("kubernetes_events_{ts}.json")
}

pub fn report_file_name(ts: &str) -> String {
    format!("log_collection_report_{ts}.json")
}

/// A name the API server returned, checked before it becomes a path component. Kubernetes
/// validates names, but a path must never be steered outside the log folder by one.
pub fn safe_component(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && !name.starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn single_container_files_keep_the_dataset_names() {
        let ts = collection_ts(t("2026-03-01T10:05:09.987Z"));
        assert_eq!(ts, "20260301_100509");
        assert_eq!(
            log_file_name(
                "ts-order-service-7d9f-abcde",
                "ts-order-service",
                false,
                Instance::Current,
                &ts
            ),
            "ts-order-service-7d9f-abcde_20260301_100509.log"
        );
        assert_eq!(
            log_file_name("nacos-0", "nacos", false, Instance::Previous, &ts),
            "nacos-0_previous_20260301_100509.log"
        );
    }

    #[test]
    fn several_containers_are_named_by_container() {
        let ts = "20260301_100509";
        assert_eq!(
            log_file_name("web-0", "istio-proxy", true, Instance::Current, ts),
            "web-0_istio-proxy_20260301_100509.log"
        );
        assert_eq!(
            log_file_name("web-0", "app", true, Instance::Previous, ts),
            "web-0_app_previous_20260301_100509.log"
        );
        assert_eq!(
            events_file_name(ts),
            "kubernetes_events_20260301_100509.json"
        );
        assert_eq!(
            report_file_name(ts),
            "log_collection_report_20260301_100509.json"
        );
    }

    #[test]
    fn the_default_container_is_the_annotated_one_else_the_first() {
        let cs = vec!["mysql".to_string(), "xenon".to_string()];
        assert_eq!(default_container(None, &cs), Some("mysql"));
        assert_eq!(default_container(Some("xenon"), &cs), Some("xenon"));
        assert_eq!(default_container(Some("gone"), &cs), Some("mysql"));
        assert_eq!(default_container(Some("x"), &[]), None);
    }

    #[test]
    fn unsafe_names_are_refused() {
        assert!(safe_component("ts-order-service-1"));
        for bad in ["", ".", "..", "../x", "a/b", ".hidden"] {
            assert!(!safe_component(bad), "{bad:?}");
        }
    }
}
