//! Git facts for reproducibility: the commit and dirty flag of the repo holding a path.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GitInfo {
    pub root: PathBuf,
    pub commit: Option<String>,
    /// Uncommitted changes (tracked or untracked) anywhere in the repo.
    pub dirty: bool,
}

/// `None` when `path` is not inside a git work tree or git is not installed.
pub fn git_info(path: &Path) -> Option<GitInfo> {
    let dir = if path.is_dir() { path } else { path.parent()? };
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let root = git(&["rev-parse", "--show-toplevel"])?;
    // A repo without commits has a root but no HEAD.
    let commit = git(&["rev-parse", "HEAD"]).filter(|c| !c.is_empty());
    let dirty = git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty());
    Some(GitInfo {
        root: PathBuf::from(root),
        commit,
        dirty,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_repo_there_is_no_info() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(git_info(dir.path()), None);
    }

    #[test]
    fn commit_and_dirty_flag_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let ok = Command::new("git")
                .arg("-C")
                .arg(dir.path())
                .args(args)
                .output()
                .map(|o| o.status.success());
            assert_eq!(ok.ok(), Some(true), "git {args:?}");
        };
        run(&["init", "-q"]);
        std::fs::write(dir.path().join("plan.yaml"), "name: x\n").unwrap();
        run(&["add", "."]);
        run(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "x",
        ]);
        let info = git_info(&dir.path().join("plan.yaml")).unwrap();
        assert_eq!(info.commit.as_deref().map(str::len), Some(40));
        assert!(!info.dirty);
        std::fs::write(dir.path().join("plan.yaml"), "name: y\n").unwrap();
        assert!(git_info(dir.path()).unwrap().dirty);
    }
}
