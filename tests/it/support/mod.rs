//! The one way tests run ttplan: a just-style `Test` builder writes a plan (given whole, or
//! step by step with `.step(kind, yaml)`) and any extra files into a fresh temp dir, runs the
//! `ttplan` binary there (`.run()` to completion, `.spawn()` in the background), checks the exit
//! status (0 unless told otherwise) and returns the output plus, for `run`, the parsed manifest.
//! Helpers that need a bare `Command` (RSS measurement, stdin) start from [`ttplan()`].
//!
//! Every run is isolated from the developer's machine: `KUBECONFIG`, the in-cluster variables
//! and the endpoint variables (`SKYWALKING_URL`, `PROMETHEUS_URL`, `TT_BASE_URL`) are removed and
//! `HOME` is an empty folder, so a test can never reach a real cluster or read a user's config;
//! a test that wants one passes `--kubeconfig` (or sets the variable) explicitly.
pub mod jvm;
pub mod prometheus;
pub mod traffic;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// The exp_name `run_plan()` passes, so the manifest sits at a known place.
pub const EXP: &str = "t";
/// Where `run_plan()` puts the dataset, relative to the test dir.
pub const OUT: &str = "out";

pub struct Test {
    dir: TempDir,
    steps: Vec<(String, String, String)>,
    check_status: bool,
    cwd: Option<PathBuf>,
    args: Vec<String>,
    env: Vec<(String, Option<String>)>,
    status: i32,
    stderr: Option<String>,
    stdout: Option<String>,
}

impl Test {
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("ttplan-test")
                .tempdir()
                .expect("create temp dir"),
            steps: Vec::new(),
            check_status: true,
            cwd: None,
            args: Vec::new(),
            env: Vec::new(),
            status: 0,
            stderr: None,
            stdout: None,
        }
    }

    /// The test's working directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `plan.yaml`.
    pub fn plan(self, yaml: &str) -> Self {
        self.file("plan.yaml", yaml)
    }

    /// Adds a step named after its kind to the plan the builder writes as `plan.yaml`
    /// (`name: t`); `yaml` holds the step's other fields, one per line.
    pub fn step(self, kind: &str, yaml: &str) -> Self {
        self.named_step(kind, kind, yaml)
    }

    /// Adds a step called `name` (see [`Test::step`]).
    pub fn named_step(mut self, name: &str, kind: &str, yaml: &str) -> Self {
        self.steps.push((name.into(), kind.into(), yaml.into()));
        self
    }

    fn write_steps(&mut self) {
        if self.steps.is_empty() {
            return;
        }
        let mut plan = String::from("name: t\nsteps:\n");
        for (name, kind, yaml) in std::mem::take(&mut self.steps) {
            plan += &format!("  {name}:\n    kind: {kind}\n");
            for line in yaml.lines().filter(|l| !l.trim().is_empty()) {
                plan += &format!("    {line}\n");
            }
        }
        let path = self.dir.path().join("plan.yaml");
        assert!(
            !path.exists(),
            "give the plan either whole or by .step(), not both"
        );
        fs::write(&path, plan).expect("write plan.yaml");
    }

    /// Writes a file (parent folders are created) relative to the test dir.
    pub fn file(self, path: impl AsRef<Path>, contents: &str) -> Self {
        let full = self.dir.path().join(path);
        if let Some(parent) = full.parent() {
            fs::create_dir_all(parent).expect("create parent dir");
        }
        fs::write(&full, contents).unwrap_or_else(|e| panic!("write {}: {e}", full.display()));
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), Some(value.into())));
        self
    }

    /// Unsets a variable the test process has (the isolated ones are unset already).
    pub fn env_remove(mut self, key: &str) -> Self {
        self.env.push((key.into(), None));
        self
    }

    /// Runs `ttplan` in `dir` instead of the temp dir (for read-only commands on repo files).
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// The exit code `run()` expects (default 0).
    pub fn status(mut self, code: i32) -> Self {
        self.status = code;
        self
    }

    /// `run()` returns whatever the exit status is (the caller checks it).
    pub fn any_status(mut self) -> Self {
        self.check_status = false;
        self
    }

    /// The exact stderr `run()` expects.
    pub fn stderr(mut self, text: &str) -> Self {
        self.stderr = Some(text.into());
        self
    }

    /// The exact stdout `run()` expects.
    pub fn stdout(mut self, text: &str) -> Self {
        self.stdout = Some(text.into());
        self
    }

    /// `ttplan run plan.yaml --out out --set exp_name=t`, plus any `args` given before.
    pub fn run_plan(mut self) -> Output {
        self.args = run_args(std::mem::take(&mut self.args));
        self.run()
    }

    fn command(&mut self) -> Command {
        self.write_steps();
        let mut cmd = ttplan();
        cmd.args(&self.args)
            .current_dir(self.cwd.as_deref().unwrap_or(self.dir.path()));
        for (k, v) in &self.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd
    }

    /// Runs `ttplan` to completion and checks the expectations set on the builder.
    pub fn run(mut self) -> Output {
        let out = self
            .command()
            .output()
            .unwrap_or_else(|e| panic!("cannot run ttplan: {e}"));
        let output = Output {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            dir: self.dir,
        };
        output.check_no_panic();
        if self.check_status {
            assert_eq!(
                output.status.code(),
                Some(self.status),
                "ttplan {:?}: unexpected exit status\n{output}",
                self.args
            );
        }
        if let Some(expected) = &self.stderr {
            assert_text_eq("stderr", &output.stderr, expected);
        }
        if let Some(expected) = &self.stdout {
            assert_text_eq("stdout", &output.stdout, expected);
        }
        output
    }

    /// Starts `ttplan run plan.yaml --out out --set exp_name=t` in the background
    /// (stdout/stderr go to files in the test dir).
    pub fn spawn_run(mut self) -> Running {
        self.args = run_args(std::mem::take(&mut self.args));
        self.spawn()
    }

    /// Starts `ttplan` with the given `args` in the background (output to files in the test dir).
    pub fn spawn(mut self) -> Running {
        let stdout = fs::File::create(self.dir.path().join("ttplan.stdout")).unwrap();
        let stderr = fs::File::create(self.dir.path().join("ttplan.stderr")).unwrap();
        let child = self
            .command()
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn ttplan");
        Running {
            child,
            dir: Some(self.dir),
        }
    }
}

