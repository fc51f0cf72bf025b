//! Where an agent is and how to open a byte stream to it. Protocol code only sees the stream
//! ([`AgentStream`]); a Kubernetes port-forward becomes one more [`Transport`] variant.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Any stream the dump client can talk over.
pub trait AgentStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AgentStream for T {}

/// How to reach one agent. (Not `PartialEq`: a port-forward variant will carry a client.)
#[derive(Debug, Clone)]
pub enum Transport {
    /// `host:port` reachable from this machine (loopback, a NodePort, a `kubectl port-forward`).
    Direct { address: String },
}

impl Transport {
    /// Opens a stream to the agent.
    ///
    /// # Errors
    /// When the connection cannot be made (refused: no agent listening).
    pub async fn connect(&self) -> io::Result<Box<dyn AgentStream>> {
        match self {
            Transport::Direct { address } => {
                let s = TcpStream::connect(address.as_str()).await?;
                s.set_nodelay(true)?;
                Ok(Box::new(QuickAck(s)))
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Transport::Direct { address } => address.clone(),
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
