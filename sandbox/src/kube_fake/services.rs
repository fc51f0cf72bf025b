//! Services (for endpoint discovery by label): seeds and the Service objects.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use super::Shared;

/// The Services of Train-Ticket's `svc.yaml` (name, port); all select `app: <name>`;
/// the gateway and the UI dashboard are NodePort.
pub const TRAIN_TICKET_SERVICE_PORTS: &[(&str, u16)] = &[
    ("ts-admin-basic-info-service", 18767),
    ("ts-admin-order-service", 16112),
    ("ts-admin-route-service", 16113),
    ("ts-admin-travel-service", 16114),
    ("ts-admin-user-service", 16115),
    ("ts-assurance-service", 18888),
    ("ts-auth-service", 12340),
    ("ts-avatar-service", 17001),
    ("ts-basic-service", 15680),
    ("ts-cancel-service", 18885),
    ("ts-config-service", 15679),
    ("ts-consign-price-service", 16110),
    ("ts-consign-service", 16111),
    ("ts-contacts-service", 12347),
    ("ts-delivery-service", 18808),
    ("ts-execute-service", 12386),
    ("ts-food-service", 18856),
    ("ts-gateway-service", 18888),
    ("ts-inside-payment-service", 18673),
    ("ts-news-service", 12862),
    ("ts-notification-service", 17853),
    ("ts-order-other-service", 12032),
    ("ts-order-service", 12031),
    ("ts-payment-service", 19001),
    ("ts-preserve-other-service", 14569),
    ("ts-preserve-service", 14568),
    ("ts-price-service", 16579),
    ("ts-rebook-service", 18886),
    ("ts-route-plan-service", 14578),
    ("ts-route-service", 11178),
    ("ts-seat-service", 18898),
    ("ts-security-service", 11188),
    ("ts-station-food-service", 18855),
    ("ts-station-service", 12345),
    ("ts-ticket-office-service", 16108),
    ("ts-train-food-service", 19999),
    ("ts-train-service", 14567),
    ("ts-travel-plan-service", 14322),
    ("ts-travel-service", 12346),
    ("ts-travel2-service", 16346),
    ("ts-user-service", 12342),
    ("ts-verification-code-service", 15678),
    ("ts-voucher-service", 16101),
    ("ts-ui-dashboard", 8080),
];

#[derive(Clone, Debug)]
pub struct ServiceSeed {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub selector: BTreeMap<String, String>,
    /// (port name, port, nodePort)
    pub ports: Vec<(String, u16, Option<u16>)>,
}

impl ServiceSeed {
    /// A ClusterIP Service selecting `app: <name>`.
    pub fn new(name: &str, ns: &str) -> Self {
        ServiceSeed {
            name: name.to_string(),
            namespace: ns.to_string(),
            labels: BTreeMap::new(),
            selector: [("app".to_string(), name.to_string())].into(),
            ports: Vec::new(),
        }
    }
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.insert(k.to_string(), v.to_string());
        self
    }
    pub fn port(mut self, name: &str, port: u16) -> Self {
        self.ports.push((name.to_string(), port, None));
        self
    }
    /// Makes it a NodePort Service.
    pub fn node_port(mut self, name: &str, port: u16, node_port: u16) -> Self {
        self.ports.push((name.to_string(), port, Some(node_port)));
        self
    }
}

pub fn seed(shared: &Arc<Shared>, seeds: &[ServiceSeed]) {
    let def = shared.def("", "services").expect("services").clone();
    shared.mutate(|st| {
        for s in seeds {
            let node_port = s.ports.iter().any(|p| p.2.is_some());
            let ip = format!("10.96.{}.{}", fastrand::u8(0..250), fastrand::u8(2..250));
            let ports: Vec<Value> = s
                .ports
                .iter()
                .map(|(name, port, np)| {
                    let mut p = json!({"name": name, "port": port, "targetPort": port, "protocol": "TCP"});
                    if let Some(np) = np {
                        p["nodePort"] = json!(np);
                    }
                    p
                })
                .collect();
            let svc = json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": s.name, "labels": s.labels},
                "spec": {
                    "type": if node_port { "NodePort" } else { "ClusterIP" },
                    "clusterIP": ip, "clusterIPs": [ip], "ports": ports, "selector": s.selector,
                    "sessionAffinity": "None", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                },
                "status": {"loadBalancer": {}},
            });
            let _ = st.store.create(&def, Some(&s.namespace), svc);
        }
    });
}
