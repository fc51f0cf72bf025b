//! The whole simulated Train-Ticket environment in one value: what `ttplan sandbox up` serves
//! and what `ttplan run --sandbox` points a run at.
//!
//! Each part runs on its own runtime thread and stops when the [`Sandbox`] is dropped.

use std::path::{Path, PathBuf};

use crate::kube_fake::{Delays, FakeKube};
use crate::prometheus::FakePrometheus;
use crate::skywalking::{FakeSkyWalking, Options};
use crate::upstream::Upstream;
use crate::world::World;

/// The namespace the Train-Ticket pods live in.
pub const NAMESPACE: &str = "default";

/// A running sandbox: the Kubernetes API (Train-Ticket's `ts-` pods, Chaos Mesh and ChaosBlade
/// controllers), the SkyWalking OAP GraphQL endpoint and the system's HTTP API.
pub struct Sandbox {
    kube: FakeKube,
    oap: FakeSkyWalking,
    api: Upstream,
    prometheus: FakePrometheus,
    world: World,
    kubeconfig: PathBuf,
}

impl Sandbox {
    /// Starts every part on loopback and writes `<dir>/kubeconfig`.
    ///
    /// The SkyWalking endpoint does not validate queries against the query-protocol schema
    /// here: the schema files are test fixtures, not part of the product.
    pub fn start(dir: &Path) -> Sandbox {
        Sandbox::start_seeded(dir, 0)
    }

    /// [`Sandbox::start`] with the simulation's seed: the same seed and the same run give
    /// the same simulated data.
    pub fn start_seeded(dir: &Path, seed: u64) -> Sandbox {
        let kube = FakeKube::builder()
            .train_ticket(NAMESPACE)
            .chaosblade(true)
            .delays(Delays {
                // A killed pod's replacement takes seconds to start and pass its readiness
                // probe (a Java service takes a minute): long enough for a scrape to see the
                // gap, short enough for a quick run.
                pod_recreate: std::time::Duration::from_secs(1),
                pod_ready: std::time::Duration::from_secs(8),
                ..Delays::default()
            })
            .start();
        let started = chrono::Utc::now();
        let kubeconfig = kube.write_kubeconfig(dir);
        let world = World::new(&kube, seed);
        // Scraped every 5 s, not kube-prometheus' 15–30 s: a sandbox run lasts about a minute,
        // and a fault of a few seconds must show in a `rate(…[1m])`.
        let prometheus = FakePrometheus::start_with(world.clone(), started, 5_000);
        let oap = FakeSkyWalking::start(Options::default());
        let api = Upstream::start();
        Sandbox {
            kube,
            oap,
            api,
            prometheus,
            world,
            kubeconfig,
        }
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn kube(&self) -> &FakeKube {
        &self.kube
    }

    pub fn world(&self) -> &World {
        &self.world
    }

    /// The variables a run reads its endpoints from, in the order they are printed.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KUBECONFIG", self.kubeconfig.display().to_string()),
            ("SKYWALKING_URL", self.oap.url()),
            ("TT_BASE_URL", self.api.url()),
            ("PROMETHEUS_URL", self.prometheus.url()),
        ]
    }

    /// A JSON summary for the run manifest's `sandbox` field.
    pub fn describe(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("namespace".into(), NAMESPACE.into());
        for (k, v) in self.env() {
            m.insert(k.to_ascii_lowercase(), v.into());
        }
        serde_json::Value::Object(m)
    }
}
