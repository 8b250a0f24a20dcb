use std::path::{Path, PathBuf};

use clap::Args;

use ballast::vault::{Vault, VaultStore};

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The new master key: a file of 32 random bytes in hex (`openssl rand -hex 32 > new.key`).
    #[arg(long)]
    new_key: PathBuf,
    /// The master key in use now; default $BALLAST_MASTER_KEY_FILE, else the data dir's
    /// development key.
    #[arg(long)]
    old_key: Option<PathBuf>,
    #[command(flatten)]
    log: super::LogArgs,
}

/// Re-wraps the vault's tenant keys from the old master key to the new one. Embedded, the data
/// dir must not be open in `serve` (its lock says so); on Kafka, stop the workers first: each
/// holds the old key until restarted with the new one.
pub async fn run(a: RotateArgs) -> anyhow::Result<()> {
    let dir = &a.log.data_dir;
    let old = match &a.old_key {
        Some(p) => Vault::read_master(p)?,
        None => match super::forget::master_key(dir)? {
            Some(k) => k,
            None => anyhow::bail!(
                "no current master key: give --old-key, or set ${}",
                ballast::vault::MASTER_KEY_ENV
            ),
        },
    };
    let new = Vault::read_master(&a.new_key)?;
    if old == new {
        anyhow::bail!("the new master key is the one in use");
    }
    let rewrapped = match &a.log.bootstrap {
        None => {
            if !dir.join("sled").exists() {
                anyhow::bail!(
                    "{} is not a ballast data dir (no sled/ inside)",
                    dir.display()
                );
            }
            let emb = ballast::embedded::Embedded::open(dir, 0).map_err(|e| {
                anyhow::anyhow!(
                    "{e} (is `ballast serve` running on {}? stop it first)",
                    dir.display()
                )
            })?;
            let store: &dyn VaultStore = emb.vault_store.as_ref();
            let records = ballast::vault::rotate::rewrap_records(store, &old, &new)?;
            // One batch: every tenant key moves to the new master key, or none does.
            store.apply(&records)?;
            emb.store.flush().await?;
            records.len()
        }
        Some(bootstrap) => {
            let store = ballast::log::SledStore::open(dir)?;
            let cfg = ballast::log::kafka::KafkaConfig::new(bootstrap);
            let topics = ballast::kafka::Topics::new(&a.log.topic_prefix);
            let kv = ballast::kafka::vault::open_synced(&cfg, &topics, &store, dir).await?;
            let n = kv.rotate(&old, &new).await?;
            store.flush().await?;
            n
        }
    };
    super::emit(&format!(
        "re-wrapped {rewrapped} tenant keys under {}; start serve or the workers with it \
         ([vault] master_key_file or ${}), then destroy the old key\n",
        display(&a.new_key),
        ballast::vault::MASTER_KEY_ENV
    ))
}

fn display(p: &Path) -> String {
    p.display().to_string()
}