/// The `ttplan` binary under test, isolated from the developer's machine (see the module doc):
/// no colours, 80 columns, no stdin.
pub fn ttplan() -> Command {
    isolated(env!("CARGO_BIN_EXE_ttplan"))
}

/// [`ttplan()`] for another build of the binary (a benchmark's `TTPLAN_BIN`).
pub fn isolated(bin: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env("NO_COLOR", "1")
        .env("COLUMNS", "80")
        .env("HOME", empty_home())
        .env_remove("CLICOLOR_FORCE")
        .env_remove("FORCE_COLOR")
        .stdin(Stdio::null());
    // Python installed per user (pyenv, `pip install --user`) is found through HOME: keep it.
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from) {
        for (var, dir) in [("PYENV_ROOT", ".pyenv"), ("PYTHONUSERBASE", ".local")] {
            if std::env::var_os(var).is_none() && home.join(dir).is_dir() {
                cmd.env(var, home.join(dir));
            }
        }
    }
    for var in [
        "KUBECONFIG",
        "KUBERNETES_SERVICE_HOST",
        "KUBERNETES_SERVICE_PORT",
        "SKYWALKING_URL",
        "PROMETHEUS_URL",
        "TT_BASE_URL",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// An empty folder to serve as `HOME` (one per user, shared by the test processes).
fn empty_home() -> PathBuf {
    static HOME: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    HOME.get_or_init(|| {
        let user = std::env::var("USER").unwrap_or_else(|_| "user".into());
        let dir = std::env::temp_dir().join(format!("ttplan-test-home-{user}"));
        fs::create_dir_all(&dir).expect("create the tests' HOME");
        dir
    })
    .clone()
}

fn run_args(extra: Vec<String>) -> Vec<String> {
    ["run", "plan.yaml", "--out", OUT, "--set"]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("exp_name={EXP}")])
        .chain(extra)
        .collect()
}

impl Default for Test {
    fn default() -> Self {
        Self::new()
    }
}

/// What a finished `ttplan` left behind; the temp dir lives as long as this does.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub dir: TempDir,
}

