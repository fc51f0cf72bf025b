//! Test helpers shared by the integration tests.

pub mod jvm;

use std::path::PathBuf;

/// `../shared` beside the repository (fixtures), or `None` with a note when it is absent.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "note: {} is absent; skipping this fixture test (CI always has it)",
            dir.display()
        );
        None
    }
}
