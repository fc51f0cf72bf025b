//! JaCoCo agents in tcpserver mode, one per Java service, reached through the fake API
//! server's pod port-forward like the real ones (`-javaagent:…=output=tcpserver,port=6300,
//! sessionid=$(POD_NAME)`, see `ttplan instrument`).
//!
//! Modelled on `org.jacoco.agent.rt.internal.output.TcpServerOutput` (one worker thread:
//! `serverSocket.accept()`, then the connection runs to its end before the next accept;
//! backlog 1) and `TcpConnection` (`RemoteControlWriter` writes its header once per
//! connection, buffered until the first answer; `RemoteControlReader` requires the client's
//! header first, serves any number of `40 <dump> <reset>` commands, each answered by
//! `RuntimeData.collect` — one session block, the classes with hits — or a bare reset, then
//! `20`; a `20` from the client or EOF ends the connection; anything else is an IOException
//! that closes it).
//!
//! What the probes say comes from the simulation: [`World::calls`] (the `class#method`s
//! simulated traffic ran in the pod since its last reset) sets that method's single probe
//! (see [`super::classfile`]); `<init>` is hit at start-up (Spring creates its beans when the
//! JVM starts), so only until the first reset. The session's start is the pod's creation
//! or its last reset (`RuntimeData.reset` restarts `startTimeStamp`).
//!
//! A pod-kill gives the service a new pod: the agent is registered by the pod's `app` label,
//! so port-forwards to the new pod reach it, and it answers as that pod (its name as session
//! id, its own calls). Train-Ticket runs one replica per service; with several, the agent
//! answers as the newest.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::classfile::{class_id, SimClass};
use super::wire;
use crate::kube_fake::FakeKube;
use crate::train_ticket::{classes, JAVA_SERVICES};
use crate::world::World;

/// The agent port the campaign's `instrument` step configures.
pub const AGENT_PORT: u16 = 6300;

/// One service's classes as its agent knows them: the class, its id (CRC64 of the same bytes
/// the checkout holds), in class-file method order.
#[derive(Clone)]
struct Loaded {
    class: SimClass,
    id: u64,
}

/// The simulated classes of a Java service, as [`crate::train_ticket::classes`] lists them.
pub fn sim_classes(app: &str) -> Vec<SimClass> {
    classes(app)
        .into_iter()
        .map(|(name, methods)| SimClass { name, methods })
        .collect()
}

struct AgentState {
    world: World,
    namespace: String,
    app: String,
    classes: Vec<Loaded>,
    /// Pod → the time (epoch ms) of its agent's last reset.
    resets: Arc<Mutex<HashMap<String, i64>>>,
}

