//! The simulation of Train-Ticket's behaviour under faults, computed from the
//! [`World`](crate::world::World): its request side ([`traffic`]: API answers, and the traces
//! and pod logs derived from the requests it answered).

pub mod traffic;
pub mod traffic_logs;
pub mod traffic_model;
pub mod traffic_traces;

pub use traffic::{SimRequest, Traffic};
