//! The local command socket of a served data dir. `ballast serve` holds the data dir's sled
//! database (one process at a time), so the operators' and auditors' CLI commands — `turns`,
//! `trace`, `audit`, `slo`, `approve`, `handoff`, … — would find it locked. Instead they send
//! their command line over a Unix socket in the data dir and `serve` runs the very same command
//! in-process against its open database, returning what it printed: the same output as offline.
//!
//! Who may connect: the socket lives in `DATA_DIR/run/` (mode 0700), is itself 0600, and the
//! server also checks the peer's user id (`SO_PEERCRED`) against its own — the same people who
//! could open the data dir's files when nothing runs on it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

/// Largest request accepted on the socket (a command line), in bytes.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Largest reply a client reads (a command's output), in bytes.
pub const MAX_REPLY_BYTES: usize = 256 * 1024 * 1024;

/// A command line to run, with the caller's environment variables that commands read
/// (`BALLAST_OPERATOR`, `USER`: who answers an approval).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Request {
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// What the command printed, and its error (the process would have exited 1) if it failed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Reply {
    pub stdout: String,
    pub stderr: String,
    pub error: Option<String>,
}

/// Runs one forwarded command line in the serving process.
#[derive(Clone)]
pub struct Handler(pub Arc<dyn Fn(Request) -> futures_lite::BoxedReply + Send + Sync + 'static>);

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handler")
    }
}

/// Boxed futures without another dependency.
pub mod futures_lite {
    pub type BoxedReply =
        std::pin::Pin<Box<dyn std::future::Future<Output = super::Reply> + Send + 'static>>;
}

/// Where a data dir's socket is.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("run").join("ballast.sock")
}

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Listens on the data dir's socket until `stop`; each connection runs one command through
/// `handler`. The socket file is removed when it stops.
pub async fn serve(
    data_dir: &Path,
    handler: Handler,
    mut stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, SocketError> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(data_dir);
    let io = |source| SocketError::Io {
        path: path.display().to_string(),
        source,
    };
    let run = path.parent().unwrap_or(data_dir).to_path_buf();
    std::fs::create_dir_all(&run).map_err(io)?;
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    // A socket left by a process that was killed: nobody listens on it any more.
    if path.exists() {
        std::fs::remove_file(&path).map_err(io)?;
    }
    let listener = UnixListener::bind(&path).map_err(io)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    // The socket file was just created by this process: its owner is this process's user.
    let uid = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&path).ok().map(|m| m.uid())
    };
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let allowed = stream.peer_cred().ok().map(|c| c.uid()) == uid && uid.is_some();
                    let handler = handler.clone();
                    tokio::spawn(async move {
                        if let Err(e) = answer(stream, handler, allowed).await {
                            tracing::debug!(error = %e, "local command connection ended");
                        }
                    });
                }
                _ = stop.changed() => {
                    if *stop.borrow() {
                        break;
                    }
                }
            }
        }
        let _ = std::fs::remove_file(&path);
    }))
}

async fn answer(stream: UnixStream, handler: Handler, allowed: bool) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    let mut reader = BufReader::new(read).take(MAX_REQUEST_BYTES as u64 + 1);
    reader.read_until(b'\n', &mut line).await?;
    let reply = if !allowed {
        Reply {
            error: Some("refused: the command socket serves its owner's user only".into()),
            ..Reply::default()
        }
    } else if line.len() > MAX_REQUEST_BYTES {
        Reply {
            error: Some(format!("request over {MAX_REQUEST_BYTES} bytes")),
            ..Reply::default()
        }
    } else {
        match serde_json::from_slice::<Request>(&line) {
            Ok(req) => (handler.0)(req).await,
            Err(e) => Reply {
                error: Some(format!("malformed request: {e}")),
                ..Reply::default()
            },
        }
    };
    let mut bytes = serde_json::to_vec(&reply).unwrap_or_default();
    bytes.push(b'\n');
    write.write_all(&bytes).await?;
    write.shutdown().await
}

/// Sends a command line to the process serving `data_dir`. `None` when nothing serves it (no
/// socket, or a stale one nobody listens on): the caller runs the command itself.
pub async fn forward(data_dir: &Path, request: &Request) -> Option<std::io::Result<Reply>> {
    let path = socket_path(data_dir);
    if !path.exists() {
        return None;
    }
    let stream = UnixStream::connect(&path).await.ok()?;
    Some(exchange(stream, request).await)
}

async fn exchange(stream: UnixStream, request: &Request) -> std::io::Result<Reply> {
    let (read, mut write) = stream.into_split();
    let mut bytes = serde_json::to_vec(request)?;
    bytes.push(b'\n');
    write.write_all(&bytes).await?;
    let mut out = Vec::new();
    BufReader::new(read)
        .take(MAX_REPLY_BYTES as u64)
        .read_to_end(&mut out)
        .await?;
    serde_json::from_slice(&out).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_command_goes_to_the_server_and_its_output_comes_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let handler = Handler(Arc::new(|req: Request| {
            Box::pin(async move {
                Reply {
                    stdout: format!("ran {}\n", req.argv.join(" ")),
                    stderr: String::new(),
                    error: None,
                }
            })
        }));
        let (tx, rx) = watch::channel(false);
        assert!(
            forward(
                dir.path(),
                &Request {
                    argv: vec![],
                    env: BTreeMap::new()
                }
            )
            .await
            .is_none(),
            "nothing serves it yet"
        );
        let task = serve(dir.path(), handler, rx).await.expect("serve");
        let reply = forward(
            dir.path(),
            &Request {
                argv: vec!["turns".into(), "--json".into()],
                env: BTreeMap::new(),
            },
        )
        .await
        .expect("served")
        .expect("reply");
        assert_eq!(reply.stdout, "ran turns --json\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(socket_path(dir.path()))
            .expect("socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        tx.send(true).expect("stop");
        task.await.expect("stopped");
        assert!(!socket_path(dir.path()).exists(), "removed on stop");
    }
}
