use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub(super) log: super::LogArgs,
    /// The result as JSON.
    #[arg(long)]
    json: bool,
}

/// Catches the projections up (the live state), rebuilds them all from offset 0 with a progress
/// bar, and prints each one's digest. A rebuild that differs from the live state is an error:
/// a projection that is not a pure function of the log.
pub async fn run(a: ReplayArgs) -> anyhow::Result<()> {
    let opened = super::open_raw(
        &a.log.data_dir,
        a.log.bootstrap.as_deref(),
        &a.log.topic_prefix,
    )
    .await?;
    let (events, codec, set) = (
        opened.events.as_ref(),
        &opened.codecs.events,
        &opened.projections,
    );
    set.catch_up(events, codec, &|_| {}).await?;
    let live = set.digest()?;

    // Inside `serve` the live projections keep serving reads: rebuild beside them, in a scratch
    // database, and compare. Offline, rebuild in place.
    let scratch = match a.log.embedded_dir() {
        Some(dir) if ballast::embedded::Embedded::served(&dir).is_some() => Some(
            tempfile::Builder::new()
                .prefix("ballast-replay-")
                .tempdir()?,
        ),
        _ => None,
    };
    let scratch_set;
    let set = match &scratch {
        Some(tmp) => {
            let store = ballast::log::SledStore::open(tmp.path())?;
            scratch_set = ballast::projection::Projections::standard(&store)?;
            &scratch_set
        }
        None => {
            set.reset()?;
            set
        }
    };
    let total = set.behind(events).await?;
    let bar = ProgressBar::new(total).with_style(ProgressStyle::with_template(
        "replay {bar:40} {pos}/{len} events ({per_sec}, eta {eta})",
    )?);
    let started = Instant::now();
    let done = set.catch_up(events, codec, &|n| bar.inc(n)).await?;
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let digests = set.digests()?;
    let digest = set.digest()?;
    let same = digest == live;
    if a.json {
        let out = serde_json::json!({
            "events": done.read,
            "undecodable": done.undecodable,
            "partitions": events.partitions(),
            "seconds": elapsed,
            "events_per_sec": done.read as f64 / elapsed.max(1e-9),
            "projections": digests.iter().map(|(n, d)| serde_json::json!({"name": n, "digest": d})).collect::<Vec<_>>(),
            "digest": digest,
            "live_digest": live,
            "matches_live": same,
        });
        super::emit(&(serde_json::to_string_pretty(&out)? + "\n"))?;
    } else {
        let mut s = format!(
            "replayed {} events from {} partitions in {elapsed:.2} s (events_per_sec={:.0})",
            done.read,
            events.partitions(),
            done.read as f64 / elapsed.max(1e-9)
        );
        if done.undecodable > 0 {
            s.push_str(&format!(", {} undecodable", done.undecodable));
        }
        s.push('\n');
        for (name, d) in &digests {
            s.push_str(&format!("  {name:<12} sha256:{d}\n"));
        }
        s.push_str(&format!(
            "digest {digest} ({})\n",
            if same {
                "matches the live projections"
            } else {
                "DIFFERS from the live projections"
            }
        ));
        super::emit(&s)?;
    }
    if !same {
        anyhow::bail!("rebuilt projections differ from the live ones (live {live})");
    }
    Ok(())
}
