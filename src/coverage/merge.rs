//! Merging exec data (JaCoCo's rules) and grouping dumps per service: the pods of one
//! Deployment share a service name once the ReplicaSet and pod hash suffixes are removed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::exec::{ClassData, ExecData};
use super::CoverageError;

/// Accumulates exec data. Same class id → probes OR-ed; same name with a different id → kept
/// apart (two builds of one class; the report picks the id matching its class file).
#[derive(Debug, Default)]
pub struct Merger {
    classes: HashMap<u64, ClassData>,
    sessions: Vec<super::exec::SessionInfo>,
}

impl Merger {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one file's or dump's data.
    ///
    /// # Errors
    /// When a class id is already known under another name, or with another probe count: the
    /// inputs come from different builds that happen to collide, and OR-ing would be wrong.
    pub fn add(&mut self, data: ExecData) -> Result<(), CoverageError> {
        self.sessions.extend(data.sessions);
        for c in data.classes {
            match self.classes.get_mut(&c.id) {
                None => {
                    self.classes.insert(c.id, c);
                }
                Some(have) => {
                    if have.name != c.name {
                        return Err(CoverageError::Conflict {
                            class: c.name,
                            reason: format!(
                                "class id {:#018x} is already recorded for class `{}`",
                                c.id, have.name
                            ),
                        });
                    }
                    if have.probes.len() != c.probes.len() {
                        return Err(CoverageError::Conflict {
                            class: c.name,
                            reason: format!(
                                "class id {:#018x} has {} probes in one input and {} in another",
                                c.id,
                                have.probes.len(),
                                c.probes.len()
                            ),
                        });
                    }
                    for (a, b) in have.probes.iter_mut().zip(c.probes) {
                        *a |= b;
                    }
                }
            }
        }
        Ok(())
    }

    /// The merged data: sessions sorted by dump time (then start, id), classes by name then id
    /// so the output does not depend on input order.
    pub fn finish(self) -> ExecData {
        let mut sessions = self.sessions;
        sessions
            .sort_by(|a, b| (a.dump_ms, a.start_ms, &a.id).cmp(&(b.dump_ms, b.start_ms, &b.id)));
        let mut classes: Vec<ClassData> = self.classes.into_values().collect();
        classes.sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));
        ExecData { sessions, classes }
    }
}

/// Merges exec data.
///
/// # Errors
/// See [`Merger::add`].
pub fn merge(inputs: impl IntoIterator<Item = ExecData>) -> Result<ExecData, CoverageError> {
    let mut m = Merger::new();
    for d in inputs {
        m.add(d)?;
    }
    Ok(m.finish())
}

/// The service a pod belongs to: `ts-order-service-7d9f8b6c5-x2kfz` → `ts-order-service`
/// (Deployment pods end in the pod-template hash and a 5-character pod suffix), and
/// `ts-db-0` → `ts-db` (StatefulSet ordinal). Other names are returned unchanged.
pub fn service_of_pod(pod: &str) -> &str {
    let parts: Vec<&str> = pod.rsplitn(3, '-').collect();
    if parts.len() == 3 && is_pod_suffix(parts[0]) && is_template_hash(parts[1]) {
        return parts[2];
    }
    if let Some((base, ordinal)) = pod.rsplit_once('-') {
        if !base.is_empty() && !ordinal.is_empty() && ordinal.bytes().all(|b| b.is_ascii_digit()) {
            return base;
        }
    }
    pod
}

/// Kubernetes' `rand.SafeEncodeString` alphabet (no vowels, no 0/1/3 — to avoid words).
fn is_safe_char(b: u8) -> bool {
    b"bcdfghjklmnpqrstvwxz2456789".contains(&b)
}

fn is_pod_suffix(s: &str) -> bool {
    s.len() == 5 && s.bytes().all(is_safe_char)
}

fn is_template_hash(s: &str) -> bool {
    (1..=10).contains(&s.len()) && s.bytes().all(is_safe_char)
}

/// Maps pods to services: explicit overrides first, then [`service_of_pod`].
#[derive(Debug, Default, Clone)]
pub struct ServiceMap {
    pub overrides: BTreeMap<String, String>,
}

impl ServiceMap {
    pub fn service<'a>(&'a self, pod: &'a str) -> &'a str {
        self.overrides
            .get(pod)
            .map(String::as_str)
            .unwrap_or_else(|| service_of_pod(pod))
    }
}

/// `<pod>__jacoco-<pod>.exec` → `<pod>`; `None` for other file names.
pub fn pod_of_exec_file(path: &Path) -> Option<&str> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".exec")?;
    let (pod, _) = stem.split_once("__jacoco-")?;
    Some(pod)
}

/// The name `collect-coverage` gives a pod's dump.
pub fn exec_file_name(pod: &str) -> String {
    format!("{pod}__jacoco-{pod}.exec")
}