impl Output {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Reads a file the run wrote, relative to the test dir.
    pub fn read(&self, path: &str) -> String {
        let p = self.dir.path().join(path);
        fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}\n{self}", p.display()))
    }

    pub fn exists(&self, path: &str) -> bool {
        self.dir.path().join(path).exists()
    }

    pub fn manifest_path(&self) -> PathBuf {
        manifest_path(self.dir.path())
    }

    /// `out/runs/t/experiment_manifest.json`, parsed.
    pub fn manifest(&self) -> Value {
        read_manifest(self.dir.path())
            .unwrap_or_else(|e| panic!("no readable manifest: {e}\n{self}"))
    }

    /// The manifest of a run folder relative to the test dir (`out/runs/<exp>`).
    pub fn manifest_at(&self, run_dir: &str) -> Value {
        let p = self
            .dir
            .path()
            .join(run_dir)
            .join("experiment_manifest.json");
        let text =
            fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}\n{self}", p.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn check_no_panic(&self) {
        assert!(
            !self.stderr.contains("panicked"),
            "ttplan panicked:\n{self}"
        );
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--- status: {}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// A `ttplan run` in the background, for signal tests.
pub struct Running {
    child: Child,
    /// `None` once `wait()` handed it to the [`Output`].
    dir: Option<TempDir>,
}

impl Running {
    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("not waited for yet").path()
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits in i32")
    }

    /// Polls the manifest until `pred` holds; panics (after killing ttplan) past `limit`.
    pub fn wait_for_manifest(
        &mut self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) {
        let dir = self.path().to_path_buf();
        self.wait_until(what, limit, || read_manifest(&dir).is_ok_and(|m| pred(&m)));
    }

    /// Polls until the file (relative to the test dir) exists and is not empty.
    pub fn wait_for_file(&mut self, path: &str, limit: Duration) -> String {
        let full = self.path().join(path);
        self.wait_until(&format!("{path} to be written"), limit, || {
            fs::read_to_string(&full).is_ok_and(|s| s.ends_with('\n'))
        });
        fs::read_to_string(&full).unwrap()
    }

    /// Polls `done` every 20 ms; panics (after killing ttplan) past `limit` or if it exits.
    pub fn wait_until(&mut self, what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "ttplan exited ({status}) while waiting for {what}\n{}",
                    self.stderr()
                );
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "gave up waiting for {what} after {limit:?}\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig)
            .unwrap_or_else(|e| panic!("kill -{sig}: {e}"));
    }

    /// Waits (bounded) for ttplan to exit; kills it and panics past `limit`.
    pub fn wait(mut self, limit: Duration) -> Output {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("ttplan did not exit within {limit:?}\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let dir = self.dir.take().expect("wait() once");
        let read = |name: &str| fs::read_to_string(dir.path().join(name)).unwrap_or_default();
        let out = Output {
            status,
            stdout: read("ttplan.stdout"),
            stderr: read("ttplan.stderr"),
            dir,
        };
        out.check_no_panic();
        out
    }

    fn stderr(&self) -> String {
        fs::read_to_string(self.path().join("ttplan.stderr")).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failed assertion must not leave ttplan (and its children) running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn manifest_path(dir: &Path) -> PathBuf {
    dir.join(OUT)
        .join("runs")
        .join(EXP)
        .join("experiment_manifest.json")
}

pub fn read_manifest(dir: &Path) -> Result<Value, String> {
    let p = manifest_path(dir);
    let text = fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
}

/// Whether a process is still running (a zombie counts as gone: it ran its course).
pub fn process_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // "pid (comm) S ...": the state follows the last ')'.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            state != Some('Z') && state != Some('X')
        }
        Err(_) => false,
    }
}

/// Compares texts and, on a mismatch, shows both in full plus the first differing line.
pub fn assert_text_eq(what: &str, actual: &str, expected: &str) {
    if actual == expected {
        return;
    }
    let first = actual
        .lines()
        .zip(expected.lines())
        .position(|(a, e)| a != e)
        .unwrap_or_else(|| actual.lines().count().min(expected.lines().count()));
    panic!(
        "{what} differs (first at line {}):\n--- expected:\n{expected}\n--- actual:\n{actual}\n--- expected line: {:?}\n--- actual line:   {:?}",
        first + 1,
        expected.lines().nth(first),
        actual.lines().nth(first),
    );
}

/// sha256 of a file, lowercase hex.
pub fn sha256_hex(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    format!("{:x}", Sha256::digest(bytes))
}
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
