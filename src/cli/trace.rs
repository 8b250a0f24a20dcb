use clap::Args;

use ballast::ids::TurnId;

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// The turn's id (UUID).
    turn_id: TurnId,
    #[command(flatten)]
    pub(super) log: super::LogArgs,
    /// Print a JSON array of events (flat: envelope fields, kind, payload fields, offset).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    reveal: super::RevealArgs,
}

pub async fn run(a: TraceArgs) -> anyhow::Result<()> {
    let opened = super::open_log(&a.log).await?;
    let (log, codecs, index) = (&opened.events, &opened.codecs, &opened.index);
    let found = ballast::operator::read_turn(log.as_ref(), codecs, index, a.turn_id).await?;
    let Some((partition, mut events, tenant)) = found.and_then(|(p, e)| {
        let tenant = e.first()?.1.tenant.clone();
        Some((p, e, tenant))
    }) else {
        anyhow::bail!("turn {} is not in {}", a.turn_id, a.log.data_dir.display());
    };
    let mut bare: Vec<_> = events.iter().map(|(_, e)| e.clone()).collect();
    a.reveal
        .show(&opened, &a.log.data_dir, a.turn_id, "cli-trace", &mut bare)
        .await?;
    for ((_, e), shown) in events.iter_mut().zip(bare) {
        *e = shown;
    }
    if a.json {
        let arr: Vec<_> = events
            .iter()
            .map(|(o, e)| e.trace_entry(partition.0, o.0))
            .collect();
        return super::emit(&(serde_json::to_string_pretty(&arr)? + "\n"));
    }
    let started = events
        .first()
        .map(|(_, e)| format!("  requested {}", ballast::clock::rfc3339(e.at_ms)))
        .unwrap_or_default();
    let mut out = format!(
        "turn {}  tenant {}  partition {partition}{started}\n",
        a.turn_id, tenant
    );
    out.push_str(&ballast::event::timeline(&events));
    super::emit(&out)
}
