//! Tools served by Model Context Protocol servers (`[[mcp]]` in `ballast.toml`), through the
//! official Rust SDK (`rmcp`).
//!
//! Each server is started as a child process speaking stdio (`command = [...]`) or reached over
//! streamable HTTP (`url`). Its `tools/list` becomes catalog entries named `{server}_{tool}`
//! ([`mapping`]); each becomes an [`McpTool`] the executor calls like any other tool, so every
//! MCP tool gets the whole control plane (policies, budgets, approvals, guards, provenance).
//!
//! A server that is down does not stop the others: its calls fail as "not sent" (retryable, so
//! the per-tool breaker opens) and it is reconnected with backoff. The last tool list a server
//! gave is kept in the data dir, so a worker restarted while a server is down still knows its
//! tools and reviews their calls the same way.
//!
//! What a server sends is read with a cap per message (`bounded.rs`, `http_client.rs`): a server
//! answering with gigabytes fails its calls, not the worker.

mod bounded;
mod http_client;
pub mod mapping;
mod server;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use server::{McpError, McpServer};

use super::catalog::ToolSpec;
use super::{Tool, ToolError};
use crate::exec::types::ToolInvocation;

/// `[[mcp]]`: one MCP server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// Names its tools in the catalog: `{name}_{tool}`. Letters, digits and `-`.
    pub name: String,
    /// A server started as a child process, speaking stdio: the program and its arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// The child's working directory (relative to the configuration file, which is the
    /// default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<std::path::PathBuf>,
    /// A server reached over streamable HTTP (`http://…/mcp` or `https://…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Environment of the child process, beyond the plain one it always gets (HOME, PATH, USER,
    /// LANG, …; never Ballast's own variables); values may name `${VAR}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Headers of every HTTP request (`Authorization = "Bearer ${TOKEN}"`); values may name `${VAR}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Starting the server, the MCP handshake and the tool list must finish within this.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// The timeout of each call of its tools (a `[tools.NAME] timeout_ms` overrides it).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// A larger result fails the call. A message from the server over four times this plus
    /// 64 KiB (a result travels as text and again as structured content, each JSON-escaped) is
    /// not read further: the connection is dropped (a child server is killed), the calls
    /// waiting on it fail, and the next call connects again.
    #[serde(default = "default_max_result_bytes")]
    pub max_result_bytes: usize,
}

fn default_connect_timeout_ms() -> u64 {
    10_000
}

fn default_timeout_ms() -> u64 {
    30_000
}

fn default_max_result_bytes() -> usize {
    1 << 20
}

impl McpServerConfig {
    /// A stdio server with the defaults (tests and examples).
    pub fn stdio(name: &str, command: Vec<String>) -> Self {
        McpServerConfig {
            name: name.into(),
            command: Some(command),
            cwd: None,
            url: None,
            env: BTreeMap::new(),
            headers: BTreeMap::new(),
            connect_timeout_ms: default_connect_timeout_ms(),
            timeout_ms: default_timeout_ms(),
            max_result_bytes: default_max_result_bytes(),
        }
    }

    /// An HTTP server with the defaults.
    pub fn http(name: &str, url: &str) -> Self {
        McpServerConfig {
            command: None,
            url: Some(url.into()),
            ..Self::stdio(name, Vec::new())
        }
    }

    /// What is wrong with this entry, as (field, message); `env` resolves `${VAR}`.
    pub fn problems(&self, env: &dyn Fn(&str) -> Option<String>) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.name.is_empty()
            || self.name.len() > 32
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            out.push((
                "name",
                "a server name is 1-32 letters, digits or '-' (it prefixes its tools' names)"
                    .to_string(),
            ));
        }
        match (&self.command, &self.url) {
            (Some(_), Some(_)) | (None, None) => out.push((
                "command",
                "give either command (a child process over stdio) or url (streamable HTTP)"
                    .to_string(),
            )),
            (Some(cmd), None) => {
                if cmd.first().is_none_or(|p| p.trim().is_empty()) {
                    out.push(("command", "the command is empty".to_string()));
                }
                if !self.headers.is_empty() {
                    out.push(("headers", "headers are for url servers".to_string()));
                }
                if let Some(dir) = &self.cwd
                    && !dir.is_dir()
                {
                    out.push(("cwd", format!("{} is not a directory", dir.display())));
                }
            }
            (None, Some(url)) => {
                match reqwest::Url::parse(url) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                    Ok(_) => out.push(("url", "the scheme must be http or https".to_string())),
                    Err(e) => out.push(("url", e.to_string())),
                }
                if !self.env.is_empty() {
                    out.push(("env", "env is for command servers".to_string()));
                }
            }
        }
        for (field, map) in [("env", &self.env), ("headers", &self.headers)] {
            for (k, v) in map {
                if let Err(var) = super::http_tool::expand(v, env) {
                    out.push((field, format!("{k}: environment variable {var} is not set")));
                }
            }
        }
        if !(1..=600_000).contains(&self.connect_timeout_ms) {
            out.push(("connect_timeout_ms", "between 1 and 600000".to_string()));
        }
        if !(1..=600_000).contains(&self.timeout_ms) {
            out.push(("timeout_ms", "between 1 and 600000".to_string()));
        }
        if !(1..=super::body::MAX_RESPONSE_CAP).contains(&self.max_result_bytes) {
            out.push((
                "max_result_bytes",
                format!("between 1 and {}", super::body::MAX_RESPONSE_CAP),
            ));
        }
        out
    }

    /// Where the server is, for people: `mcp:NAME (command …)` or its URL.
    pub fn describe(&self) -> String {
        match (&self.command, &self.url) {
            (Some(cmd), _) => cmd.join(" "),
            (_, Some(url)) => url.clone(),
            _ => String::new(),
        }
    }
}

/// One tool of an MCP server, as the executor sees it.
pub struct McpTool {
    spec: ToolSpec,
    /// The tool's name on its server.
    remote: String,
    server: Arc<McpServer>,
}

impl McpTool {
    pub fn new(spec: ToolSpec, remote: String, server: Arc<McpServer>) -> Self {
        McpTool {
            spec,
            remote,
            server,
        }
    }
}

#[async_trait]
impl Tool for McpTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, call: &ToolInvocation) -> Result<serde_json::Value, ToolError> {
        self.server.call(&self.spec, &self.remote, call).await
    }
}
