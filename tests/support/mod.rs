//! Protocol-level fakes and helpers shared by the integration tests.

pub mod skywalking;
