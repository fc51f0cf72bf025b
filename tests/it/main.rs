//! The integration tests, as one binary: the fakes and the support code are compiled and
//! linked once (`cargo test --test it`, or `cargo test --test it chaos::` for one area).

mod support;

mod campaign;
mod chaos;
mod cli;
mod coverage;
mod dataset;
mod logs;
mod metrics;
mod probe;
mod report;
mod sandbox_coverage;
mod sandbox_faults;
mod sandbox_metrics;
mod sandbox_plans;
mod traces;
mod traffic;
