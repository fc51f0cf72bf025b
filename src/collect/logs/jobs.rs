//! Which logs of which containers a collection fetches, and under which file names; the pods,
//! containers and skips it records on the way.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::naming::{self, Instance};
use super::report::{ContainerReport, ErrorReport, PodReport, Skipped};
use super::{rel_string, LogsPart, Settings};

/// One log to fetch.
#[derive(Debug, Clone)]
pub(super) struct Job {
    pub(super) pod: String,
    pub(super) container: String,
    pub(super) instance: Instance,
    pub(super) abs: PathBuf,
    pub(super) rel: String,
    /// Files that get the same bytes (the per-container file of a default container).
    pub(super) copies: Vec<(PathBuf, String)>,
}

/// Decides which logs of which containers to fetch, recording pods, containers and skips.
pub(super) fn plan_jobs(
    pods: &[Pod],
    settings: &Settings,
    ts: &str,
    dir_abs: &Path,
    part: &mut LogsPart,
) -> Vec<Job> {
    let mut planner = Planner {
        settings,
        ts,
        dir_abs,
        part,
        jobs: Vec::new(),
    };
    for pod in pods {
        planner.pod(pod);
    }
    planner.jobs
}

/// What the per-pod and per-container phases of [`plan_jobs`] share.
struct Planner<'a> {
    settings: &'a Settings,
    ts: &'a str,
    dir_abs: &'a Path,
    part: &'a mut LogsPart,
    jobs: Vec<Job>,
}

/// The facts about a pod that name its log files.
struct PodLayout {
    name: String,
    /// With several containers, every container also gets a file of its own.
    several: bool,
    /// The container whose log is the pod-level file.
    default: Option<String>,
}

impl Planner<'_> {
    fn pod(&mut self, pod: &Pod) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        if !naming::safe_component(&name) {
            self.part.errors.push(ErrorReport {
                pod: Some(name.clone()),
                container: None,
                instance: None,
                not_found: false,
                message: format!(
                    "pod name {name:?} in namespace {} cannot be a file name; skipped",
                    self.settings.namespace
                ),
            });
            return;
        }
        let spec_containers: Vec<String> = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter().map(|c| c.name.clone()))
            .collect();
        let annotation = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(naming::DEFAULT_CONTAINER_ANNOTATION))
            .map(String::as_str);
        let layout = PodLayout {
            name,
            several: spec_containers.len() > 1,
            default: naming::default_container(annotation, &spec_containers).map(str::to_string),
        };
        let statuses: Vec<&ContainerStatus> = pod
            .status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten())
            .collect();
        let mut containers = Vec::new();
        for c in &spec_containers {
            let status = statuses.iter().find(|s| &s.name == c).copied();
            containers.push(container_report(c, status));
            self.container(&layout, c, status);
        }
        self.part.pods.push(PodReport {
            name: layout.name,
            phase: pod.status.as_ref().and_then(|s| s.phase.clone()),
            node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            vanished: false,
            containers,
        });
    }

    fn container(&mut self, pod: &PodLayout, c: &str, status: Option<&ContainerStatus>) {
        if !naming::safe_component(c) {
            self.part.errors.push(ErrorReport {
                pod: Some(pod.name.clone()),
                container: Some(c.to_string()),
                instance: None,
                not_found: false,
                message: format!("container name {c:?} cannot be a file name; skipped"),
            });
            return;
        }
        match current_log_skip(status) {
            None => self.job(pod, c, Instance::Current),
            Some(reason) => self.part.skipped.push(Skipped {
                pod: pod.name.clone(),
                container: c.to_string(),
                instance: Instance::Current,
                reason,
            }),
        }
        let restarts = status.map_or(0, |s| s.restart_count);
        if self.settings.previous && restarts > 0 {
            self.job(pod, c, Instance::Previous);
        }
    }

    fn job(&mut self, pod: &PodLayout, c: &str, instance: Instance) {
        let name = &pod.name;
        let path = |per_container: bool| {
            let file = naming::log_file_name(name, c, per_container, instance, self.ts);
            (
                self.dir_abs.join(name).join(&file),
                rel_string(&self.settings.dir.join(name).join(&file)),
            )
        };
        // The default container's log is the pod-level file; with several containers its
        // per-container file is a copy, so both hold the same bytes.
        let is_default = pod.default.as_deref() == Some(c);
        let (abs, rel) = path(pod.several && !is_default);
        let copies = if pod.several && is_default {
            vec![path(true)]
        } else {
            Vec::new()
        };
        self.jobs.push(Job {
            pod: name.clone(),
            container: c.to_string(),
            instance,
            abs,
            rel,
            copies,
        });
    }
}

