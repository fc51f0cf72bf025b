//! Where an agent is and how to open a byte stream to it. Protocol code only sees the stream
//! ([`AgentStream`]): direct TCP, or a Kubernetes port-forward through the API server.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use ::kube::api::{Api, Portforwarder};
use k8s_openapi::api::core::v1::Pod;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::net::TcpStream;

use crate::kube::Kube;

/// Any stream the dump client can talk over.
pub trait AgentStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AgentStream for T {}

/// How to reach one agent. The port-forward variant names the pod only; the Kubernetes client
/// is passed to [`Transport::connect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// `host:port` reachable from this machine (loopback, a NodePort, a `kubectl port-forward`).
    Direct { address: String },
    /// Port `port` inside pod `namespace/pod`, through the API server's `pods/portforward`
    /// (a WebSocket). One port-forward per connection.
    PodPortForward {
        namespace: String,
        pod: String,
        port: u16,
    },
}

impl Transport {
    /// Opens a stream to the agent. `kube` is needed for [`Transport::PodPortForward`] only.
    ///
    /// # Errors
    /// When the connection cannot be made. `PermissionDenied`: the API server refused the
    /// port-forward (401/403). `ConnectionRefused` means no agent listens there:
    /// for a direct address at once; through a port-forward it comes from the first read or
    /// write, when the kubelet reports that nothing listens on the port (or closes the
    /// forward before any byte).
    pub async fn connect(&self, kube: Option<&Kube>) -> io::Result<Box<dyn AgentStream>> {
        match self {
            Transport::Direct { address } => {
                let s = TcpStream::connect(address.as_str()).await?;
                s.set_nodelay(true)?;
                Ok(Box::new(QuickAck(s)))
            }
            Transport::PodPortForward {
                namespace,
                pod,
                port,
            } => {
                let what = format!("port-forward to pod {namespace}/{pod} port {port}");
                let Some(kube) = kube else {
                    return Err(io::Error::other(format!(
                        "{what}: no Kubernetes client (a bug: the step must pass one)"
                    )));
                };
                let api: Api<Pod> = Api::namespaced(kube.client.clone(), namespace);
                let mut pf = api.portforward(pod, &[*port]).await.map_err(|e| {
                    // Refused for lack of rights: not a property of the pod, reported as a
                    // failure rather than "no agent".
                    let kind = match &e {
                        ::kube::Error::UpgradeConnection(
                            ::kube::client::UpgradeConnectionError::ProtocolSwitch(status),
                        ) if matches!(status.as_u16(), 401 | 403) => {
                            io::ErrorKind::PermissionDenied
                        }
                        _ => io::ErrorKind::Other,
                    };
                    io::Error::new(kind, format!("{what} via {}: {e}", kube.server))
                })?;
                let (Some(stream), Some(error)) = (pf.take_stream(*port), pf.take_error(*port))
                else {
                    pf.abort();
                    return Err(io::Error::other(format!("{what}: the port has no stream")));
                };
                Ok(Box::new(PortForwardStream {
                    stream,
                    error: Some(Box::pin(error)),
                    error_message: None,
                    received: false,
                    forwarder: Some(pf),
                    joining: None,
                    what,
                }))
            }
        }
    }

    /// For reports and messages: the address, or `port-forward <ns>/<pod>:<port>`.
    pub fn describe(&self) -> String {
        match self {
            Transport::Direct { address } => address.clone(),
            Transport::PodPortForward {
                namespace,
                pod,
                port,
            } => format!("port-forward {namespace}/{pod}:{port}"),
        }
    }

    /// `direct` or `port-forward` (recorded in the step outputs).
    pub fn kind(&self) -> &'static str {
        match self {
            Transport::Direct { .. } => "direct",
            Transport::PodPortForward { .. } => "port-forward",
        }
    }
}

type ErrorFuture = Pin<Box<dyn Future<Output = Option<String>> + Send>>;
type JoinFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// One port of a [`Portforwarder`] as an agent stream. What it adds to the bare duplex:
///
/// - the kubelet's error message (its error channel: nothing listens on the port) and a forward
///   that closes before any byte arrived become `ConnectionRefused` errors naming the pod, so
///   the dump reports "no agent" instead of a truncated answer;
/// - shutting it down closes the WebSocket and waits for the forwarder to finish. When the pod
///   side closed first, kube's forwarder ends with "Sending after closing is not allowed"
///   (its own Close after the server's): that is a normal end, not an error.
struct PortForwardStream {
    stream: DuplexStream,
    error: Option<ErrorFuture>,
    error_message: Option<String>,
    received: bool,
    forwarder: Option<Portforwarder>,
    joining: Option<JoinFuture>,
    what: String,
}

impl PortForwardStream {
    /// Polls the error channel (registering the waker, so a read waiting for data also wakes
    /// when the kubelet reports an error) and returns the error to hand out, if any.
    fn check_error(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        if let Some(fut) = self.error.as_mut() {
            if let Poll::Ready(msg) = fut.as_mut().poll(cx) {
                self.error = None;
                self.error_message = msg.filter(|m| !m.trim().is_empty());
            }
        }
        self.error_message.as_ref().map(|m| {
            io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("{}: {}", self.what, m.trim()),
            )
        })
    }
}

impl AsyncRead for PortForwardStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.received {
            if let Some(e) = this.check_error(cx) {
                return Poll::Ready(Err(e));
            }
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before && !this.received => {
                // EOF before the agent said anything: the kubelet could not reach the port.
                let e = this.check_error(cx).unwrap_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        format!(
                            "{}: the forward closed before any answer (no agent listening?)",
                            this.what
                        ),
                    )
                });
                Poll::Ready(Err(e))
            }
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.received = true;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => {
                Poll::Ready(Err(io::Error::new(e.kind(), format!("{}: {e}", this.what))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for PortForwardStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.received {
            if let Some(e) = this.check_error(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    /// Ends our side (the forwarder then closes the WebSocket) and waits for the forwarder.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.joining.is_none() {
            match Pin::new(&mut this.stream).poll_shutdown(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            let Some(pf) = this.forwarder.take() else {
                return Poll::Ready(Ok(()));
            };
            let what = this.what.clone();
            this.joining = Some(Box::pin(async move {
                match pf.join().await {
                    Ok(()) => Ok(()),
                    // The pod side closed first; our Close came after its Close.
                    Err(e) if e.to_string().contains("after closing") => Ok(()),
                    Err(e) => Err(io::Error::other(format!("{what}: {e}"))),
                }
            }));
        }
        match this.joining.as_mut() {
            Some(j) => j.as_mut().poll(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl Drop for PortForwardStream {
    fn drop(&mut self) {
        // Not shut down (a timeout or an error): stop the forwarder's task with the stream.
        if let Some(pf) = self.forwarder.take() {
            pf.abort();
        }
    }
}

/// A TCP stream that re-enables TCP_QUICKACK before every read. The agent answers a command in
/// several small writes; with Linux's delayed ACKs each further command on a connection stalls
/// ~40 ms waiting for the ACK of the previous answer's tail (20 commands on one connection to
/// the real agent: ~20–60 ms with this, ~850 ms without; see the `quickack_…` test). Linux clears QUICKACK on its own after a while, so setting it once is not
/// enough: it is set before each read. Other platforms have no such option; there it is a no-op.
pub struct QuickAck(pub TcpStream);

impl QuickAck {
    fn quickack(&self) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            // Best effort: a failure only costs latency, never correctness.
            let _ = socket2::SockRef::from(&self.0).set_tcp_quickack(true);
        }
    }
}

impl AsyncRead for QuickAck {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.quickack();
        Pin::new(&mut this.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}
