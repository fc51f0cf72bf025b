//! The client side of JaCoCo's tcpserver protocol, over any byte stream: direct TCP now, a
//! Kubernetes port-forward later. The client sends its header and a command block
//! `40 <dump> <reset>`; the agent answers with a header, one session block, execution data
//! blocks and `20` (command ok).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::exec::{
    check_header, decode_modified_utf8, unpack_bools, ClassData, ExecData, SessionInfo,
    BLOCK_CMD_DUMP, BLOCK_CMD_OK, BLOCK_EXECUTION_DATA, BLOCK_HEADER, BLOCK_SESSION_INFO, HEADER,
    MAX_VARINT_BYTES,
};
use super::CoverageError;

/// What to ask the agent for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpCommand {
    /// Send the execution data collected so far.
    pub dump: bool,
    /// Clear the agent's probes afterwards, so the next dump holds only new executions.
    pub reset: bool,
}

impl DumpCommand {
    /// The bytes the client sends: its header, then the command block.
    pub fn encode(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..5].copy_from_slice(&HEADER);
        b[5] = BLOCK_CMD_DUMP;
        b[6] = u8::from(self.dump);
        b[7] = u8::from(self.reset);
        b
    }
}

/// Sends `cmd` and reads the answer up to its command-ok block. The stream stays usable for
/// further commands (the agent serves many commands on one connection).
///
/// # Errors
/// On I/O failure, malformed data, or EOF before the command-ok block.
pub async fn dump<S>(stream: &mut S, cmd: DumpCommand) -> Result<ExecData, CoverageError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + ?Sized,
{
    stream
        .write_all(&cmd.encode())
        .await
        .map_err(CoverageError::io("sending the dump command"))?;
    stream
        .flush()
        .await
        .map_err(CoverageError::io("sending the dump command"))?;
    read_answer(stream).await
}

/// Reads blocks until command-ok. Every field is read with its exact length: the agent's bytes
/// arrive in small fragments (the 5-byte header often one byte first).
///
/// # Errors
/// As [`dump`].
pub async fn read_answer<S>(stream: &mut S) -> Result<ExecData, CoverageError>
where
    S: AsyncRead + Unpin + Send + ?Sized,
{
    let mut r = Reader { s: stream };
    let mut out = ExecData::default();
    loop {
        let block = match r.s.read_u8().await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(CoverageError::Truncated)
            }
            Err(e) => return Err(CoverageError::io("reading the agent's answer")(e)),
        };
        match block {
            BLOCK_HEADER => check_header(r.u16().await?, r.u16().await?)?,
            BLOCK_SESSION_INFO => out.sessions.push(SessionInfo {
                id: r.utf().await?,
                start_ms: r.i64().await?,
                dump_ms: r.i64().await?,
            }),
            BLOCK_EXECUTION_DATA => out.classes.push(ClassData {
                id: r.i64().await? as u64,
                name: r.utf().await?,
                probes: r.bools().await?,
            }),
            BLOCK_CMD_OK => return Ok(out),
            other => {
                return Err(CoverageError::Format(format!(
                    "unexpected block type {other:#04x} from the agent"
                )))
            }
        }
    }
}

struct Reader<'a, S: ?Sized> {
    s: &'a mut S,
}

