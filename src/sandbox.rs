//! `ttplan sandbox up` and `ttplan run --sandbox`: the simulated Train-Ticket environment of the
//! `ttplan-sandbox` crate, served in the foreground or started for one run.

use std::path::{Path, PathBuf};

use ttplan_sandbox::Sandbox;

use crate::atomic_write::write_atomic;
use crate::engine::launch::RunConfig;
use crate::exit;

/// A started sandbox and the folder holding its kubeconfig (removed on drop when temporary).
pub struct Started {
    pub sandbox: Sandbox,
    _dir: Option<tempfile::TempDir>,
}

fn start(dir: Option<&Path>) -> Result<Started, u8> {
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
    let sandbox = std::panic::catch_unwind(|| Sandbox::start(&dir)).map_err(|_| {
        eprintln!(
            "error: sandbox: its servers could not start (loopback ports, threads; see above)"
        );
        exit::STEP_FAILED
    })?;
    Ok(Started { sandbox, _dir: tmp })
}

/// `ttplan sandbox up`: serves until Ctrl-C (or SIGTERM).
pub fn up(env_file: Option<&Path>, port_file: Option<&Path>, dir: Option<&Path>) -> u8 {
    let started = match start(dir) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let sb = &started.sandbox;
    let exports: String = sb
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
/// endpoint variables (`SKYWALKING_URL`, `TT_BASE_URL`, `KUBECONFIG` for the steps' own tools)
/// in this process's environment, which plans and steps read. Keep the result alive for the run.
pub fn for_run(cfg: &mut RunConfig) -> Result<Started, u8> {
    let started = start(None)?;
    let sb = &started.sandbox;
    for (k, v) in sb.env() {
        // Before the run starts: no other thread of ttplan reads the environment yet (the
        // sandbox's own threads never do).
        std::env::set_var(k, v);
    }
    cfg.kube.kubeconfig = Some(PathBuf::from(sb.kubeconfig()));
    cfg.sandbox = Some(sb.describe());
    Ok(started)
}
