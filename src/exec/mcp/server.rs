//! One MCP server's connection: started (or reached) on first need, watched for a changed tool
//! list, reconnected with backoff after it drops. Calls share the connection (MCP multiplexes
//! requests), so the lock is held only to find or make it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientInfo, Implementation, Meta, Tool,
};
use rmcp::service::{MaybeSendFuture, NotificationContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, Peer, RoleClient, ServiceError, ServiceExt};
use serde_json::Value;
use tokio::io::AsyncBufReadExt;

use super::McpServerConfig;
use super::bounded::{self, CappedChild, Tripwire};
use super::http_client::CappedHttp;
use super::mapping::{self, Failure};
use crate::event::ToolFailureKind;
use crate::exec::ToolError;
use crate::exec::catalog::ToolSpec;
use crate::exec::types::ToolInvocation;

/// A server that cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum McpError {
    /// Not reachable now (not started, refused, timed out, handshake failed): may work later.
    #[error("mcp server {server}: {message}")]
    Unavailable { server: String, message: String },
    /// Its configuration cannot work (an unset variable, a header that is not one).
    #[error("mcp server {server}: {message}")]
    Invalid { server: String, message: String },
}

impl McpError {
    pub fn retryable(&self) -> bool {
        matches!(self, McpError::Unavailable { .. })
    }
}

/// Receives the server's notifications: a changed tool list is noted and fetched before the
/// next call.
#[derive(Clone)]
struct Handler {
    changed: Arc<AtomicBool>,
}

impl ClientHandler for Handler {
    fn on_tool_list_changed(
        &self,
        _context: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
        self.changed.store(true, Ordering::SeqCst);
        std::future::ready(())
    }

    fn get_info(&self) -> ClientInfo {
        ClientInfo::new(
            ClientCapabilities::default(),
            Implementation::new("ballast", env!("CARGO_PKG_VERSION")),
        )
    }
}

type Service = RunningService<RoleClient, Handler>;

/// A live connection, and the tripwire its reads trip when a message is over the cap.
struct Conn {
    service: Service,
    tripwire: Tripwire,
}

/// The variables a child server inherits from Ballast's environment.
const INHERITED_ENV: &[&str] = &[
    "HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR",
];
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The most tools one server may list: each becomes a catalog entry and a Cedar entity.
const MAX_TOOLS: usize = 512;
/// A longer stderr line of a child server is cut before it is logged.
const MAX_LOG_LINE: usize = 2048;

pub struct McpServer {
    config: McpServerConfig,
    env: BTreeMap<String, String>,
    headers: std::collections::HashMap<reqwest::header::HeaderName, reqwest::header::HeaderValue>,
    http: Option<reqwest_mcp::Client>,
    /// Where the last tool list is kept, for a start while the server is down.
    cache: Option<PathBuf>,
    conn: tokio::sync::Mutex<Option<Conn>>,
    /// (earliest next attempt, current delay) after a failed connection.
    backoff: std::sync::Mutex<Option<(Instant, Duration)>>,
    /// The tools the server offers now, by their name on the server.
    offered: std::sync::RwLock<BTreeMap<String, Tool>>,
    changed: Arc<AtomicBool>,
}

impl McpServer {
    /// `env` resolves `${VAR}` in the entry's env and headers; `cache_dir` keeps tool lists.
    pub fn new(
        config: McpServerConfig,
        env: &dyn Fn(&str) -> Option<String>,
        cache_dir: Option<PathBuf>,
    ) -> Result<Arc<Self>, McpError> {
        let invalid = |message: String| McpError::Invalid {
            server: config.name.clone(),
            message,
        };
        if let Some((field, message)) = config.problems(env).into_iter().next() {
            return Err(invalid(format!("{field}: {message}")));
        }
        let expand = |v: &str| {
            crate::exec::http_tool::expand(v, env)
                .map_err(|var| invalid(format!("environment variable {var} is not set")))
        };
        let mut resolved_env = BTreeMap::new();
        for (k, v) in &config.env {
            resolved_env.insert(k.clone(), expand(v)?);
        }
        let mut headers = std::collections::HashMap::new();
        for (k, v) in &config.headers {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| invalid(format!("header {k}: {e}")))?;
            let mut value = reqwest::header::HeaderValue::from_str(&expand(v)?)
                .map_err(|e| invalid(format!("header {k}: {e}")))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let http = match &config.url {
            Some(_) => Some(http_client().map_err(invalid)?),
            None => None,
        };
        let cache = cache_dir.map(|d| d.join(format!("{}.json", config.name)));
        Ok(Arc::new(McpServer {
            config,
            env: resolved_env,
            headers,
            http,
            cache,
            conn: tokio::sync::Mutex::new(None),
            backoff: std::sync::Mutex::new(None),
            offered: std::sync::RwLock::new(BTreeMap::new()),
            changed: Arc::new(AtomicBool::new(false)),
        }))
    }

