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
                if state.answer(dump, reset, &mut out).is_none() {
                    return Err(std::io::ErrorKind::ConnectionReset.into());
                }
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
    /// reset when asked) or a bare `RuntimeData.reset`; `None` when the service has no live pod.
    fn answer(&self, dump: bool, reset: bool, out: &mut Vec<u8>) -> Option<()> {
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
        // A connection that outlived its pod (killed between the port-forward and this
        // command): its JVM is gone, so is the connection.
        let pod = pod?;
        let (pod_name, created_ms) = (pod.name.clone(), pod.created.timestamp_millis());
        let mut resets = self.resets.lock().unwrap_or_else(|e| e.into_inner());
        let last_reset = resets.get(&pod_name).copied();
        if dump {
            // `class#method` with the class's binary name; a VM name (slashes) counts too.
            let calls: std::collections::BTreeSet<String> = self
                .world
                .calls(&pod_name, reset)
                .into_iter()
                .map(|c| c.replace('/', "."))
                .collect();
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
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use super::*;

    const CLIENT_HEADER: [u8; 5] = [0x01, 0xC0, 0xC0, 0x10, 0x07];

    /// Reads one answer up to its command-ok (the blocks' lengths are parsed, not guessed).
    fn answer(s: &mut TcpStream) -> Vec<u8> {
        let mut out = Vec::new();
        let byte = |s: &mut TcpStream, out: &mut Vec<u8>| {
            let mut b = [0u8; 1];
            s.read_exact(&mut b).unwrap();
            out.push(b[0]);
            b[0]
        };
        let take = |s: &mut TcpStream, out: &mut Vec<u8>, n: usize| {
            let mut b = vec![0u8; n];
            s.read_exact(&mut b).unwrap();
            out.extend_from_slice(&b);
            b
        };
        loop {
            match byte(s, &mut out) {
                0x01 => {
                    take(s, &mut out, 4);
                }
                0x10 => {
                    let n = take(s, &mut out, 2);
                    take(
                        s,
                        &mut out,
                        usize::from(u16::from_be_bytes([n[0], n[1]])) + 16,
                    );
                }
                0x11 => {
                    take(s, &mut out, 8);
                    let n = take(s, &mut out, 2);
                    take(s, &mut out, usize::from(u16::from_be_bytes([n[0], n[1]])));
                    let len = byte(s, &mut out); // < 128 probes here
                    take(s, &mut out, usize::from(len).div_ceil(8));
                }
                0x20 => return out,
                other => panic!("block {other:#x}"),
            }
        }
    }

    fn classes_in(a: &[u8]) -> usize {
        // Each class block carries its name; count the service's package in the answer.
        a.windows(6).filter(|w| w == b"order/").count()
    }

    #[test]
    fn one_connection_serves_many_commands_with_one_header_and_reset_clears() {
        let kube = FakeKube::builder().train_ticket("default").start();
        let world = World::new(&kube, 0);
        let agents = Agents::start(&kube, &world, "default", AGENT_PORT);
        let pod = kube.pod_names("default", "ts-order-service")[0].clone();
        world.record_call(&pod, "order.service.OrderServiceImpl", "create");
        world.record_call(&pod, "order/controller/OrderController", "handleCreate");
        let mut s = TcpStream::connect(agents.addr("ts-order-service").unwrap()).unwrap();
        s.write_all(&CLIENT_HEADER).unwrap();
        s.write_all(&[0x40, 1, 0]).unwrap();
        let first = answer(&mut s);
        assert_eq!(first[..5], CLIENT_HEADER);
        assert_eq!(first[5], 0x10);
        assert!(first.windows(pod.len()).any(|w| w == pod.as_bytes()));
        assert_eq!(classes_in(&first), 2, "controller <init> and the service");
        // The controller's probes, `<init>` and one per handler (the class table's count):
        // `<init>` (start-up) and `handleCreate` (recorded with the VM name) hit.
        let probes = 1 + crate::train_ticket::classes("ts-order-service")[0].1.len();
        let ctl = b"order/controller/OrderController";
        let at = first.windows(ctl.len()).position(|w| w == ctl).unwrap() + ctl.len();
        assert_eq!(first[at..at + 2], [probes as u8, 0b11]);
        // Same connection: no second header; dump + reset, then reset only, then a dump.
        s.write_all(&[0x40, 1, 1]).unwrap();
        let second = answer(&mut s);
        assert_eq!(second[0], 0x10);
        assert_eq!(classes_in(&second), 2);
        s.write_all(&[0x40, 0, 1]).unwrap();
        assert_eq!(answer(&mut s), [0x20]);
        s.write_all(&[0x40, 1, 0]).unwrap();
        let empty = answer(&mut s);
        assert_eq!(classes_in(&empty), 0, "reset cleared the probes");
        // The client's command-ok ends the connection.
        s.write_all(&[0x20]).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());

        // A client without the header is refused: the agent closes the connection.
        let mut bad = TcpStream::connect(agents.addr("ts-order-service").unwrap()).unwrap();
        bad.write_all(&[0x40, 1, 0]).unwrap();
        let mut rest = Vec::new();
        let _ = bad.read_to_end(&mut rest);
        assert!(rest.is_empty());
        // The agent keeps serving afterwards.
        let mut again = TcpStream::connect(agents.addr("ts-order-service").unwrap()).unwrap();
        again.write_all(&CLIENT_HEADER).unwrap();
        again.write_all(&[0x40, 0, 0]).unwrap();
        assert_eq!(answer(&mut again), [0x01, 0xC0, 0xC0, 0x10, 0x07, 0x20]);
        assert!(agents.addr("ts-ui-dashboard").is_none(), "no JVM, no agent");
    }
}
