use std::path::PathBuf;

use clap::{Args, Subcommand};

use ballast::api::auth::{AuthConfig, Role};
use ballast::control::claims::Grants;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct TokenArgs {
    #[command(subcommand)]
    action: Option<TokenAction>,
    /// Who the token is for: recorded as the operator of what they do.
    #[arg(long, required = true)]
    name: Option<String>,
    #[arg(long, required = true)]
    tenant: Option<String>,
    /// Comma-separated: submitter, operator, auditor, admin.
    #[arg(long, default_value = "submitter,operator,auditor")]
    roles: String,
    /// Comma-separated end-user claims requests sent with this token may assert: scopes
    /// (`orders:read`, `orders:*`, `*`) and roles (`role:customer`, `role:*`). Default: none.
    #[arg(long, default_value = "")]
    grants: String,
    /// Comma-separated claims a request gets when it asserts no roles or no scopes (within
    /// --grants).
    #[arg(long, default_value = "")]
    defaults: String,
    #[command(flatten)]
    file: AuthFile,
}

#[derive(Debug, Args)]
struct AuthFile {
    /// The auth file (default: DATA_DIR/auth.toml).
    #[arg(long)]
    auth: Option<PathBuf>,
    /// The data dir whose auth.toml `ballast serve` reads.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Remove every token with this name; a running `ballast serve` stops accepting it within
    /// seconds.
    Revoke {
        name: String,
        #[command(flatten)]
        file: AuthFile,
    },
}

fn path(f: &AuthFile, create: bool) -> anyhow::Result<PathBuf> {
    match (&f.auth, &f.data_dir) {
        (Some(p), _) => {
            // A new auth file's folder is made, as a new data dir is.
            if let Some(dir) = p.parent().filter(|d| create && !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            Ok(p.clone())
        }
        (None, Some(d)) => {
            if create {
                std::fs::create_dir_all(d)?;
            }
            Ok(d.join("auth.toml"))
        }
        (None, None) => anyhow::bail!("say where the tokens are: --data-dir D or --auth FILE"),
    }
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Issues a new API token (prints it once and stores only its SHA-256), or revokes one.
pub async fn run(a: TokenArgs) -> anyhow::Result<()> {
    if let Some(TokenAction::Revoke { name, file }) = &a.action {
        let path = path(file, false)?;
        let removed = AuthConfig::revoke(&path, name)?;
        if removed == 0 {
            anyhow::bail!("no token named {name:?} in {}", path.display());
        }
        return super::emit(&format!(
            "revoked {removed} token(s) named {name:?} in {}\n",
            path.display()
        ));
    }
    let (Some(name), Some(tenant)) = (&a.name, &a.tenant) else {
        anyhow::bail!("--name and --tenant are needed");
    };
    let roles = a
        .roles
        .split(',')
        .filter(|r| !r.trim().is_empty())
        .map(|r| Role::parse(r).ok_or_else(|| anyhow::anyhow!("unknown role {r:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if roles.is_empty() {
        anyhow::bail!("a token needs at least one role");
    }
    let grants = Grants::new(list(&a.grants), list(&a.defaults));
    grants
        .validate()
        .map_err(|e| anyhow::anyhow!("--grants/--defaults: {e}"))?;
    let path = path(&a.file, true)?;
    let (token, entry) = AuthConfig::issue_with(name, tenant, roles, grants);
    AuthConfig::append(&path, &entry)?;
    AuthConfig::load(&path)?;
    eprintln!(
        "stored the hash in {}; the token is shown once:",
        path.display()
    );
    super::emit(&format!("{token}\n"))
}
