//! Collectors: the code that pulls one data modality out of a running system and writes it to
//! the dataset. Step kinds in `crate::steps` are thin wrappers around these.

pub mod metrics;
