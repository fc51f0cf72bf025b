//! The run's registry of child process groups: every program ttplan starts during a run
//! (step commands, `blade`, `java`, `ant`) runs in its own process group, registered here, so
//! an abort by a second signal can SIGKILL all of them at once. It sits at the bottom of the
//! layers because steps and the collectors below them (coverage rendering) both start programs.

use std::collections::HashSet;
use std::process::{Output, Stdio};
use std::sync::Mutex;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Process groups started by the run and still alive, so an abort can kill them all.
#[derive(Debug, Default)]
pub struct ChildGroups(Mutex<HashSet<i32>>);

impl ChildGroups {
    pub(crate) fn add(&self, pgid: i32) {
        self.lock().insert(pgid);
    }

    pub(crate) fn remove(&self, pgid: i32) {
        self.lock().remove(&pgid);
    }

    /// Whether a group is registered (for tests of the callers).
    pub fn contains(&self, pgid: i32) -> bool {
        self.lock().contains(&pgid)
    }

    /// Whether no group is registered (for tests of the callers).
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// SIGKILLs every live group (second signal: abort at once).
    pub fn kill_all(&self) {
        for pgid in self.lock().drain() {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<i32>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Kills the group if the future running the child is dropped (a timeout, a cancelled step),
/// and takes it out of the registry either way.
pub(crate) struct GroupGuard<'a> {
    pub(crate) pgid: i32,
    pub(crate) groups: &'a ChildGroups,
    pub(crate) armed: bool,
}

impl Drop for GroupGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
        }
        self.groups.remove(self.pgid);
    }
}

/// Runs `cmd` to completion in a process group of its own, registered in `groups` while it
/// runs, collecting stdout and stderr (stdin is closed). Dropping the future kills the group.
///
/// # Errors
/// When the program cannot be started or waited for.
pub async fn output(
    cmd: &mut tokio::process::Command,
    groups: &ChildGroups,
) -> std::io::Result<Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd.spawn()?;
    let pgid = child.id().map_or(0, |p| p as i32);
    groups.add(pgid);
    let mut guard = GroupGuard {
        pgid,
        groups,
        armed: true,
    };
    let out = child.wait_with_output().await;
    guard.armed = false;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_child_is_registered_while_it_runs_and_killed_by_kill_all() {
        let groups = ChildGroups::default();
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(["-c", "echo started; sleep 30"]);
        let run = output(&mut cmd, &groups);
        tokio::pin!(run);
        // Wait until the child is registered, then abort as a second signal would.
        let out = loop {
            tokio::select! {
                out = &mut run => break out,
                () = tokio::time::sleep(std::time::Duration::from_millis(20)) => {
                    if !groups.lock().is_empty() {
                        groups.kill_all();
                    }
                }
            }
        };
        let out = out.unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(9));
        assert!(groups.lock().is_empty());
    }

    #[tokio::test]
    async fn a_dropped_run_kills_its_group_and_leaves_the_registry() {
        let groups = ChildGroups::default();
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(format!("echo $$ > {}; sleep 30", pid_file.display()));
        let r = tokio::time::timeout(
            std::time::Duration::from_millis(300),
            output(&mut cmd, &groups),
        )
        .await;
        assert!(r.is_err(), "sleep 30 finished within the timeout");
        assert!(groups.lock().is_empty());
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The group leader goes (a zombie until reaped counts as gone).
        let running = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
        };
        for _ in 0..100 {
            if !running() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(!running(), "pid {pid} still runs");
    }
}