/// Exec files of a folder grouped per service (sorted, for reproducible merges).
///
/// # Errors
/// When the folder cannot be read.
pub fn exec_files_by_service(
    dir: &Path,
    map: &ServiceMap,
) -> Result<BTreeMap<String, Vec<PathBuf>>, CoverageError> {
    let mut out: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let entries =
        std::fs::read_dir(dir).map_err(CoverageError::io(format!("reading {}", dir.display())))?;
    for e in entries {
        let e = e.map_err(CoverageError::io(format!("reading {}", dir.display())))?;
        let path = e.path();
        if let Some(pod) = pod_of_exec_file(&path) {
            let service = map.service(pod).to_string();
            out.entry(service).or_default().push(path);
        }
    }
    for files in out.values_mut() {
        files.sort();
    }
    Ok(out)
}

/// Reads and merges exec files.
///
/// # Errors
/// When a file cannot be read or parsed (the message names it), or on a merge conflict.
pub fn merge_files(files: &[PathBuf]) -> Result<ExecData, CoverageError> {
    let mut m = Merger::new();
    for f in files {
        let bytes =
            std::fs::read(f).map_err(CoverageError::io(format!("reading {}", f.display())))?;
        let data = ExecData::parse(&bytes).map_err(|e| match e {
            CoverageError::Format(msg) => CoverageError::Format(format!("{}: {msg}", f.display())),
            other => other,
        })?;
        m.add(data)?;
    }
    Ok(m.finish())
}

#[cfg(test)]
mod tests {
    use super::super::exec::SessionInfo;
    use super::*;

    fn class(id: u64, name: &str, probes: &[bool]) -> ClassData {
        ClassData {
            id,
            name: name.into(),
            probes: probes.to_vec(),
        }
    }

    fn session(id: &str, dump_ms: i64) -> SessionInfo {
        SessionInfo {
            id: id.into(),
            start_ms: 0,
            dump_ms,
        }
    }

    #[test]
    fn probes_are_ored_per_class_id_and_sessions_sorted_by_dump_time() {
        let a = ExecData {
            sessions: vec![session("pod-b", 20)],
            classes: vec![class(1, "a/A", &[true, false, false])],
        };
        let b = ExecData {
            sessions: vec![session("pod-a", 10), session("pod-c", 30)],
            classes: vec![
                class(1, "a/A", &[false, false, true]),
                class(2, "a/B", &[true]),
            ],
        };
        let m = merge([a, b]).unwrap();
        assert_eq!(
            m.sessions.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            ["pod-a", "pod-b", "pod-c"]
        );
        assert_eq!(
            m.classes,
            [
                class(1, "a/A", &[true, false, true]),
                class(2, "a/B", &[true])
            ]
        );
    }

    #[test]
    fn same_name_with_different_ids_stays_apart() {
        let m = merge([
            ExecData {
                sessions: vec![],
                classes: vec![class(1, "a/A", &[true])],
            },
            ExecData {
                sessions: vec![],
                classes: vec![class(2, "a/A", &[false, true])],
            },
        ])
        .unwrap();
        assert_eq!(m.classes.len(), 2);
    }

    #[test]
    fn conflicts_name_the_class() {
        let one = |c| ExecData {
            sessions: vec![],
            classes: vec![c],
        };
        let e = merge([
            one(class(7, "a/A", &[true])),
            one(class(7, "a/Other", &[true])),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("class `a/Other`"), "{e}");
        assert!(e.contains("already recorded for class `a/A`"), "{e}");
        let e = merge([
            one(class(7, "a/A", &[true])),
            one(class(7, "a/A", &[true, true])),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("class `a/A`"), "{e}");
        assert!(e.contains("1 probes in one input and 2 in another"), "{e}");
    }

    #[test]
    fn pods_map_to_their_service() {
        assert_eq!(
            service_of_pod("ts-order-service-7d9f8b6c5-x2kfz"),
            "ts-order-service"
        );
        assert_eq!(
            service_of_pod("ts-travel2-service-6b4c7d8f9b-zq2w4"),
            "ts-travel2-service"
        );
        assert_eq!(service_of_pod("ts-mysql-0"), "ts-mysql");
        // Not hash-like: vowels are never in generated suffixes.
        assert_eq!(service_of_pod("ts-order-service"), "ts-order-service");
        assert_eq!(service_of_pod("standalone"), "standalone");
        let mut map = ServiceMap::default();
        map.overrides
            .insert("legacy-pod-1".into(), "ts-legacy-service".into());
        assert_eq!(map.service("legacy-pod-1"), "ts-legacy-service");
        assert_eq!(map.service("ts-a-service-5d6f7-bcdfg"), "ts-a-service");
    }

    #[test]
    fn exec_file_names_round_trip() {
        let name = exec_file_name("ts-a-service-5d6f7-bcdfg");
        assert_eq!(
            name,
            "ts-a-service-5d6f7-bcdfg__jacoco-ts-a-service-5d6f7-bcdfg.exec"
        );
        assert_eq!(
            pod_of_exec_file(Path::new(&name)),
            Some("ts-a-service-5d6f7-bcdfg")
        );
        assert_eq!(pod_of_exec_file(Path::new("other.exec")), None);
    }
}
