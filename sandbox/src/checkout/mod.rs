//! The sandbox's simulated Train-Ticket checkout: the files a campaign plan runs on a real
//! cluster, as stand-ins that act on the simulated one.
//!
//! - `hack/deploy/deploy.sh`: Train-Ticket's deploy script (the plans' `deploy` step). The
//!   simulated cluster runs Train-Ticket from the start, so it says so and exits 0.
//! - `deployment/kubernetes-manifests/quickstart-k8s/yamls/deploy.yaml`: the services'
//!   Deployments, as the quick start applies them (FudanSELab/train-ticket, same path): one per
//!   service of the simulated cluster, label `app: <name>`, image `codewisdom/<name>:1.0.0`, the
//!   service's port. The plans' `instrument` step rewrites it and `kube-apply` re-applies it; the
//!   simulated Deployment controller rolls the pods over (kube_fake/rollout.rs).
//! - `evomaster/EvoMaster_successes_Test.py`: a stand-in for the EvoMaster suite the
//!   `api-driver` runs (`python3 <file>`): a mix of Train-Ticket requests to `TT_BASE_URL` for a
//!   few seconds (standard library only).
//!
//! - `bin/blade`: the `blade` CLI stand-in ([`crate::FAKE_BLADE`]) the plans' `chaosblade`
//!   steps run, which creates the ChaosBlade objects the simulated operator acts on; it is put
//!   first on `PATH`, with its log and records in `blade.log` (`BLADE_LOG`).
//!
//! - `<service>/target/classes/…`, `<service>/target/<service>-1.0.jar` and
//!   `<service>/src/main/java/…`: the Java services' simulated classes
//!   ([`crate::jacoco::write_checkout_classes`]), which the sandbox's coverage agents report
//!   probes for and `coverage-report` renders with JaCoCo.
//!
//! Not simulated: the real services' sources and build (no `mvn`).

use std::io;
use std::path::{Path, PathBuf};

use crate::kube_fake::{TRAIN_TICKET_SERVICES, TRAIN_TICKET_SERVICE_PORTS};

const DEPLOY_SH: &str = include_str!("deploy.sh");
const EVOMASTER_STANDIN: &str = include_str!("evomaster_standin.py");

/// Where the checkout's files are.
#[derive(Debug, Clone)]
pub struct Checkout {
    /// The checkout's root (`TRAIN_TICKET_DIR`).
    pub root: PathBuf,
    /// The EvoMaster stand-in (`EVOMASTER_TEST`).
    pub evomaster_test: PathBuf,
    /// The folder holding the `blade` stand-in (first on `PATH`).
    pub bin: PathBuf,
    /// The `blade` stand-in's log (`BLADE_LOG`).
    pub blade_log: PathBuf,
}

impl Checkout {
    /// The variables the campaign plans read these paths from.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TRAIN_TICKET_DIR", self.root.display().to_string()),
            ("EVOMASTER_TEST", self.evomaster_test.display().to_string()),
            ("PATH", {
                let path = std::env::var_os("PATH").unwrap_or_default();
                let dirs = std::iter::once(self.bin.clone()).chain(std::env::split_paths(&path));
                std::env::join_paths(dirs)
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_else(|_| self.bin.display().to_string())
            }),
            ("BLADE_LOG", self.blade_log.display().to_string()),
        ]
    }
}

/// The services' manifest: one Deployment per service of the simulated cluster.
pub fn deploy_yaml() -> String {
    let mut out = String::new();
    for name in TRAIN_TICKET_SERVICES {
        let port = TRAIN_TICKET_SERVICE_PORTS
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| *p);
        if !out.is_empty() {
            out.push_str("---\n");
        }
        out.push_str(&format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  \
             selector:\n    matchLabels:\n      app: {name}\n  replicas: 1\n  template:\n    \
             metadata:\n      labels:\n        app: {name}\n    spec:\n      containers:\n        \
             - name: {name}\n          image: codewisdom/{name}:1.0.0\n          \
             imagePullPolicy: IfNotPresent\n"
        ));
        if let Some(port) = port {
            out.push_str(&format!(
                "          ports:\n            - containerPort: {port}\n"
            ));
        }
        out.push_str(
            "          resources:\n            requests: {cpu: 200m, memory: 300Mi}\n            \
             limits: {cpu: 500m, memory: 1000Mi}\n",
        );
        if let Some(port) = port {
            out.push_str(&format!(
                "          readinessProbe:\n            tcpSocket: {{port: {port}}}\n            \
                 initialDelaySeconds: 160\n            periodSeconds: 10\n            timeoutSeconds: 5\n"
            ));
        }
    }
    out
}

fn write_file(path: &Path, text: &str, executable: bool) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text)?;
    if executable {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// Writes the checkout under `dir` (`<dir>/train-ticket`, `<dir>/evomaster`).
///
/// # Errors
/// The files cannot be written.
pub fn write(dir: &Path) -> io::Result<Checkout> {
    let root = dir.join("train-ticket");
    write_file(&root.join("hack/deploy/deploy.sh"), DEPLOY_SH, true)?;
    write_file(
        &root.join("deployment/kubernetes-manifests/quickstart-k8s/yamls/deploy.yaml"),
        &deploy_yaml(),
        false,
    )?;
    let evomaster_test = dir.join("evomaster/EvoMaster_successes_Test.py");
    write_file(&evomaster_test, EVOMASTER_STANDIN, true)?;
    let bin = dir.join("bin");
    write_file(&bin.join("blade"), crate::FAKE_BLADE, true)?;
    // The Java services' class files (and jars, sources) the coverage agents' probes belong
    // to, where `coverage-report` looks for a built checkout's.
    crate::jacoco::write_checkout_classes(&root)?;
    Ok(Checkout {
        root,
        evomaster_test,
        bin,
        blade_log: dir.join("blade.log"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_has_one_deployment_per_simulated_service() {
        let docs: Vec<serde_json::Value> = deploy_yaml()
            .split("---\n")
            .map(|d| serde_yaml_ng::from_str(d).unwrap())
            .collect();
        assert_eq!(docs.len(), TRAIN_TICKET_SERVICES.len());
        for (d, name) in docs.iter().zip(TRAIN_TICKET_SERVICES) {
            assert_eq!(d["kind"], "Deployment");
            assert_eq!(d["spec"]["template"]["metadata"]["labels"]["app"], *name);
            assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], *name);
        }
        let gateway = docs
            .iter()
            .find(|d| d["metadata"]["name"] == "ts-gateway-service")
            .unwrap();
        assert_eq!(
            gateway["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
            18888
        );
    }

    #[test]
    fn the_checkout_is_written_with_an_executable_deploy_script() {
        let dir = tempfile::tempdir().unwrap();
        let c = write(dir.path()).unwrap();
        let out = std::process::Command::new("bash")
            .arg(c.root.join("hack/deploy/deploy.sh"))
            .arg("default")
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("already runs Train-Ticket"));
        assert!(c.evomaster_test.is_file());
    }
}
