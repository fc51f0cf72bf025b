//! A real JVM with Debian's JaCoCo agent in tcpserver mode, and Ant's JaCoCo tasks as the
//! reference implementation. Missing tools make the test fail with what to install: a
//! coverage test that passes without a JVM proves nothing.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const LIB: &str = "/usr/share/java";

/// Fails the test (with the fix) unless javac, java, ant and libjacoco-java are installed.
pub fn require_tools() {
    let mut missing = Vec::new();
    for tool in ["javac", "java", "ant"] {
        let ok = Command::new(tool)
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            missing.push(tool.to_string());
        }
    }
    for jar in ttplan::coverage::report::ANT_JARS {
        if !Path::new(LIB).join(jar).is_file() {
            missing.push(format!("{LIB}/{jar}"));
        }
    }
    assert!(
        missing.is_empty(),
        "coverage tests need a JDK, Ant and Debian's libjacoco-java; missing: {}.\n\
         Install them with `bash scripts/deps/coverage.sh` (scripts/test.sh does it).",
        missing.join(", ")
    );
}

/// `javac --release 11` of `(file name, source)` pairs into `dir/classes`.
pub fn compile(dir: &Path, sources: &[(&str, &str)]) -> PathBuf {
    let src = dir.join("src");
    let classes = dir.join("classes");
    std::fs::create_dir_all(&src).unwrap();
    let mut cmd = Command::new("javac");
    cmd.args(["--release", "11", "-g", "-d"]).arg(&classes);
    for (name, text) in sources {
        let p = src.join(name);
        std::fs::write(&p, text).unwrap();
        cmd.arg(p);
    }
    let out = cmd.output().expect("running javac");
    assert!(
        out.status.success(),
        "javac failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    classes
}

/// The real `-javaagent` jar packed inside Debian's `org.jacoco.agent.jar` (the `.rt.jar`
/// beside it has no Premain-Class).
pub fn extract_agent(dir: &Path) -> PathBuf {
    let f = std::fs::File::open(Path::new(LIB).join("org.jacoco.agent.jar")).unwrap();
    let mut zip = zip::ZipArchive::new(f).unwrap();
    let mut entry = zip.by_name("jacocoagent.jar").unwrap();
    let dest = dir.join("jacocoagent.jar");
    let mut out = std::fs::File::create(&dest).unwrap();
    std::io::copy(&mut entry, &mut out).unwrap();
    dest
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running program with the agent; killed on drop.
pub struct Jvm {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    pub port: u16,
}

impl Jvm {
    /// Starts `main_class` with the agent (tcpserver on a free loopback port) and waits for
    /// its first stdout line: the agent's server socket is open before `main` runs.
    pub fn start(agent: &Path, classes: &Path, main_class: &str, session: &str) -> Jvm {
        let port = free_port();
        let mut child = Command::new("java")
            .arg(format!(
                "-javaagent:{}=output=tcpserver,port={port},address=127.0.0.1,sessionid={session}",
                agent.display()
            ))
            .arg("-cp")
            .arg(classes)
            .arg(main_class)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting java");
        let stdin = child.stdin.take().unwrap();
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut jvm = Jvm {
            child,
            stdin,
            lines,
            port,
        };
        jvm.expect_line("phase1");
        jvm
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Waits (up to 30 s) for a stdout line starting with `prefix`.
    pub fn expect_line(&mut self, prefix: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(30)) {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(_) => continue,
                Err(e) => panic!("the JVM did not print `{prefix}…`: {e}"),
            }
        }
    }

    pub fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }
}

impl Drop for Jvm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs an Ant build file with JaCoCo's tasks defined; `body` is the target's content.
pub fn ant(dir: &Path, body: &str) {
    let cp = ttplan::coverage::report::ant_classpath(Path::new(LIB)).unwrap();
    let build = dir.join("build.xml");
    std::fs::write(&build, ttplan::coverage::report::ant_build_xml(&cp, body)).unwrap();
    let out = Command::new("ant")
        .arg("-noinput")
        .arg("-f")
        .arg(&build)
        .output()
        .expect("running ant");
    assert!(
        out.status.success(),
        "ant failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
