//! Collectors: the code that pulls one data modality out of a running system and streams it to
//! the dataset. Step kinds in `src/steps/` are thin wrappers that turn plan fields into a
//! collector's settings; everything protocol-specific lives here so it can be tested without the
//! engine.

pub mod endpoint;
pub mod logs;
pub mod metrics;
pub mod traces;
