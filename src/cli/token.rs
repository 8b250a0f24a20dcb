use std::path::PathBuf;

use clap::Args;

use ballast::api::auth::{AuthConfig, Role};

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Who the token is for: recorded as the operator of what they do.
    #[arg(long)]
    name: String,
    #[arg(long)]
    tenant: String,
    /// Comma-separated: submitter, operator, auditor, admin.
    #[arg(long, default_value = "submitter,operator,auditor")]
    roles: String,
    /// The auth file to add the token's hash to (default: DATA_DIR/auth.toml).
    #[arg(long)]
    auth: Option<PathBuf>,
    /// The data dir whose auth.toml `ballast serve` reads.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// Issues a new API token: prints it once and stores only its SHA-256.
pub async fn run(a: TokenArgs) -> anyhow::Result<()> {
    let roles = a
        .roles
        .split(',')
        .filter(|r| !r.trim().is_empty())
        .map(|r| Role::parse(r).ok_or_else(|| anyhow::anyhow!("unknown role {r:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if roles.is_empty() {
        anyhow::bail!("a token needs at least one role");
    }
    let path = match (a.auth, a.data_dir) {
        (Some(p), _) => p,
        (None, Some(d)) => {
            std::fs::create_dir_all(&d)?;
            d.join("auth.toml")
        }
        (None, None) => anyhow::bail!("say where to store it: --data-dir D or --auth FILE"),
    };
    let (token, entry) = AuthConfig::issue(&a.name, &a.tenant, roles);
    AuthConfig::append(&path, &entry)?;
    AuthConfig::load(&path)?;
    eprintln!(
        "stored the hash in {}; the token is shown once:",
        path.display()
    );
    super::emit(&format!("{token}\n"))
}
