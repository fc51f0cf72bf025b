//! JaCoCo in the sandbox: tcpserver agents behind the pods' port-forwards ([`agent`]), the
//! class files their probes belong to ([`classfile`]) written into a simulated checkout
//! ([`checkout`]), so `collect-coverage` dumps real exec data and `coverage-report` renders it
//! with JaCoCo's own report engine.

pub mod agent;
pub mod checkout;
pub mod classfile;
pub mod wire;

pub use agent::{Agents, AGENT_PORT};
pub use checkout::write_checkout_classes;