impl<S: AsyncRead + Unpin + Send + ?Sized> Reader<'_, S> {
    async fn exact(&mut self, buf: &mut [u8]) -> Result<(), CoverageError> {
        match self.s.read_exact(buf).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(CoverageError::Truncated)
            }
            Err(e) => Err(CoverageError::io("reading the agent's answer")(e)),
        }
    }

    async fn u16(&mut self) -> Result<u16, CoverageError> {
        let mut b = [0u8; 2];
        self.exact(&mut b).await?;
        Ok(u16::from_be_bytes(b))
    }

    async fn i64(&mut self) -> Result<i64, CoverageError> {
        let mut b = [0u8; 8];
        self.exact(&mut b).await?;
        Ok(i64::from_be_bytes(b))
    }

    async fn utf(&mut self) -> Result<String, CoverageError> {
        let n = usize::from(self.u16().await?);
        let mut b = vec![0u8; n];
        self.exact(&mut b).await?;
        decode_modified_utf8(&b)
    }

    async fn bools(&mut self) -> Result<Vec<bool>, CoverageError> {
        let mut n: u32 = 0;
        let mut done = false;
        for k in 0..MAX_VARINT_BYTES {
            let mut b = [0u8; 1];
            self.exact(&mut b).await?;
            n |= u32::from(b[0] & 0x7F) << (7 * k);
            if b[0] & 0x80 == 0 {
                done = true;
                break;
            }
        }
        if !done {
            return Err(CoverageError::Format("var-int longer than 5 bytes".into()));
        }
        let n = n as usize;
        let mut packed = vec![0u8; n.div_ceil(8)];
        self.exact(&mut packed).await?;
        Ok(unpack_bools(&packed, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A hand-built answer following the documented layout: header, session "test" (start 1,
    /// dump 2), one class with probes [true,false,true], command ok.
    const ANSWER: &[u8] = &[
        0x01, 0xC0, 0xC0, 0x10, 0x07, //
        0x10, 0x00, 0x04, b't', b'e', b's', b't', //
        0, 0, 0, 0, 0, 0, 0, 1, //
        0, 0, 0, 0, 0, 0, 0, 2, //
        0x11, 0, 0, 0, 0, 0, 0, 0, 42, //
        0x00, 0x03, b'a', b'/', b'B', //
        0x03, 0x05, //
        0x20,
    ];

    #[test]
    fn commands_encode_as_header_then_40_dump_reset() {
        let c = DumpCommand {
            dump: true,
            reset: true,
        };
        assert_eq!(c.encode(), [0x01, 0xC0, 0xC0, 0x10, 0x07, 0x40, 0x01, 0x01]);
        let c = DumpCommand {
            dump: false,
            reset: true,
        };
        assert_eq!(&c.encode()[5..], &[0x40, 0x00, 0x01]);
    }

    #[tokio::test]
    async fn reads_an_answer_delivered_one_byte_at_a_time() {
        let mut b = tokio_test_stream(ANSWER, 1);
        let d = dump(
            &mut b,
            DumpCommand {
                dump: true,
                reset: false,
            },
        )
        .await
        .unwrap();
        assert_eq!(d.sessions[0].id, "test");
        assert_eq!(d.sessions[0].dump_ms, 2);
        assert_eq!(d.classes[0].id, 42);
        assert_eq!(d.classes[0].probes, [true, false, true]);
    }

    /// Bytes recorded from Debian's JaCoCo 0.8.6 agent (tcpserver, sessionid=recorded) running
    /// `testdata/Rec.java.txt`, answering `40 01 00`.
    const RECORDED: &[u8] = include_bytes!("testdata/agent_answer.bin");

    #[tokio::test]
    async fn parses_a_recorded_agent_answer_and_reencodes_it_byte_for_byte() {
        let mut b = tokio_test_stream(RECORDED, 5);
        let d = read_answer(&mut b).await.unwrap();
        assert_eq!(d.sessions.len(), 1);
        assert_eq!(d.sessions[0].id, "recorded");
        assert!(d.sessions[0].start_ms <= d.sessions[0].dump_ms);
        let names: Vec<&str> = d.classes.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names.len(), 2);
        assert!(
            names.contains(&"Rec") && names.contains(&"Helper"),
            "{names:?}"
        );
        assert!(d.classes.iter().all(|c| c.has_hits()));
        // The exec format is the answer without its command-ok block.
        assert_eq!(RECORDED.last(), Some(&BLOCK_CMD_OK));
        assert_eq!(d.to_bytes().unwrap(), RECORDED[..RECORDED.len() - 1]);
    }

    #[tokio::test]
    async fn eof_before_command_ok_is_an_error() {
        let mut b = tokio_test_stream(&ANSWER[..ANSWER.len() - 1], 3);
        let e = dump(
            &mut b,
            DumpCommand {
                dump: true,
                reset: true,
            },
        )
        .await
        .unwrap_err();
        assert!(matches!(e, CoverageError::Truncated), "{e}");
        // Cut in the middle of a field, too.
        let mut b = tokio_test_stream(&ANSWER[..10], 3);
        let e = read_answer(&mut b).await.unwrap_err();
        assert!(matches!(e, CoverageError::Truncated), "{e}");
    }

    #[tokio::test]
    async fn reset_only_answer_is_header_then_ok_and_headers_may_repeat() {
        let mut b = tokio_test_stream(&[0x01, 0xC0, 0xC0, 0x10, 0x07, 0x20], 2);
        let d = read_answer(&mut b).await.unwrap();
        assert_eq!(d, ExecData::default());
        let mut twice = HEADER.to_vec();
        twice.extend_from_slice(ANSWER);
        let mut b = tokio_test_stream(&twice, 7);
        assert_eq!(read_answer(&mut b).await.unwrap().classes.len(), 1);
    }

    #[tokio::test]
    async fn what_the_client_sends_is_exactly_the_command() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let agent = tokio::spawn(async move {
            let mut got = [0u8; 8];
            server.read_exact(&mut got).await.unwrap();
            server.write_all(ANSWER).await.unwrap();
            got
        });
        let cmd = DumpCommand {
            dump: true,
            reset: true,
        };
        dump(&mut client, cmd).await.unwrap();
        assert_eq!(agent.await.unwrap(), cmd.encode());
    }

    /// A duplex stream whose far end writes `answer` in `chunk`-byte pieces with pauses, the way
    /// the real agent's bytes arrive.
    fn tokio_test_stream(answer: &[u8], chunk: usize) -> tokio::io::DuplexStream {
        let (client, mut server) = tokio::io::duplex(1024);
        let answer = answer.to_vec();
        // The client's command stays unread in the duplex buffer: these tests look at the answer.
        tokio::spawn(async move {
            for piece in answer.chunks(chunk) {
                if server.write_all(piece).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        client
    }
}
