//! Finding a collector's backend (Prometheus, SkyWalking OAP) as a Service in the cluster, the
//! last resort after the plan and the environment.
//!
//! The address prefers what is reachable from outside the cluster — a LoadBalancer's ingress,
//! then `externalIPs` — and falls back to the in-cluster DNS name, which works when ttplan
//! runs inside the cluster.

use ::kube::api::{Api, ListParams};
use k8s_openapi::api::core::v1::Service;

use super::{Kube, KubeError};

/// One way to recognise the Service: a label selector, or a `namespace/name`.
#[derive(Debug, Clone, Copy)]
pub enum Lookup {
    Labels(&'static str),
    Named {
        namespace: &'static str,
        name: &'static str,
    },
}

/// What to look for and which port to prefer.
#[derive(Debug, Clone, Copy)]
pub struct ServiceQuery {
    /// Tried in order; the first that finds a Service wins.
    pub lookups: &'static [Lookup],
    /// Port numbers (or names) preferred, in order; else the Service's first port.
    pub ports: &'static [&'static str],
}

/// SkyWalking's OAP serves GraphQL on its REST port 12800; the UI proxies `/graphql` on 8080.
pub const SKYWALKING: ServiceQuery = ServiceQuery {
    lookups: &[
        Lookup::Labels("component=skywalking"),
        Lookup::Labels("app=skywalking"),
        Lookup::Labels("app.kubernetes.io/name=skywalking"),
        Lookup::Named {
            namespace: "skywalking",
            name: "skywalking-oap",
        },
        Lookup::Named {
            namespace: "default",
            name: "skywalking-oap",
        },
    ],
    ports: &["12800", "rest", "8080", "http"],
};

pub const PROMETHEUS: ServiceQuery = ServiceQuery {
    lookups: &[
        Lookup::Labels("app=prometheus"),
        Lookup::Labels("app.kubernetes.io/name=prometheus"),
        Lookup::Named {
            namespace: "monitoring",
            name: "prometheus-k8s",
        },
    ],
    ports: &["9090", "web", "http"],
};

/// The base URL of the first matching Service and how it was found.
///
/// # Errors
/// Unreachable cluster or API errors; `Ok(None)` when no Service matches.
pub async fn find_service(
    kube: &Kube,
    q: &ServiceQuery,
) -> Result<Option<(String, String)>, KubeError> {
    for lookup in q.lookups {
        let found = match lookup {
            Lookup::Labels(sel) => {
                let api: Api<Service> = Api::all(kube.client.clone());
                let mut list = api
                    .list(&ListParams::default().labels(sel))
                    .await
                    .map_err(kube.err(format!("listing Services labelled {sel}")))?
                    .items;
                list.sort_by_key(|s| (s.metadata.namespace.clone(), s.metadata.name.clone()));
                list.into_iter()
                    .next()
                    .map(|s| (s, format!("Service labelled {sel}")))
            }
            Lookup::Named { namespace, name } => {
                let api: Api<Service> = Api::namespaced(kube.client.clone(), namespace);
                api.get_opt(name)
                    .await
                    .map_err(kube.err(format!("reading Service {namespace}/{name}")))?
                    .map(|s| (s, format!("Service {namespace}/{name}")))
            }
        };
        if let Some((svc, how)) = found {
            if let Some(url) = service_url(&svc, q.ports) {
                let ns = svc.metadata.namespace.clone().unwrap_or_default();
                let name = svc.metadata.name.clone().unwrap_or_default();
                return Ok(Some((url, format!("discovered: {how} ({ns}/{name})"))));
            }
        }
    }
    Ok(None)
}

/// `http://host:port` for a Service: LoadBalancer ingress, else an external IP, else its
/// cluster DNS name.
pub fn service_url(svc: &Service, preferred: &[&str]) -> Option<String> {
    let spec = svc.spec.as_ref()?;
    let ports = spec.ports.as_ref()?;
    let port = preferred
        .iter()
        .find_map(|want| {
            ports
                .iter()
                .find(|p| p.port.to_string() == *want || p.name.as_deref() == Some(want))
        })
        .or_else(|| ports.first())?;
    let ingress = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .and_then(|i| i.first())
        .and_then(|i| i.ip.clone().or_else(|| i.hostname.clone()));
    let external = spec
        .external_ips
        .as_ref()
        .and_then(|ips| ips.first().cloned());
    let host = ingress.or(external).unwrap_or_else(|| {
        format!(
            "{}.{}.svc",
            svc.metadata.name.as_deref().unwrap_or_default(),
            svc.metadata.namespace.as_deref().unwrap_or("default")
        )
    });
    Some(format!("http://{host}:{}", port.port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn urls_prefer_reachable_addresses_and_named_ports() {
        let base = serde_json::json!({"metadata": {"name": "oap", "namespace": "sw"},
            "spec": {"ports": [{"name": "grpc", "port": 11800}, {"name": "rest", "port": 12800}]}});
        assert_eq!(
            service_url(&svc(base.clone()), SKYWALKING.ports).as_deref(),
            Some("http://oap.sw.svc:12800")
        );
        let mut ext = base.clone();
        ext["spec"]["externalIPs"] = serde_json::json!(["10.1.2.3"]);
        assert_eq!(
            service_url(&svc(ext.clone()), SKYWALKING.ports).as_deref(),
            Some("http://10.1.2.3:12800")
        );
        ext["status"] =
            serde_json::json!({"loadBalancer": {"ingress": [{"hostname": "lb.example"}]}});
        assert_eq!(
            service_url(&svc(ext), SKYWALKING.ports).as_deref(),
            Some("http://lb.example:12800")
        );
        let mut other = base;
        other["spec"]["ports"] = serde_json::json!([{"port": 9999}]);
        assert_eq!(
            service_url(&svc(other), SKYWALKING.ports).as_deref(),
            Some("http://oap.sw.svc:9999")
        );
    }
}