    pub fn config(&self) -> &McpServerConfig {
        &self.config
    }

    /// The server's tools: listed now, or — when it cannot be reached — the last list it gave
    /// (`false`: from the cache). Fails when neither is there.
    pub async fn tools(&self) -> Result<(Vec<Tool>, bool), McpError> {
        match self.peer().await {
            Ok((peer, _)) => {
                if self.changed.swap(false, Ordering::SeqCst) {
                    self.refresh(&peer).await;
                }
                Ok((self.offered_now(), true))
            }
            Err(e) => match self.cached() {
                Some(tools) => {
                    tracing::warn!(server = %self.config.name, error = %e,
                        "mcp server unavailable: using the tool list it gave last");
                    self.set_offered(tools.clone());
                    Ok((tools, false))
                }
                None => Err(e),
            },
        }
    }

    /// Calls `remote` (`spec`'s tool on this server) once.
    pub async fn call(
        &self,
        spec: &ToolSpec,
        remote: &str,
        call: &ToolInvocation,
    ) -> Result<Value, ToolError> {
        let (peer, tripwire) = self
            .peer()
            .await
            .map_err(|e| mapping::tool_error(spec, Failure::NotSent, e.to_string()))?;
        if self.changed.swap(false, Ordering::SeqCst) {
            self.refresh(&peer).await;
        }
        if !self.offered_read().contains_key(remote) {
            return Err(ToolError::terminal(format!(
                "mcp server {} no longer offers {remote}",
                self.config.name
            )));
        }
        let arguments = match serde_json::from_str::<Value>(&call.args_json) {
            Ok(Value::Object(m)) => m,
            _ => return Err(ToolError::terminal("arguments are not a JSON object")),
        };
        let mut params = CallToolRequestParams::new(remote.to_string()).with_arguments(arguments);
        params.meta = Some(Meta(mapping::call_meta(
            &call.idempotency_key,
            call.attempt,
        )));
        // A message over the cap ends the connection; the calls waiting on it learn why at
        // once rather than at their timeout.
        let answer = tokio::time::timeout(Duration::from_millis(spec.timeout_ms), async {
            tokio::select! {
                biased;
                reason = tripwire.wait() => Err(reason),
                answer = peer.call_tool(params) => Ok(answer),
            }
        })
        .await;
        let failed = |failure: Failure, message: String| {
            Err(mapping::tool_error(
                spec,
                failure,
                format!("mcp server {}: {message}", self.config.name),
            ))
        };
        // A message over the cap broke the connection: whatever the service made of that, the
        // reason is the message. It may have been this call's answer: the call may have acted.
        let tripped = match &answer {
            Ok(Err(reason)) => Some(reason.clone()),
            Ok(Ok(Err(_))) => tripwire.tripped(),
            _ => None,
        };
        if let Some(reason) = tripped {
            self.drop_tripped(&tripwire).await;
            return failed(Failure::MaybeActed(ToolFailureKind::Error), reason);
        }
        match answer {
            Ok(Ok(answer)) => self.answered(answer, &failed).await,
            Ok(Err(reason)) => failed(Failure::MaybeActed(ToolFailureKind::Error), reason),
            Err(_) => failed(
                Failure::MaybeActed(ToolFailureKind::Timeout),
                format!("no answer within {} ms", spec.timeout_ms),
            ),
        }
    }

    /// What an answer (or the service's error) amounts to.
    async fn answered(
        &self,
        answer: Result<rmcp::model::CallToolResult, ServiceError>,
        failed: &impl Fn(Failure, String) -> Result<Value, ToolError>,
    ) -> Result<Value, ToolError> {
        match answer {
            Ok(result) => mapping::result_of(result, self.config.max_result_bytes),
            Err(ServiceError::McpError(e)) => failed(
                mapping::classify_code(e.code),
                format!("error {}: {}", e.code.0, e.message),
            ),
            Err(ServiceError::TransportSend(e)) => {
                self.disconnect().await;
                failed(Failure::NotSent, format!("not sent: {e}"))
            }
            Err(e @ ServiceError::TransportClosed) => {
                self.disconnect().await;
                failed(Failure::MaybeActed(ToolFailureKind::Error), e.to_string())
            }
            Err(e) => failed(Failure::MaybeActed(ToolFailureKind::Error), e.to_string()),
        }
    }

