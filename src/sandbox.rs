//! `ttplan sandbox up` and `ttplan run --sandbox`: the simulated Train-Ticket environment of the
//! `ttplan-sandbox` crate, served in the foreground or started for one run.

use std::path::{Path, PathBuf};

use ttplan_sandbox::checkout::Checkout;
use ttplan_sandbox::Sandbox;

use crate::atomic_write::write_atomic;
use crate::engine::launch::RunConfig;
use crate::exit;

/// The campaign plans' waits and windows, shortened so a sandbox run takes well under a minute:
/// the plans read them with `env('TT_…', <cluster default>)` (plans/base/*.yaml), the sandbox
/// exports these values unless the variable is already set, and the manifest records both the
/// variables read (`env`) and these values (`sandbox.durations`).
/// (variable, sandbox value, cluster default it replaces)
pub const SHORT_DURATIONS: &[(&str, &str, &str)] = &[
    // `warmup` step.
    ("TT_WARMUP", "5s", "3m"),
    // Hypothesis `pods_ready`: how long pods may take to become Ready, and the poll interval.
    ("TT_SETTLE", "30s", "3m"),
    ("TT_PROBE_INTERVAL", "1s", "10s"),
    // Hypothesis `error_rate_low`: the look-back window.
    ("TT_PROBE_WINDOW", "10s", "2m"),
    // `rate(…[d])` in the probes' queries: a fault window of seconds needs a window of seconds.
    ("TT_RATE_WINDOW", "10s", "1m"),
    // `traffic`: the pause between the suite's iterations.
    ("TT_TRAFFIC_PAUSE", "1s", "10s"),
    // How long the EvoMaster stand-in sends requests per iteration (the real suite has its own
    // length).
    ("TT_TRAFFIC_SECONDS", "8", "-"),
];

/// A started sandbox, its simulated Train-Ticket checkout and the folder holding both and the
/// kubeconfig (removed on drop when temporary).
pub struct Started {
    pub sandbox: Sandbox,
    pub checkout: Checkout,
    /// [`SHORT_DURATIONS`] the environment did not set when the sandbox started.
    durations: Vec<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl Started {
    /// Every variable a run against this sandbox reads: endpoints, the checkout's paths and the
    /// short durations (those the environment does not set already).
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .sandbox
            .env()
            .into_iter()
            .chain(self.checkout.env())
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        env.extend(self.durations.iter().cloned());
        env
    }

    /// The manifest's `sandbox` field: the simulated environment's endpoints, checkout and the
    /// durations it shortened.
    pub fn describe(&self) -> serde_json::Value {
        let mut d = self.sandbox.describe();
        if let Some(m) = d.as_object_mut() {
            // PATH is the user's with the stand-ins' folder first: recorded as that folder.
            for (k, v) in self
                .checkout
                .env()
                .into_iter()
                .filter(|(k, _)| *k != "PATH")
            {
                m.insert(k.to_ascii_lowercase(), v.into());
            }
            m.insert("bin".into(), self.checkout.bin.display().to_string().into());
            let durations: serde_json::Map<String, serde_json::Value> = self
                .durations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect();
            m.insert("durations".into(), durations.into());
        }
        d
    }
}

/// [`SHORT_DURATIONS`] whose variable the environment does not set (a value the user exported
/// wins).
fn durations() -> Vec<(String, String)> {
    SHORT_DURATIONS
        .iter()
        .filter(|(k, ..)| std::env::var_os(k).is_none())
        .map(|(k, v, _)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

fn start(dir: Option<&Path>, seed: u64) -> Result<Started, u8> {
    let fail = |what: &str, path: &Path, e: std::io::Error| {
        eprintln!("error: sandbox: cannot {what} {}: {e}", path.display());
        exit::INVALID
    };
    let (dir, tmp) = match dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| fail("create the folder", d, e))?;
            // Printed and written to the env file: absolute, so it holds from any folder.
            let d = std::path::absolute(d).map_err(|e| fail("resolve", d, e))?;
            (d, None)
        }
        None => {
            let tmp = tempfile::Builder::new()
                .prefix("ttplan-sandbox")
                .tempdir()
                .map_err(|e| fail("create a folder in", &std::env::temp_dir(), e))?;
            (tmp.path().to_path_buf(), Some(tmp))
        }
    };
    // The simulated servers come from the test fakes, which panic when they cannot bind a
    // loopback port or start a runtime: turn that into an error instead of a crash.
    let sandbox = std::panic::catch_unwind(|| Sandbox::start_seeded(&dir, seed)).map_err(|_| {
        eprintln!(
            "error: sandbox: its servers could not start (loopback ports, threads; see above)"
        );
        exit::STEP_FAILED
    })?;
    let checkout = ttplan_sandbox::checkout::write(&dir)
        .map_err(|e| fail("write the simulated Train-Ticket checkout in", &dir, e))?;
    Ok(Started {
        sandbox,
        checkout,
        durations: durations(),
        _dir: tmp,
    })
}

/// `ttplan sandbox up`: serves until Ctrl-C (or SIGTERM).
pub fn up(env_file: Option<&Path>, port_file: Option<&Path>, dir: Option<&Path>, seed: u64) -> u8 {
    let started = match start(dir, seed) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let sb = &started.sandbox;
    let exports: String = started
        .env()
        .iter()
        .map(|(k, v)| format!("export {k}={v}\n"))
        .collect();
    let write = |path: &Path, text: &str| {
        write_atomic(path, text.as_bytes()).map_err(|e| {
            eprintln!("error: sandbox: cannot write {}: {e}", path.display());
            exit::INVALID
        })
    };
    if let Some(f) = env_file {
        if let Err(code) = write(f, &exports) {
            return code;
        }
    }
    if let Some(f) = port_file {
        if let Err(code) = write(f, &format!("{}\n", sb.kube().addr().port())) {
            return code;
        }
    }
    crate::out(&format!(
        "sandbox: simulated Train-Ticket in namespace `{}`\nkubeconfig: {}\n{exports}\
         Run plans against it with these variables (or use `ttplan run PLAN --sandbox`). Ctrl-C stops it.\n",
        ttplan_sandbox::environment::NAMESPACE,
        sb.kubeconfig().display(),
    ));
    let rt = match crate::engine::launch::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = term => {}
        }
    });
    eprintln!("sandbox: stopped");
    exit::SUCCESS
}

/// `ttplan run --sandbox`: starts a sandbox and points the run at it — its kubeconfig, and the
/// variables of [`Started::env`] (endpoints, checkout, short durations) in this process's
/// environment, which plans and steps read. Keep the result alive for the run.
pub fn for_run(cfg: &mut RunConfig, seed: u64) -> Result<Started, u8> {
    let started = start(None, seed)?;
    point_at(&started, cfg);
    Ok(started)
}

/// Points a run at a started sandbox.
fn point_at(started: &Started, cfg: &mut RunConfig) {
    export(started);
    cfg.kube.kubeconfig = Some(PathBuf::from(started.sandbox.kubeconfig()));
    cfg.sandbox = Some(started.describe());
}

/// Puts [`Started::env`] in this process's environment, which plans and steps read.
fn export(started: &Started) {
    for (k, v) in started.env() {
        // Before any run starts: no other thread of ttplan reads the environment yet (the
        // sandbox's own threads never do).
        std::env::set_var(k, v);
    }
}

/// `ttplan campaign run --sandbox`: one sandbox for every experiment of the campaign, its
/// variables exported before the first plan loads. Keep the result alive for the campaign.
pub fn for_campaign(seed: u64) -> Result<Started, u8> {
    let started = start(None, seed)?;
    export(&started);
    Ok(started)
}
