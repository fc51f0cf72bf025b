//! The built Train-Ticket checkout as far as coverage reports need it: per Java service, the
//! class files the sandbox's agents report probes for, where a Maven build leaves them
//! (`<service>/target/classes/…` and the Spring Boot jar `<service>/target/<service>-1.0.jar`
//! with `BOOT-INF/classes/…`), and matching sources under `<service>/src/main/java/` for the
//! HTML source view. `coverage-report` with `source_root: <root>` reads exactly these.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::agent::sim_classes;
use crate::train_ticket::JAVA_SERVICES;

/// What [`write_checkout_classes`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    pub services: usize,
    pub classes: usize,
}

/// Writes every Java service's classes, jar and sources under `root` (created if missing;
/// existing files of the same names are replaced).
///
/// # Errors
/// The first file that cannot be written, with its path.
pub fn write_checkout_classes(root: &Path) -> std::io::Result<Written> {
    let mut w = Written::default();
    for (service, _) in JAVA_SERVICES {
        let dir = root.join(service);
        let classes_dir = dir.join("target/classes");
        let jar_path = dir.join("target").join(format!("{service}-1.0.jar"));
        let mut entries = Vec::new();
        for class in sim_classes(service) {
            let bytes = class.class_bytes();
            let rel = format!("{}.class", class.vm_name());
            write(&classes_dir.join(&rel), &bytes)?;
            write(
                &dir.join("src/main/java")
                    .join(format!("{}.java", class.vm_name())),
                class.java_source().as_bytes(),
            )?;
            entries.push((format!("BOOT-INF/classes/{rel}"), bytes));
            w.classes += 1;
        }
        write_jar(&jar_path, &entries).map_err(|e| with_path(&jar_path, e))?;
        w.services += 1;
    }
    Ok(w)
}

fn with_path(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| with_path(parent, e))?;
    }
    std::fs::write(path, bytes).map_err(|e| with_path(path, e))
}

fn write_jar(path: &Path, entries: &[(String, Vec<u8>)]) -> std::io::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut zip = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default();
    let io = |e: zip::result::ZipError| std::io::Error::other(e.to_string());
    zip.start_file("META-INF/MANIFEST.MF", opts).map_err(io)?;
    zip.write_all(
        b"Manifest-Version: 1.0\r\nMain-Class: org.springframework.boot.loader.JarLauncher\r\n\r\n",
    )?;
    for (name, bytes) in entries {
        zip.start_file(name.as_str(), opts).map_err(io)?;
        zip.write_all(bytes)?;
    }
    zip.finish().map_err(io)?;
    Ok(())
}

/// `<root>/<service>/target/classes` of a Java service.
pub fn classes_dir(root: &Path, service: &str) -> PathBuf {
    root.join(service).join("target/classes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_java_service_gets_classes_a_jar_and_sources() {
        let tmp = tempfile::tempdir().unwrap();
        let w = write_checkout_classes(tmp.path()).unwrap();
        assert_eq!(w.services, JAVA_SERVICES.len());
        assert_eq!(w.classes, 2 * JAVA_SERVICES.len());
        let order = tmp.path().join("ts-order-service");
        let class = order.join("target/classes/order/service/OrderServiceImpl.class");
        let bytes = std::fs::read(&class).unwrap();
        assert_eq!(&bytes[..4], &[0xCA, 0xFE, 0xBA, 0xBE]);
        let src = order.join("src/main/java/order/service/OrderServiceImpl.java");
        assert!(std::fs::read_to_string(src)
            .unwrap()
            .contains("public void create() {}"));
        let jar = std::fs::File::open(order.join("target/ts-order-service-1.0.jar")).unwrap();
        let mut zip = zip::ZipArchive::new(jar).unwrap();
        let mut entry = zip
            .by_name("BOOT-INF/classes/order/service/OrderServiceImpl.class")
            .unwrap();
        let mut in_jar = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut in_jar).unwrap();
        assert_eq!(in_jar, bytes);
        assert_eq!(
            classes_dir(tmp.path(), "ts-order-service"),
            order.join("target/classes")
        );
    }
}
