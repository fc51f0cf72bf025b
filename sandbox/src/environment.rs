//! The whole simulated Train-Ticket environment in one value: what `ttplan sandbox up` serves
//! and what `ttplan run --sandbox` points a run at.
//!
//! Each part runs on its own runtime thread and stops when the [`Sandbox`] is dropped.

use std::path::{Path, PathBuf};

use crate::jacoco::{self, Agents, AGENT_PORT};
use crate::kube_fake::{Delays, FakeKube};
use crate::prometheus::FakePrometheus;
use crate::sim::Traffic;
use crate::skywalking::{FakeSkyWalking, Options};
use crate::upstream::Upstream;
use crate::world::World;

/// The namespace the Train-Ticket pods live in.
pub const NAMESPACE: &str = "default";

/// A running sandbox: the Kubernetes API (Train-Ticket's `ts-` pods, Chaos Mesh and ChaosBlade
/// controllers), the SkyWalking OAP GraphQL endpoint, the system's HTTP API and a JaCoCo agent
/// per Java service behind its pods' port 6300 ([`crate::jacoco`]).
pub struct Sandbox {
    kube: FakeKube,
    oap: FakeSkyWalking,
    api: Upstream,
    traffic: Traffic,
    prometheus: FakePrometheus,
    world: World,
    kubeconfig: PathBuf,
    dir: PathBuf,
    _agents: Agents,
}

/// Set (to the sandbox's folder) in a run pointed at a sandbox: steps that cannot simulate
/// their part (e.g. `coverage-report` without a JVM) say so instead of failing.
pub const SANDBOX_VAR: &str = "TTPLAN_SANDBOX";

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
        // The system's API simulates every request; its traces and pod logs come from them.
        let traffic = Traffic::new(world.clone(), NAMESPACE);
        kube.set_log_feed(traffic.log_feed());
        let oap = FakeSkyWalking::start(Options {
            traces: 0,
            outside: 0,
            feed: Some(traffic.trace_feed()),
            ..Options::default()
        });
        let api = Upstream::train_ticket(traffic.clone());
        let agents = Agents::start(&kube, &world, NAMESPACE, AGENT_PORT);
        Sandbox {
            kube,
            oap,
            api,
            traffic,
            prometheus,
            world,
            kubeconfig,
            dir: dir.to_path_buf(),
            _agents: agents,
        }
    }

    /// Writes the Java services' class files (target/classes, the Spring Boot jar) and
    /// sources under `root` as a built Train-Ticket checkout has them, matching what the
    /// sandbox's JaCoCo agents report: `coverage-report` with `source_root: <root>` renders
    /// them with JaCoCo's report engine.
    ///
    /// # Errors
    /// The first file that cannot be written.
    pub fn write_checkout_classes(
        &self,
        root: &Path,
    ) -> std::io::Result<jacoco::checkout::Written> {
        jacoco::write_checkout_classes(root)
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

    /// The requests the system's API answered (and their traces and logs).
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// The variables a run reads its endpoints from, in the order they are printed.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KUBECONFIG", self.kubeconfig.display().to_string()),
            ("SKYWALKING_URL", self.oap.url()),
            ("TT_BASE_URL", self.api.url()),
            (SANDBOX_VAR, self.dir.display().to_string()),
            ("PROMETHEUS_URL", self.prometheus.url()),
        ]
    }

    /// A JSON summary for the run manifest's `sandbox` field.
    pub fn describe(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("namespace".into(), NAMESPACE.into());
        m.insert("seed".into(), self.world.seed().into());
        for (k, v) in self.env() {
            m.insert(k.to_ascii_lowercase(), v.into());
        }
        serde_json::Value::Object(m)
    }
}
