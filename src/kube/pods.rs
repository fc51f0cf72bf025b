//! Selecting pods — and, for the kubernetes probe, any namespaced objects — the way every step
//! names them: a namespace, an optional label selector, optional name prefixes. Logs, coverage,
//! `wait-ready` and the kubernetes probe all list through [`PodQuery`].

use ::kube::api::{Api, ApiResource, DynamicObject, ListParams};
use k8s_openapi::api::core::v1::Pod;

use super::{Kube, KubeError};

/// Which objects a step means.
#[derive(Debug, Clone, Copy)]
pub struct PodQuery<'a> {
    pub namespace: &'a str,
    /// A label selector (`app=ts-order-service`, `tier in (web)`); blank means none.
    pub selector: Option<&'a str>,
    /// Only names starting with one of these (every name when empty).
    pub name_prefixes: &'a [String],
}

impl PodQuery<'_> {
    /// The list request: the label selector, when there is one.
    pub fn list_params(&self) -> ListParams {
        match self.selector.map(str::trim).filter(|s| !s.is_empty()) {
            Some(sel) => ListParams::default().labels(sel),
            None => ListParams::default(),
        }
    }

    /// Whether `name` passes the name prefixes.
    pub fn selects(&self, name: &str) -> bool {
        super::name_selected(name, self.name_prefixes)
    }

    /// The selected pods, sorted by name.
    ///
    /// # Errors
    /// The list request failed (`listing pods in namespace <ns>`).
    pub async fn pods(&self, kube: &Kube) -> Result<Vec<Pod>, KubeError> {
        let api: Api<Pod> = Api::namespaced(kube.client.clone(), self.namespace);
        let list = api
            .list(&self.list_params())
            .await
            .map_err(kube.err(format!("listing pods in namespace {}", self.namespace)))?;
        Ok(self.keep(list.items, |p| p.metadata.name.as_deref()))
    }

    /// The selected objects of resource `ar`, sorted by name.
    ///
    /// # Errors
    /// The list request failed (`listing <plural> in <ns>`).
    pub async fn objects(
        &self,
        kube: &Kube,
        ar: &ApiResource,
    ) -> Result<Vec<DynamicObject>, KubeError> {
        let list = kube
            .dynamic(ar, Some(self.namespace))
            .list(&self.list_params())
            .await
            .map_err(kube.err(format!("listing {} in {}", ar.plural, self.namespace)))?;
        Ok(self.keep(list.items, |o| o.metadata.name.as_deref()))
    }

    fn keep<T>(&self, mut items: Vec<T>, name: impl Fn(&T) -> Option<&str>) -> Vec<T> {
        items.retain(|i| self.selects(name(i).unwrap_or("")));
        items.sort_by(|a, b| name(a).cmp(&name(b)));
        items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_selectors_select_everything_and_prefixes_filter_names() {
        let prefixes = vec!["ts-".to_string(), "nacos".to_string()];
        let q = PodQuery {
            namespace: "tt",
            selector: Some("  "),
            name_prefixes: &prefixes,
        };
        assert_eq!(q.list_params().label_selector, None);
        assert!(q.selects("ts-order-1") && q.selects("nacos-0") && !q.selects("mysql-0"));
        let names = q.keep(vec!["ts-b", "mysql-0", "ts-a", "nacos-0"], |n: &&str| {
            Some(*n)
        });
        assert_eq!(names, ["nacos-0", "ts-a", "ts-b"]);
        let q = PodQuery {
            selector: Some("app in (a, b)"),
            name_prefixes: &[],
            ..q
        };
        assert_eq!(
            q.list_params().label_selector.as_deref(),
            Some("app in (a, b)")
        );
        assert!(q.selects("anything"));
    }
}