    /// Stops the child process or closes the session.
    pub async fn shutdown(&self) {
        if let Some(conn) = self.conn.lock().await.take() {
            let _ = conn.service.cancel().await;
        }
    }

    async fn disconnect(&self) {
        if let Some(conn) = self.conn.lock().await.take() {
            let _ = conn.service.cancel().await;
        }
    }

    /// Drops the connection `tripwire` belongs to, unless another call already did (and maybe
    /// connected again).
    async fn drop_tripped(&self, tripwire: &Tripwire) {
        let mut conn = self.conn.lock().await;
        if conn.as_ref().is_some_and(|c| c.tripwire.same(tripwire)) {
            if let Some(c) = conn.take() {
                tracing::warn!(server = %self.config.name,
                    reason = %tripwire.tripped().unwrap_or_default(), "mcp server connection dropped");
                // Closing waits for the session's end or the child's exit: not under the lock.
                tokio::spawn(async move {
                    let _ = c.service.cancel().await;
                });
            }
        }
    }

    /// The live connection (and its tripwire), made if there is none and the backoff allows.
    async fn peer(&self) -> Result<(Peer<RoleClient>, Tripwire), McpError> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = conn.as_ref() {
            if !c.service.is_closed() && c.tripwire.tripped().is_none() {
                return Ok((c.service.peer().clone(), c.tripwire.clone()));
            }
            tracing::warn!(server = %self.config.name, "mcp server connection closed");
            if let Some(c) = conn.take() {
                tokio::spawn(async move {
                    let _ = c.service.cancel().await;
                });
            }
        }
        let unavailable = |message: String| McpError::Unavailable {
            server: self.config.name.clone(),
            message,
        };
        if let Ok(b) = self.backoff.lock()
            && let Some((next, _)) = *b
            && Instant::now() < next
        {
            return Err(unavailable("down; reconnecting after a backoff".into()));
        }
        match tokio::time::timeout(
            Duration::from_millis(self.config.connect_timeout_ms),
            self.connect(),
        )
        .await
        {
            Ok(Ok((service, tools, tripwire))) => {
                if let Ok(mut b) = self.backoff.lock() {
                    *b = None;
                }
                self.changed.store(false, Ordering::SeqCst);
                self.set_offered(tools);
                let peer = service.peer().clone();
                *conn = Some(Conn {
                    service,
                    tripwire: tripwire.clone(),
                });
                Ok((peer, tripwire))
            }
            Ok(Err(message)) => Err(self.failed(unavailable(message))),
            Err(_) => Err(self.failed(unavailable(format!(
                "not ready within connect_timeout_ms ({})",
                self.config.connect_timeout_ms
            )))),
        }
    }

    fn failed(&self, e: McpError) -> McpError {
        if let Ok(mut b) = self.backoff.lock() {
            let delay = b.map_or(MIN_BACKOFF, |(_, d)| (d * 2).min(MAX_BACKOFF));
            *b = Some((Instant::now() + delay, delay));
        }
        tracing::warn!(error = %e, "mcp server unavailable");
        e
    }

    async fn connect(&self) -> Result<(Service, Vec<Tool>, Tripwire), String> {
        let handler = Handler {
            changed: Arc::clone(&self.changed),
        };
        let tripwire = Tripwire::default();
        let cap = bounded::message_cap(self.config.max_result_bytes);
        let why = |e: String| tripwire.tripped().unwrap_or(e);
        let service = match (&self.config.command, &self.config.url, &self.http) {
            (Some(cmd), _, _) => {
                let (program, args) = cmd.split_first().ok_or("the command is empty")?;
                let mut command = tokio::process::Command::new(program);
                // A child gets a plain environment and what its entry gives, never Ballast's
                // own (API keys, the master key's path), as the MCP SDKs do.
                let inherited = INHERITED_ENV
                    .iter()
                    .filter_map(|k| std::env::var(k).ok().map(|v| (*k, v)));
                if let Some(dir) = &self.config.cwd {
                    command.current_dir(dir);
                }
                command
                    .args(args)
                    .env_clear()
                    .envs(inherited)
                    .envs(&self.env)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .kill_on_drop(true);
                let mut child = command
                    .spawn()
                    .map_err(|e| format!("cannot start {program}: {e}"))?;
                let tail = StderrTail::default();
                let stderr_done = child
                    .stderr
                    .take()
                    .map(|e| tokio::spawn(log_stderr(self.config.name.clone(), e, tail.clone())));
                // Its stdout through a reader that stops at the cap (rmcp's own child
                // transport reads a line whole).
                let transport =
                    CappedChild::new(child, cap, tripwire.clone()).map_err(|e| e.to_string())?;
                match handler.serve(transport).await {
                    Ok(service) => service,
                    Err(e) => {
                        // A server that dies at start says why on stderr: show that, not only
                        // "connection closed" (it has exited or is exiting; its pipe closes).
                        if let Some(done) = stderr_done {
                            let _ = tokio::time::timeout(Duration::from_millis(500), done).await;
                        }
                        return Err(format!(
                            "handshake: {}{}",
                            why(e.to_string()),
                            tail.describe()
                        ));
                    }
                }
            }
            (None, Some(url), Some(client)) => {
                let config = StreamableHttpClientTransportConfig::with_uri(url.as_str())
                    .custom_headers(self.headers.clone());
                let client = CappedHttp::new(client.clone(), cap, tripwire.clone());
                let transport = StreamableHttpClientTransport::with_client(client, config);
                handler
                    .serve(transport)
                    .await
                    .map_err(|e| format!("handshake with {url}: {}", why(e.to_string())))?
            }
            _ => return Err("neither command nor url".into()),
        };
        let tools = service
            .list_all_tools()
            .await
            .map_err(|e| format!("tools/list: {}", why(e.to_string())))?;
        if tools.len() > MAX_TOOLS {
            return Err(format!("lists {} tools, over {MAX_TOOLS}", tools.len()));
        }
        self.store_cache(&tools);
        Ok((service, tools, tripwire))
    }

    async fn refresh(&self, peer: &Peer<RoleClient>) {
        let listed = tokio::time::timeout(
            Duration::from_millis(self.config.connect_timeout_ms),
            peer.list_all_tools(),
        )
        .await;
        match listed {
            Ok(Ok(tools)) if tools.len() <= MAX_TOOLS => {
                let before: Vec<String> = self.offered_read().keys().cloned().collect();
                let after: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
                tracing::info!(server = %self.config.name, ?before, ?after,
                    "mcp server changed its tool list");
                metrics::counter!("ballast_mcp_tool_list_changes_total",
                    "server" => self.config.name.clone())
                .increment(1);
                self.store_cache(&tools);
                self.set_offered(tools);
            }
            _ => {
                // Try again on the next call.
                self.changed.store(true, Ordering::SeqCst);
            }
        }
    }

    fn offered_read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Tool>> {
        self.offered
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn offered_now(&self) -> Vec<Tool> {
        self.offered_read().values().cloned().collect()
    }

    fn set_offered(&self, tools: Vec<Tool>) {
        let mut offered = self
            .offered
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *offered = tools.into_iter().map(|t| (t.name.to_string(), t)).collect();
    }

    fn cached(&self) -> Option<Vec<Tool>> {
        let text = std::fs::read_to_string(self.cache.as_ref()?).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn store_cache(&self, tools: &[Tool]) {
        let Some(path) = &self.cache else { return };
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, serde_json::to_vec_pretty(tools)?)?;
            std::fs::rename(&tmp, path)
        };
        if let Err(e) = write() {
            tracing::warn!(server = %self.config.name, error = %e, "cannot keep the tool list");
        }
    }
}

