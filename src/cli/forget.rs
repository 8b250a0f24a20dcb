use std::path::Path;

use clap::Args;

use ballast::vault::{MASTER_KEY_ENV, Vault, VaultStore, token};

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// The tenant whose keys are destroyed (all of its users, unless --user).
    #[arg(long)]
    tenant: String,
    /// Only this user: their id as submitted (needs the master key: $BALLAST_MASTER_KEY_FILE or
    /// the data dir's development key), or their token `[pii:user:…]` as traces show it.
    #[arg(long)]
    user: Option<String>,
    #[command(flatten)]
    pub(super) log: super::LogArgs,
}

/// The master key, if one is to hand ($BALLAST_MASTER_KEY_FILE, else a development key: the
/// data dir's own or this user's). Forgetting by token or a whole tenant needs none.
pub(super) fn master_key(dir: &Path) -> anyhow::Result<Option<ballast::vault::crypto::Key>> {
    if let Some(path) = super::env_var(MASTER_KEY_ENV) {
        return Ok(Some(Vault::read_master(Path::new(&path))?));
    }
    match Vault::existing_dev_key(dir) {
        Some(dev) => Ok(Some(Vault::read_master(&dev)?)),
        None => Ok(None),
    }
}

/// The code of the user's token (`None`: the tenant has no key, nothing is kept of it).
fn user_code(
    store: std::sync::Arc<dyn VaultStore>,
    dir: &Path,
    tenant: &str,
    user: &str,
) -> anyhow::Result<Option<String>> {
    if token::is_token(user) {
        return Ok(token::find(user).first().map(|t| t.code.clone()));
    }
    let Some(master) = master_key(dir)? else {
        anyhow::bail!(
            "forgetting a user by id needs the master key (${MASTER_KEY_ENV}); or give the \
             user's token as `trace` shows it ([pii:user:…])"
        );
    };
    let vault = Vault::new(master, store, ballast::guard::Redactor::builtin());
    Ok(vault.user_code_of(tenant, user)?)
}

/// Destroys the tenant's (or one user's) keys and sealed values.
pub async fn run(a: ForgetArgs) -> anyhow::Result<()> {
    let dir = &a.log.data_dir;
    if !dir.join("sled").exists() {
        anyhow::bail!(
            "{} is not a ballast data dir (no sled/ inside)",
            dir.display()
        );
    }
    let who = match &a.user {
        Some(u) => format!("user {} of tenant {}", token::mask(u), a.tenant),
        None => format!("tenant {} (every user)", a.tenant),
    };
    let removed = match &a.log.bootstrap {
        None => {
            let emb = ballast::embedded::Embedded::open(dir, 0)?;
            let store: std::sync::Arc<dyn VaultStore> = emb.vault_store.clone();
            let code = match &a.user {
                Some(u) => match user_code(store.clone(), dir, &a.tenant, u)? {
                    Some(c) => Some(c),
                    None => return super::emit(&format!("nothing kept of {who}\n")),
                },
                None => None,
            };
            let records =
                ballast::vault::forget_records(store.as_ref(), &a.tenant, code.as_deref())?;
            store.apply(&records)?;
            emb.store.flush().await?;
            records
        }
        Some(bootstrap) => {
            let store = ballast::log::SledStore::open(dir)?;
            let cfg = ballast::log::kafka::KafkaConfig::new(bootstrap);
            let topics = ballast::kafka::Topics::new(&a.log.topic_prefix);
            // The replica in this data dir, brought up to the topic (tenant keys included).
            let kv = ballast::kafka::vault::open_synced(&cfg, &topics, &store, dir).await?;
            let code = match &a.user {
                Some(u) => match user_code(kv.local(), dir, &a.tenant, u)? {
                    Some(c) => Some(c),
                    None => return super::emit(&format!("nothing kept of {who}\n")),
                },
                None => None,
            };
            let removed = kv.forget(&a.tenant, code.as_deref()).await?;
            store.flush().await?;
            removed
        }
    };
    let keys = removed
        .iter()
        .filter(|(k, _)| k.starts_with(b"k\0") || k.starts_with(b"u\0"))
        .count();
    super::emit(&format!(
        "forgot {who}: {keys} keys and {} sealed values destroyed; views now show [FORGOTTEN:kind]\n",
        removed.len() - keys
    ))
}
