//! Git facts for reproducibility: the commit and dirty flag of the repo holding a path.
//!
//! `git` runs like every other program of a run: as a tokio child in a process group of its own,
//! registered in the run's [`ChildGroups`], so it never blocks an async thread and an abort by
//! a second signal kills it (a `git status` over a huge work tree can take a while).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::child::ChildGroups;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GitInfo {
    pub root: PathBuf,
    pub commit: Option<String>,
    /// Uncommitted changes (tracked or untracked) anywhere in the repo.
    pub dirty: bool,
}

/// `None` when `path` is not inside a git work tree or git is not installed.
pub async fn git_info(path: &Path, groups: &ChildGroups) -> Option<GitInfo> {
    let is_dir = tokio::fs::metadata(path).await.is_ok_and(|m| m.is_dir());
    let dir = if is_dir { path } else { path.parent()? };
    let git = |args: &'static [&'static str]| async move {
        let mut cmd = tokio::process::Command::new("git");
        cmd.arg("-C").arg(dir).args(args);
        let out = crate::child::output(&mut cmd, groups).await.ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let root = git(&["rev-parse", "--show-toplevel"]).await?;
    // A repo without commits has a root but no HEAD.
    let commit = git(&["rev-parse", "HEAD"]).await.filter(|c| !c.is_empty());
    let dirty = git(&["status", "--porcelain"])
        .await
        .is_some_and(|s| !s.is_empty());
    Some(GitInfo {
        root: PathBuf::from(root),
        commit,
        dirty,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::process::Command;

    #[tokio::test]
    async fn outside_a_repo_there_is_no_info() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(git_info(dir.path(), &ChildGroups::default()).await, None);
    }

    #[tokio::test]
    async fn commit_and_dirty_flag_are_read() {
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
        let groups = ChildGroups::default();
        let info = git_info(&dir.path().join("plan.yaml"), &groups)
            .await
            .unwrap();
        assert_eq!(info.commit.as_deref().map(str::len), Some(40));
        assert!(!info.dirty);
        std::fs::write(dir.path().join("plan.yaml"), "name: y\n").unwrap();
        assert!(git_info(dir.path(), &groups).await.unwrap().dirty);
        // Every git child was registered while it ran and is gone from the registry now.
        assert!(groups.is_empty());
    }
}
