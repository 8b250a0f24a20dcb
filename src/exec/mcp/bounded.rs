//! Messages from an MCP server read with a size cap. rmcp buffers a whole message before it
//! parses it (a stdio line, a JSON body, an SSE event), so a server answering with gigabytes
//! would take the worker's memory. Here the bytes are counted as they arrive, per message, and
//! the first message over the cap ends the connection: the stdio child is killed or the HTTP
//! response dropped, the calls waiting on the connection fail with the reason, and the next call
//! connects again.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rmcp::RoleClient;
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use rmcp::transport::async_rw::AsyncRwTransport;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// The most one message from a server may hold, for a server whose results may hold
/// `max_result_bytes`: a result travels as text and again as structured content, each
/// JSON-escaped inside the message, so four times the result and 64 KiB of envelope.
pub fn message_cap(max_result_bytes: usize) -> usize {
    max_result_bytes.saturating_mul(4).saturating_add(64 * 1024)
}

/// Trips once, with the reason, when a message of one connection passes the cap; the calls
/// waiting on that connection watch it.
#[derive(Clone, Debug)]
pub struct Tripwire(std::sync::Arc<tokio::sync::watch::Sender<Option<String>>>);

impl Default for Tripwire {
    fn default() -> Self {
        Tripwire(std::sync::Arc::new(tokio::sync::watch::Sender::new(None)))
    }
}

impl Tripwire {
    /// Records the first reason; later ones change nothing.
    pub fn trip(&self, reason: String) {
        self.0.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason);
                true
            } else {
                false
            }
        });
    }

    /// The same connection's tripwire.
    pub fn same(&self, other: &Tripwire) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }

    pub fn tripped(&self) -> Option<String> {
        self.0.borrow().clone()
    }

    /// Resolves with the reason once tripped (at once if it is).
    pub async fn wait(&self) -> String {
        let mut rx = self.0.subscribe();
        let reason = match rx.wait_for(Option::is_some).await {
            Ok(reason) => Some(reason.clone().unwrap_or_default()),
            Err(_) => None,
        };
        match reason {
            Some(reason) => reason,
            // The sender lives as long as `self`: never reached.
            None => std::future::pending().await,
        }
    }
}

/// The reason a message over `cap` bytes gives.
pub fn over_cap(cap: usize) -> String {
    format!(
        "the server sent a message over {cap} bytes (4 × max_result_bytes + 64 KiB); not read further, connection dropped"
    )
}

/// A reader of newline-delimited messages that fails once one line passes `cap` bytes, before
/// whoever reads it has buffered more than `cap` and one read.
pub struct LineCapped<R> {
    inner: R,
    cap: usize,
    /// Bytes since the last newline.
    run: usize,
    tripwire: Tripwire,
}

impl<R> LineCapped<R> {
    pub fn new(inner: R, cap: usize, tripwire: Tripwire) -> Self {
        LineCapped {
            inner,
            cap,
            run: 0,
            tripwire,
        }
    }

    /// Counts `bytes`; false once a line passes the cap.
    fn count(&mut self, bytes: &[u8]) -> bool {
        for line in bytes.split_inclusive(|b| *b == b'\n') {
            let ends = line.last() == Some(&b'\n');
            let len = line.len() - usize::from(ends);
            self.run = self.run.saturating_add(len);
            if self.run > self.cap {
                return false;
            }
            if ends {
                self.run = 0;
            }
        }
        true
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for LineCapped<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let too_large = |cap| std::io::Error::new(std::io::ErrorKind::InvalidData, over_cap(cap));
        if this.tripwire.tripped().is_some() {
            return Poll::Ready(Err(too_large(this.cap)));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        if this.count(buf.filled().get(before..).unwrap_or_default()) {
            Poll::Ready(Ok(()))
        } else {
            let error = too_large(this.cap);
            this.tripwire.trip(error.to_string());
            Poll::Ready(Err(error))
        }
    }
}

/// How long a child server has to exit after its stdin closes, before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(3);

/// A child server over stdio with its stdout read through [`LineCapped`]: rmcp's own
/// `TokioChildProcess` reads lines whole.
pub struct CappedChild {
    rw: AsyncRwTransport<RoleClient, LineCapped<ChildStdout>, ChildStdin>,
    child: Option<Child>,
    tripwire: Tripwire,
}

impl CappedChild {
    /// `child` must have been spawned with piped stdin and stdout (and `kill_on_drop`).
    pub fn new(mut child: Child, cap: usize, tripwire: Tripwire) -> std::io::Result<Self> {
        let missing =
            |what: &str| std::io::Error::other(format!("the child's {what} is not piped"));
        let stdout = child.stdout.take().ok_or_else(|| missing("stdout"))?;
        let stdin = child.stdin.take().ok_or_else(|| missing("stdin"))?;
        Ok(CappedChild {
            rw: AsyncRwTransport::new(LineCapped::new(stdout, cap, tripwire.clone()), stdin),
            child: Some(child),
            tripwire,
        })
    }
}

impl Transport<RoleClient> for CappedChild {
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.rw.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        let message = self.rw.receive().await;
        if message.is_none()
            && self.tripwire.tripped().is_some()
            && let Some(child) = self.child.as_mut()
        {
            // It is still writing the rest of the message: stop it now.
            let _ = child.start_kill();
        }
        message
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.rw.close().await?;
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // Its stdin is closed: a well-behaved server exits.
        if tokio::time::timeout(EXIT_GRACE, child.wait())
            .await
            .is_err()
        {
            child.kill().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncBufReadExt;

    #[tokio::test]
    async fn a_line_over_the_cap_fails_the_read_and_trips() {
        let tripwire = Tripwire::default();
        let data: &[u8] = b"short\n0123456789\nthis line is far too long\nnever\n";
        let mut r =
            tokio::io::BufReader::with_capacity(4, LineCapped::new(data, 10, tripwire.clone()));
        let mut line = Vec::new();
        r.read_until(b'\n', &mut line).await.expect("short");
        assert_eq!(line, b"short\n");
        line.clear();
        r.read_until(b'\n', &mut line).await.expect("at the cap");
        assert_eq!(line, b"0123456789\n");
        line.clear();
        let err = r.read_until(b'\n', &mut line).await.expect_err("over");
        assert!(err.to_string().contains("over 10 bytes"), "{err}");
        assert!(line.len() <= 10 + 4, "buffered {} bytes", line.len());
        assert!(tripwire.tripped().is_some());
        assert_eq!(tripwire.wait().await, err.to_string());
        // Tripped for good: nothing more is read.
        assert!(r.read_until(b'\n', &mut line).await.is_err());
    }

    #[test]
    fn the_cap_leaves_room_for_a_whole_result() {
        assert_eq!(message_cap(1 << 20), 4 * (1 << 20) + 65_536);
        assert_eq!(message_cap(usize::MAX), usize::MAX);
    }
}
