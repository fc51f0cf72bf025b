//! Helpers for the traffic tests: a plan folder with driver scripts, run with the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// Tests that drive traffic with Python fail loudly, never skip, when the client is missing.
pub fn require_python_requests() {
    let ok = Command::new("python3")
        .args(["-c", "import requests"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "this test needs python3 with the `requests` package; install it with \
         `bash scripts/deps/traffic.sh` (or run the suite through scripts/test.sh)"
    );
}

/// A plan run in its own folder: `plan.yaml` and any scripts beside it, output in `out/`.
pub struct Project {
    pub dir: tempfile::TempDir,
}

pub struct Run {
    pub output: Output,
    pub out: PathBuf,
    pub exp: String,
}

impl Project {
    pub fn new() -> Project {
        Project {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, name: &str, text: &str) -> &Self {
        std::fs::write(self.dir.path().join(name), text).unwrap();
        self
    }

    pub fn command(&self, plan: &str, exp: &str) -> Command {
        self.file("plan.yaml", plan);
        let mut cmd = super::ttplan();
        cmd.current_dir(self.path())
            .env("NO_COLOR", "1")
            .args(["run", "plan.yaml", "--out", "out", "--set"])
            .arg(format!("exp_name={exp}"));
        cmd
    }

    pub fn run(&self, plan: &str, exp: &str) -> Run {
        let output = self.command(plan, exp).output().unwrap();
        Run {
            output,
            out: self.path().join("out"),
            exp: exp.to_string(),
        }
    }
}

impl Run {
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    pub fn manifest(&self) -> Value {
        let p = self
            .out
            .join("runs")
            .join(&self.exp)
            .join("experiment_manifest.json");
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
    }

    pub fn step_log(&self, step: &str) -> String {
        std::fs::read_to_string(
            self.out
                .join("runs")
                .join(&self.exp)
                .join("steps")
                .join(format!("{step}.log")),
        )
        .unwrap_or_default()
    }
}
