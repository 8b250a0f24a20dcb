use std::path::PathBuf;

use clap::Args;

use ballast::runtime::shutdown;
use ballast::serve::{ServeOptions, run as run_serve};

/// Where `ballast serve` listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8420";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Data directory (created if missing).
    #[arg(long)]
    data_dir: PathBuf,
    /// HTTP address of the API, the dashboard, `/metrics`, `/healthz` and `/readyz` (port 0
    /// picks a free one).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: std::net::SocketAddr,
    /// Policy directory (`*.cedar`, `control.toml`), reloaded on change. Defaults to the
    /// built-in examples/demo/policies.
    #[arg(long)]
    policies: Option<PathBuf>,
    /// Upper bound of each simulated service call of the demo tools, in milliseconds.
    #[arg(long, default_value_t = 4)]
    service_latency_ms: u64,
    /// API tokens (hashed), tenants, roles, rate limit. Default: DATA_DIR/auth.toml (add tokens
    /// with `ballast token`).
    #[arg(long)]
    auth: Option<PathBuf>,
}

pub async fn run(a: ServeArgs) -> anyhow::Result<()> {
    let (tx, rx) = shutdown::channel();
    shutdown::on_signals(tx);
    let mut opts = ServeOptions::new(a.data_dir, a.listen);
    opts.policies = a.policies;
    opts.service_latency_ms = a.service_latency_ms;
    opts.auth = a.auth;
    run_serve(opts, rx, |addr| {
        // Tests and scripts read the address from this line.
        let _ = super::emit(&format!("listening on http://{addr}\n"));
    })
    .await?;
    Ok(())
}
