use clap::Args;

use ballast::projection::turn_index::TurnStatus;

#[derive(Debug, Args)]
pub struct TurnsArgs {
    #[command(flatten)]
    pub(super) log: super::LogArgs,
    /// One JSON object per line: turn_id, status (running|terminal), outcome, …
    #[arg(long)]
    json: bool,
}

pub async fn run(a: TurnsArgs) -> anyhow::Result<()> {
    let opened = super::open_log(&a.log).await?;
    let index = &opened.index;
    let mut masker = opened.masker();
    let mut out = String::new();
    for e in index.all()? {
        if a.json {
            // The reply and the steps come from the turn's outcome record (redacted like it).
            let record = opened.outcomes.get(e.turn_id)?.map(|mut r| {
                masker.outcome(&mut r);
                r
            });
            let line = serde_json::json!({
                "turn_id": e.turn_id.to_string(),
                "status": e.status,
                "outcome": e.outcome,
                "tenant": e.tenant,
                "user_id": masker.user(&e.tenant, &e.user_id),
                "latency_ms": e.latency_ms,
                "events": e.events,
                "session_id": e.session_id.as_deref().map(|s| masker.text(&e.tenant, &e.user_id, s)),
                "steps": record.as_ref().map(|r| r.steps),
                "reply": record.and_then(|r| r.reply),
            });
            out.push_str(&line.to_string());
        } else {
            let status = match e.status {
                TurnStatus::Running => "running",
                TurnStatus::Terminal => "terminal",
            };
            let outcome = e.outcome.map_or("-", |o| o.as_str());
            let latency = e.latency_ms.map_or("-".to_string(), |l| format!("{l} ms"));
            out.push_str(&format!(
                "{}  {status:<8} {outcome:<10} {:<8} {latency:>8}  {} events",
                e.turn_id, e.tenant, e.events
            ));
        }
        out.push('\n');
    }
    super::emit(&out)
}