/// The running agents; they stop when this is dropped.
pub struct Agents {
    addrs: BTreeMap<String, SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Agents {
    /// Starts an agent for every Java service of Train-Ticket in `namespace` and makes it the
    /// port-forward target of `port` on that service's pods.
    ///
    /// # Panics
    /// When no runtime thread or loopback port can be had (as the other fakes).
    pub fn start(kube: &FakeKube, world: &World, namespace: &str, port: u16) -> Agents {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let resets: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
        let states: Vec<AgentState> = JAVA_SERVICES
            .iter()
            .map(|(app, _)| AgentState {
                world: world.clone(),
                namespace: namespace.to_string(),
                app: app.to_string(),
                classes: sim_classes(app)
                    .into_iter()
                    .map(|class| Loaded {
                        id: class_id(&class.class_bytes()),
                        class,
                    })
                    .collect(),
                resets: Arc::clone(&resets),
            })
            .collect();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("sandbox-jacoco")
                .enable_all()
                .build()
                .expect("a runtime for the JaCoCo agents");
            rt.block_on(async move {
                for state in states {
                    let listener = TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("a loopback port for a JaCoCo agent");
                    let addr = listener.local_addr().expect("the agent's address");
                    let _ = addr_tx.send((state.app.clone(), addr));
                    tokio::spawn(serve(listener, Arc::new(state)));
                }
                drop(addr_tx);
                let _ = stop_rx.await;
            });
        });
        let addrs: BTreeMap<String, SocketAddr> = addr_rx.iter().collect();
        for (app, addr) in &addrs {
            kube.set_forward(app, port, &addr.to_string());
        }
        Agents {
            addrs,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// The agent of `app`, for direct connections (tests).
    pub fn addr(&self, app: &str) -> Option<SocketAddr> {
        self.addrs.get(app).copied()
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `TcpServerOutput`'s worker: one connection at a time.
async fn serve(listener: TcpListener, state: Arc<AgentState>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        // An IOException closes the connection; the worker goes back to accepting.
        let _ = connection(stream, &state).await;
    }
}

/// `TcpConnection.run`: reads commands until the client's command-ok, EOF or a bad block.
async fn connection(mut s: TcpStream, state: &AgentState) -> std::io::Result<()> {
    let _ = s.set_nodelay(true);
    let mut header_pending = true;
    let mut first = true;
    loop {
        let block = match s.read_u8().await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        if first && block != wire::BLOCK_HEADER {
            return Err(invalid("Invalid execution data file."));
        }
        first = false;
        match block {
            wire::BLOCK_HEADER => {
                if s.read_u16().await? != wire::MAGIC {
                    return Err(invalid("Invalid execution data file."));
                }
                let version = s.read_u16().await?;
                if version != wire::FORMAT_VERSION {
                    return Err(invalid(&format!("Incompatible version {version:x}.")));
                }
            }
            wire::BLOCK_CMD_DUMP => {
                let dump = s.read_u8().await? != 0;
                let reset = s.read_u8().await? != 0;
                let mut out = Vec::new();
                if std::mem::take(&mut header_pending) {
                    wire::header(&mut out);
                }
                state.answer(dump, reset, &mut out);
                out.push(wire::BLOCK_CMD_OK);
                // The real agent's bytes arrive in fragments (the header often one byte
                // first): so do these.
                s.write_all(&out[..1]).await?;
                s.flush().await?;
                s.write_all(&out[1..]).await?;
                s.flush().await?;
            }
            wire::BLOCK_CMD_OK => return Ok(()),
            other => return Err(invalid(&format!("Unknown block type {other:x}."))),
        }
    }
}

fn invalid(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

impl AgentState {
    /// `TcpConnection.visitDumpCommand`: `RuntimeData.collect` (session, classes, then the
    /// reset when asked) or a bare `RuntimeData.reset`.
    fn answer(&self, dump: bool, reset: bool, out: &mut Vec<u8>) {
        let now = Utc::now();
        let now_ms = now.timestamp_millis();
        let pod = self
            .world
            .pods_at(now)
            .into_iter()
            .filter(|p| {
                p.namespace == self.namespace
                    && p.labels.get("app").map(String::as_str) == Some(self.app.as_str())
            })
            .max_by_key(|p| p.created);
        // Between a pod's deletion and its successor, a port-forward has no pod to reach; a
        // connection that got here anyway answers as an agent with no session data yet.
        let (pod_name, created_ms) = match &pod {
            Some(p) => (p.name.clone(), p.created.timestamp_millis()),
            None => (format!("{}-starting", self.app), now_ms),
        };
        let mut resets = self.resets.lock().unwrap_or_else(|e| e.into_inner());
        let last_reset = resets.get(&pod_name).copied();
        if dump {
            let calls = self.world.calls(&pod_name, reset);
            wire::session_info(out, &pod_name, last_reset.unwrap_or(created_ms), now_ms);
            for l in &self.classes {
                let probes: Vec<bool> = l
                    .class
                    .methods_with_init()
                    .iter()
                    .map(|m| {
                        calls.contains(&format!("{}#{m}", l.class.name))
                            || (*m == "<init>" && last_reset.is_none())
                    })
                    .collect();
                wire::class_execution(out, l.id, &l.class.vm_name(), &probes);
            }
        } else if reset {
            self.world.calls(&pod_name, true);
        }
        if reset {
            resets.insert(pod_name, now_ms);
        }
    }
}
