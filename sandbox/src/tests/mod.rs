//! The sandbox's self-tests through its public surface, as ttplan uses it: the real `kube`
//! client against the fake API server, and the simulated Train-Ticket API's answers under
//! faults. They live in the library's test binary so the workspace links one test executable
//! per crate (issue 13).

mod kube_fake;
mod sim_traffic;
