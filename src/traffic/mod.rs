//! Traffic capture for the API-response modality: a recording reverse proxy that sits in front
//! of the system under test for the duration of an `api-driver` step, so every request the
//! driver makes is recorded by the engine itself — whatever driver is in use.
//!
//! [`record`] turns request/response pairs into redacted JSON lines and owns the one writer of
//! the JSONL file; [`proxy`] forwards traffic (streaming, keep-alive) and feeds the recorder;
//! [`login`] fetches the bearer token drivers are given.

pub mod login;
pub mod proxy;
pub mod record;

pub use proxy::{Phase, Proxy, ProxyOptions};
pub use record::{RecordOptions, RecordSink, RecordWriter, Recorded};
