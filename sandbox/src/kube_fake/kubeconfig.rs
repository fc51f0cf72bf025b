//! A kubeconfig for the fake: plain `http://` server (kube's connector is `https_or_http`),
//! context `fake`, user `fake` with a static bearer token.

use std::path::{Path, PathBuf};

pub fn write(dir: &Path, server: &str, token: &str) -> PathBuf {
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: {server}
contexts:
- name: fake
  context:
    cluster: fake
    user: fake
    namespace: default
current-context: fake
users:
- name: fake
  user:
    token: {token}
preferences: {{}}
"
    );
    let path = dir.join("kubeconfig");
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}
