use std::path::Path;

use clap::Args;

use ballast::vault::{MASTER_KEY_ENV, Vault, VaultStore, token};

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// The tenant whose keys are destroyed (all of its users, unless --user).
    #[arg(long, required_unless_present = "compact")]
    tenant: Option<String>,
    /// Only this user: their id as submitted (needs the master key: $BALLAST_MASTER_KEY_FILE or
    /// a development key), or their token `[pii:user:…]` as traces show it.
    #[arg(long, requires = "tenant")]
    user: Option<String>,
    /// Then (or, without --tenant, only) rewrite the data dir's sled database into a fresh one,
    /// so removed records — forgotten sealed values, keys an earlier version kept in sled —
    /// leave its files too (embedded, with `serve` stopped). Forgotten keys are gone without
    /// it, except the sled copies in a data dir an earlier version made.
    #[arg(long)]
    compact: bool,
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

/// Destroys the tenant's (or one user's) keys and sealed values; with `--compact`, then
/// rewrites the database.
pub async fn run(a: ForgetArgs) -> anyhow::Result<()> {
    let dir = &a.log.data_dir;
    if a.log.bootstrap.is_none() {
        // A compaction a crash cut short is finished first (sled/ may be renamed away).
        ballast::vault::compact::finish_interrupted(dir)?;
    }
    if !dir.join("sled").exists() {
        anyhow::bail!(
            "{} is not a ballast data dir (no sled/ inside)",
            dir.display()
        );
    }
    if a.compact && a.log.bootstrap.is_some() {
        anyhow::bail!(
            "--compact rewrites an embedded data dir; a Kafka replica's data dir can instead be \
             deleted while its process is stopped (it is read again from the topic)"
        );
    }
    if a.compact && ballast::embedded::Embedded::served(dir).is_some() {
        anyhow::bail!("--compact needs the data dir to itself: stop `ballast serve` first");
    }
    let mut said = match &a.tenant {
        Some(tenant) => forget(&a, tenant).await?,
        None => String::new(),
    };
    if a.compact {
        let c = ballast::vault::compact::compact(dir)?;
        said.push_str(&format!(
            "compacted the database: {} records in {} trees rewritten, {} → {} bytes\n",
            c.records, c.trees, c.bytes_before, c.bytes_after
        ));
    }
    super::emit(&said)
}

/// What forgetting `tenant` (or `--user` of it) did, said in a line.
async fn forget(a: &ForgetArgs, tenant: &str) -> anyhow::Result<String> {
    let dir = &a.log.data_dir;
    let who = match &a.user {
        Some(u) => format!("user {} of tenant {tenant}", token::mask(u)),
        None => format!("tenant {tenant} (every user)"),
    };
    let removed = match &a.log.bootstrap {
        None => {
            let emb = ballast::embedded::Embedded::open(dir, 0)?;
            let store: std::sync::Arc<dyn VaultStore> = emb.vault_store.clone();
            let code = match &a.user {
                Some(u) => match user_code(store.clone(), dir, tenant, u)? {
                    Some(c) => Some(c),
                    None => return Ok(format!("nothing kept of {who}\n")),
                },
                None => None,
            };
            let records = ballast::vault::forget_records(store.as_ref(), tenant, code.as_deref())?;
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
                Some(u) => match user_code(kv.local(), dir, tenant, u)? {
                    Some(c) => Some(c),
                    None => return Ok(format!("nothing kept of {who}\n")),
                },
                None => None,
            };
            let removed = kv.forget(tenant, code.as_deref()).await?;
            store.flush().await?;
            removed
        }
    };
    let keys = removed
        .iter()
        .filter(|(k, _)| k.starts_with(b"k\0") || k.starts_with(b"u\0"))
        .count();
    Ok(format!(
        "forgot {who}: {keys} keys and {} sealed values destroyed; views now show \
         [FORGOTTEN:kind]\n",
        removed.len() - keys
    ))
}
