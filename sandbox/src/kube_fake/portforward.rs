//! Pod port-forward over WebSocket, as the kubelet serves it: the client offers
//! `v5.channel.k8s.io, v4.channel.k8s.io`; port-forward speaks only the binary v4 channel
//! protocol, so the answer is `v4.channel.k8s.io`. Per port i, channel 2i carries data and
//! 2i+1 errors; the first frame on each channel is the port number (u16 little-endian).
//! Data is relayed to the local TCP address configured for the pod and port; a port without
//! one (or whose target refuses) gets the kubelet's error message on its error channel.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::server::{full, Body};
use super::status::ApiError;
use super::Shared;

const PROTOCOL: &str = "v4.channel.k8s.io";

enum Out {
    Frame(Vec<u8>),
    PortDone,
}

pub async fn handle(
    shared: &Arc<Shared>,
    path: &str,
    ports: &[&str],
    mut req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let ["api", "v1", "namespaces", ns, "pods", name, "portforward"] = segs.as_slice() else {
        return Err(ApiError::bad_request(
            "only pods/portforward can be upgraded to a WebSocket by the fake",
        ));
    };
    let pods_def = shared.def("", "pods").expect("pods").clone();
    let pod = shared.lock().store.get(&pods_def, Some(ns), name)?;
    let ports: Vec<u16> = ports
        .iter()
        .flat_map(|p| p.split(','))
        .map(|p| {
            p.trim()
                .parse::<u16>()
                .map_err(|_| ApiError::bad_request(&format!("invalid port {p:?}")))
        })
        .collect::<Result<_, _>>()?;
    if ports.is_empty() {
        return Err(ApiError::bad_request("at least one port must be specified"));
    }
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let offered = header("sec-websocket-protocol").unwrap_or_default();
    if !offered.split(',').any(|p| p.trim() == PROTOCOL) {
        return Err(ApiError::bad_request(&format!(
            "unable to upgrade connection: subprotocols {offered:?} not supported, want {PROTOCOL}"
        )));
    }
    let key = header("sec-websocket-key")
        .ok_or_else(|| ApiError::bad_request("missing Sec-WebSocket-Key"))?;

    // Targets: by pod name, else by its `app` label / workload name.
    let app = pod["metadata"]["labels"]["app"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let workload = shared
        .lock()
        .pods
        .get(&(ns.to_string(), name.to_string()))
        .and_then(|r| r.workload.clone())
        .map(|w| w.1)
        .unwrap_or_default();
    let targets: Vec<Option<String>> = {
        let fw = shared.forwards.lock().unwrap_or_else(|e| e.into_inner());
        ports
            .iter()
            .map(|p| {
                [name.to_string(), workload.clone(), app.clone()]
                    .into_iter()
                    .find_map(|k| fw.get(&(k, *p)).cloned())
            })
            .collect()
    };
    let sandbox = super::util::random_hex(64);
    let on_upgrade = hyper::upgrade::on(&mut req);
    shared.rt.spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        relay(ws, ports, targets, sandbox).await;
    });
    Ok(Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", derive_accept_key(key.as_bytes()))
        .header("sec-websocket-protocol", PROTOCOL)
        .body(full(""))
        .expect("101 response"))
}

async fn relay<S>(
    ws: WebSocketStream<S>,
    ports: Vec<u16>,
    targets: Vec<Option<String>>,
    sandbox: String,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    for (i, p) in ports.iter().enumerate() {
        let [lo, hi] = p.to_le_bytes();
        for ch in [2 * i as u8, 2 * i as u8 + 1] {
            if sink.send(Message::binary(vec![ch, lo, hi])).await.is_err() {
                return;
            }
        }
    }
    let (tx, mut rx) = mpsc::channel::<Out>(64);
    let mut writers = Vec::new();
    for (i, (port, target)) in ports.iter().zip(targets).enumerate() {
        let conn = match &target {
            Some(addr) => tokio::net::TcpStream::connect(addr.as_str())
                .await
                .map_err(|e| e.to_string()),
            None => Err("connect: connection refused".to_string()),
        };
        match conn {
            Ok(tcp) => {
                let (mut r, w) = tcp.into_split();
                writers.push(Some(w));
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 32 * 1024];
                    loop {
                        match r.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                let mut frame = Vec::with_capacity(n + 1);
                                frame.push(2 * i as u8);
                                frame.extend_from_slice(&buf[..n]);
                                if tx.send(Out::Frame(frame)).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    let _ = tx.send(Out::PortDone).await;
                });
            }
            Err(why) => {
                writers.push(None);
                let msg = format!(
                    "error forwarding port {port} to pod {sandbox}, uid : failed to execute portforward in network namespace \"/var/run/netns/cni-fake\": failed to connect to localhost:{port} inside namespace \"{sandbox}\", IPv4: dial tcp4 127.0.0.1:{port}: {why} IPv6 dial tcp6 [::1]:{port}: connect: connection refused "
                );
                let mut frame = vec![2 * i as u8 + 1];
                frame.extend_from_slice(msg.as_bytes());
                let _ = tx.send(Out::Frame(frame)).await;
                let _ = tx.send(Out::PortDone).await;
            }
        }
    }
    drop(tx);
    let mut open = ports.len();
    loop {
        tokio::select! {
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Binary(data))) if !data.is_empty() => {
                    let ch = data[0] as usize;
                    if ch % 2 == 0 {
                        if let Some(Some(w)) = writers.get_mut(ch / 2) {
                            if w.write_all(&data[1..]).await.is_err() {
                                writers[ch / 2] = None;
                            }
                        }
                    }
                }
                Some(Ok(Message::Close(_))) => {
                    // Complete the closing handshake (flushes tungstenite's queued Close reply).
                    let _ = sink.close().await;
                    break;
                }
                None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            out = rx.recv() => match out {
                Some(Out::Frame(f)) => {
                    if sink.send(Message::binary(f)).await.is_err() {
                        break;
                    }
                }
                Some(Out::PortDone) => {
                    open -= 1;
                    if open == 0 {
                        // Every port is finished: close the WebSocket like the kubelet does.
                        let _ = sink.send(Message::Close(None)).await;
                        while let Some(Ok(m)) = stream.next().await {
                            if m.is_close() {
                                break;
                            }
                        }
                        break;
                    }
                }
                None => break,
            },
        }
    }
    for w in writers.iter_mut().flatten() {
        let _ = w.shutdown().await;
    }
}
