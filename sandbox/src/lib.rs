//! A simulated Train-Ticket environment: everything a `ttplan` run talks to, in-process on
//! loopback, modelled on the real systems (each fake cites the upstream code it follows).
//!
//! - [`kube_fake`]: the Kubernetes API server with ReplicaSet/StatefulSet, Chaos Mesh and
//!   ChaosBlade controllers, pod logs and port-forward;
//! - [`skywalking`]: the SkyWalking OAP GraphQL endpoint (traces);
//! - [`prometheus`]: the Prometheus HTTP API over simulated node-exporter, cAdvisor,
//!   kube-state-metrics and service series that show the faults;
//! - [`upstream`]: an HTTP server standing in for the system under test (the recording proxy's
//!   upstream): an echo server for the proxy's tests, or the simulated Train-Ticket API;
//! - [`sim`]: the simulated system's behaviour (requests through the call graph, with the
//!   traces and pod logs they leave);
//! - [`jacoco`]: JaCoCo tcpserver agents (one per Java service, behind the pods'
//!   port-forward) and the class files their probes belong to;
//! - [`checkout`]: the simulated Train-Ticket checkout (deploy script, services' manifest,
//!   EvoMaster stand-in) the campaign plans run;
//! - [`world`]: the simulation's ground truth (pod lives, fault windows and their effects,
//!   seeded noise) every simulated signal is computed from;
//! - [`FAKE_BLADE`]: a `blade` CLI stand-in for ChaosBlade's JVM faults on the host.
//!
//! [`environment::Sandbox`] starts them together (`ttplan sandbox up`, `ttplan run --sandbox`);
//! the test suite uses the same parts one by one.

pub mod checkout;
pub mod environment;
pub mod jacoco;
pub mod kube_fake;
pub mod prometheus;
pub mod sim;
pub mod skywalking;
pub mod train_ticket;
pub mod upstream;
pub mod world;

#[cfg(test)]
mod tests;

/// A `blade` CLI stand-in (Python 3): answers `blade create|destroy|status` with ChaosBlade's
/// JSON result shape. Write it to a file and make it executable to use it.
pub const FAKE_BLADE: &str = include_str!("fake_blade.py");
pub use environment::Sandbox;