/// Why the current log of a container is not requested, if it is not: a container that never
/// started has none (the API answers 400 "is waiting to start"). A container waiting to restart
/// (CrashLoopBackOff) is requested: the kubelet serves its last terminated instance
/// (`validateContainerLogStatus`), which is what `kubectl logs POD` shows and what the dataset's
/// `<pod>_<ts>.log` holds for a crash-looping pod.
pub(super) fn current_log_skip(status: Option<&ContainerStatus>) -> Option<String> {
    let Some(status) = status else {
        return Some("no container status yet (not started)".into());
    };
    // Running or terminated: the API serves that instance.
    let waiting = status.state.as_ref().and_then(|s| s.waiting.as_ref())?;
    let reason = waiting.reason.clone().unwrap_or_else(|| "waiting".into());
    let last_terminated = status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .is_some();
    (!last_terminated).then(|| format!("waiting to start ({reason})"))
}

fn container_report(name: &str, status: Option<&ContainerStatus>) -> ContainerReport {
    let state = status.and_then(|s| s.state.as_ref()).map_or_else(
        || "unknown".to_string(),
        |st| {
            if st.running.is_some() {
                "running".to_string()
            } else if let Some(w) = &st.waiting {
                format!("waiting: {}", w.reason.as_deref().unwrap_or(""))
            } else if let Some(t) = &st.terminated {
                format!("terminated: {}", t.reason.as_deref().unwrap_or(""))
            } else {
                "unknown".to_string()
            }
        },
    );
    ContainerReport {
        name: name.to_string(),
        restart_count: status.map_or(0, |s| s.restart_count),
        ready: status.is_some_and(|s| s.ready),
        state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn settings() -> Settings {
        Settings {
            namespace: "ts".into(),
            selector: None,
            name_prefixes: Vec::new(),
            since: None,
            tail_lines: None,
            previous: true,
            timestamps: false,
            limit_bytes: None,
            events: false,
            concurrency: 1,
            out_dir: "/out".into(),
            dir: "log_data/exp".into(),
            collected_at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
        }
    }

    /// A pod of two containers whose annotation makes the second the default; the first
    /// restarted once and is running, the second never started.
    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "web-1",
                "annotations": {"kubectl.kubernetes.io/default-container": "app"}
            },
            "spec": {"containers": [{"name": "sidecar"}, {"name": "app"}]},
            "status": {"phase": "Running", "containerStatuses": [{
                "name": "sidecar", "image": "i", "imageID": "", "ready": true,
                "restartCount": 1, "state": {"running": {}}
            }]}
        }))
        .unwrap()
    }

    #[test]
    fn a_restarted_sidecar_gets_its_own_files_and_an_unstarted_default_is_skipped() {
        let settings = settings();
        let mut part = LogsPart::default();
        let jobs = plan_jobs(
            &[pod()],
            &settings,
            "TS",
            Path::new("/out/log_data/exp"),
            &mut part,
        );
        let planned: Vec<(&str, Instance, &str)> = jobs
            .iter()
            .map(|j| (j.container.as_str(), j.instance, j.rel.as_str()))
            .collect();
        assert_eq!(
            planned,
            [
                (
                    "sidecar",
                    Instance::Current,
                    "log_data/exp/web-1/web-1_sidecar_TS.log"
                ),
                (
                    "sidecar",
                    Instance::Previous,
                    "log_data/exp/web-1/web-1_sidecar_previous_TS.log"
                ),
            ]
        );
        assert!(jobs.iter().all(|j| j.copies.is_empty()));
        // `app` has no status: skipped, but still listed as a container of the pod.
        assert_eq!(part.skipped.len(), 1);
        assert_eq!(part.skipped[0].container, "app");
        assert_eq!(part.pods[0].containers.len(), 2);
        assert_eq!(part.pods[0].containers[0].state, "running");
        assert_eq!(part.pods[0].containers[1].state, "unknown");
    }

    #[test]
    fn a_started_default_container_gets_the_pod_level_file_and_its_copy() {
        let mut pod = pod();
        let status = pod.status.as_mut().unwrap();
        let mut app = status.container_statuses.as_ref().unwrap()[0].clone();
        app.name = "app".into();
        app.restart_count = 0;
        status.container_statuses.as_mut().unwrap().push(app);
        let mut part = LogsPart::default();
        let jobs = plan_jobs(
            &[pod],
            &settings(),
            "TS",
            Path::new("/out/log_data/exp"),
            &mut part,
        );
        let app = jobs.iter().find(|j| j.container == "app").unwrap();
        assert_eq!(app.rel, "log_data/exp/web-1/web-1_TS.log");
        assert_eq!(app.abs, Path::new("/out/log_data/exp/web-1/web-1_TS.log"));
        assert_eq!(app.copies.len(), 1);
        assert_eq!(app.copies[0].1, "log_data/exp/web-1/web-1_app_TS.log");
        assert_eq!(jobs.len(), 3);
    }

    #[test]
    fn an_unsafe_pod_name_is_an_error_and_no_job() {
        let mut pod = pod();
        pod.metadata.name = Some("../x".into());
        let mut part = LogsPart::default();
        let jobs = plan_jobs(&[pod], &settings(), "TS", Path::new("/o"), &mut part);
        assert!(jobs.is_empty() && part.pods.is_empty());
        assert!(part.errors[0].message.contains("cannot be a file name"));
    }
}