/// The last lines a child server wrote to stderr, for the error when it fails to start.
#[derive(Clone, Default)]
struct StderrTail(Arc<std::sync::Mutex<std::collections::VecDeque<String>>>);

/// Lines of a server's stderr an error quotes, at most.
const STDERR_TAIL_LINES: usize = 12;

impl StderrTail {
    fn push(&self, line: String) {
        if let Ok(mut t) = self.0.lock() {
            if t.len() == STDERR_TAIL_LINES {
                t.pop_front();
            }
            t.push_back(line);
        }
    }

    /// `; its stderr ends: …` with the lines kept, or nothing when it wrote none.
    fn describe(&self) -> String {
        let lines: Vec<String> = self
            .0
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default();
        if lines.is_empty() {
            return String::new();
        }
        format!("; the server's stderr ends with:\n  {}", lines.join("\n  "))
    }
}

/// A child server's stderr, a line at a time, into the log (a pipe nobody reads would fill and
/// stall the server), its last lines kept in `tail`.
async fn log_stderr(server: String, stderr: tokio::process::ChildStderr, tail: StderrTail) {
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line: String = line.chars().take(MAX_LOG_LINE).collect();
        tracing::debug!(server = %server, "{line}");
        tail.push(line);
    }
}

/// The HTTP client of streamable-HTTP servers: rustls with ring and the webpki roots, as the
/// rest of Ballast's HTTP clients.
fn http_client() -> Result<reqwest_mcp::Client, String> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("tls: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest_mcp::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .map_err(|e| format!("http client: {e}"))
}
