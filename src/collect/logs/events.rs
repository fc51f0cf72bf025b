//! The namespace's core/v1 Events as `kubectl get events -o json` prints them: a `v1` `List`
//! whose items are full Event objects (with `apiVersion`/`kind`, which the API server leaves
//! out of list items). Pages of [`PAGE`] events are written as they arrive, so a namespace
//! with a long event history is never held in memory at once.

use std::io;
use std::path::Path;

use ::kube::api::{Api, DynamicObject, ListParams};
use ::kube::core::TypeMeta;
use ::kube::discovery::ApiResource;
use k8s_openapi::api::core::v1::Event;
use tokio::io::AsyncWriteExt;

use crate::atomic_write::AtomicFile;
use crate::kube::{Kube, KubeError};

/// Events per list request.
const PAGE: u32 = 500;

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error(transparent)]
    Api(#[from] KubeError),
    #[error("writing {}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Lists the events of `namespace` into `path`; returns how many were written.
///
/// # Errors
/// A failed list request (the file is then not created) or a disk error.
pub async fn write_events(kube: &Kube, namespace: &str, path: &Path) -> Result<u64, EventsError> {
    let io_err = |source| EventsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let api: Api<DynamicObject> = Api::namespaced_with(
        kube.client.clone(),
        namespace,
        &ApiResource::erase::<Event>(&()),
    );
    let target = path.to_path_buf();
    let mut file = tokio::task::spawn_blocking(move || AtomicFile::create(&target))
        .await
        .map_err(io::Error::other)
        .and_then(|r| r)
        .map_err(io_err)?;
    let mut out = tokio::fs::File::from_std(file.file().try_clone().map_err(io_err)?);
    out.write_all(b"{\n  \"apiVersion\": \"v1\",\n  \"items\": [")
        .await
        .map_err(io_err)?;
    let mut count = 0u64;
    let mut lp = ListParams::default().limit(PAGE);
    loop {
        let page = api
            .list(&lp)
            .await
            .map_err(kube.err(format!("listing events in namespace {namespace}")))?;
        let mut buf = Vec::new();
        for mut event in page.items {
            event.types = Some(TypeMeta {
                api_version: "v1".into(),
                kind: "Event".into(),
            });
            buf.extend_from_slice(if count == 0 { b"\n" } else { b",\n" });
            write_indented(&mut buf, &event).map_err(io_err)?;
            count += 1;
        }
        out.write_all(&buf).await.map_err(io_err)?;
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => break,
        }
    }
    let close: &[u8] = if count == 0 { b"],\n" } else { b"\n  ],\n" };
    out.write_all(close).await.map_err(io_err)?;
    out.write_all(
        b"  \"kind\": \"List\",\n  \"metadata\": {\n    \"resourceVersion\": \"\"\n  }\n}\n",
    )
    .await
    .map_err(io_err)?;
    out.flush().await.map_err(io_err)?;
    drop(out);
    tokio::task::spawn_blocking(move || file.commit().map(drop))
        .await
        .map_err(io::Error::other)
        .and_then(|r| r)
        .map_err(io_err)?;
    Ok(count)
}

/// Pretty JSON of one item, indented to sit inside `items` (JSON strings hold no raw newline,
/// so indenting after each newline cannot change a value).
fn write_indented(buf: &mut Vec<u8>, item: &DynamicObject) -> io::Result<()> {
    let text = serde_json::to_string_pretty(item).map_err(io::Error::other)?;
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            buf.push(b'\n');
        }
        buf.extend_from_slice(b"    ");
        buf.extend_from_slice(line.as_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_indented_full_objects() {
        let mut ev: DynamicObject = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "x.1", "namespace": "default"},
            "reason": "Started", "message": "line\nbreak",
        }))
        .unwrap();
        ev.types = Some(TypeMeta {
            api_version: "v1".into(),
            kind: "Event".into(),
        });
        let mut buf = Vec::new();
        write_indented(&mut buf, &ev).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(
            text.starts_with("    {\n      \"apiVersion\": \"v1\",\n      \"kind\": \"Event\""),
            "{text}"
        );
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["message"], "line\nbreak");
    }
}
