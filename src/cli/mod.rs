//! Command-line interface: one file per command. Names and flags are contracts other work builds on.

mod approve;
mod audit;
mod bench;
mod check_config;
mod demo;
mod desk;
mod drill;
mod forget;
mod handoff;
mod index;
mod injection;
mod kafka;
mod late;
mod outcomes;
mod replay;
mod rotate;
mod serve;
mod slo;
mod token;
mod tools;
mod trace;
mod turns;
mod worker;

use std::path::Path;

use ballast::embedded::Embedded;
use ballast::projection::turn_index::TurnIndex;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ballast",
    version,
    about = "Event-sourced reliability runtime for AI agent turns"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate the demo workload and run it to completion on the embedded sled log.
    Demo(demo::DemoArgs),
    /// List turns with their status and outcome.
    Turns(turns::TurnsArgs),
    /// Show one turn's timeline from the log.
    Trace(trace::TraceArgs),
    /// Measure N five-step turns with instant tools against raw sled appends.
    Bench(bench::BenchArgs),
    /// Kafka administration.
    Kafka(kafka::KafkaArgs),
    /// Run a worker that shares Kafka partitions with the other workers of its group.
    Worker(worker::WorkerArgs),
    /// Grant the approval a turn is waiting for.
    Approve(approve::ApprovalArgs),
    /// Deny the approval a turn is waiting for (the turn ends as denied).
    Deny(approve::ApprovalArgs),
    /// Turns handed to a human operator: list, accept, resolve.
    Handoff(handoff::HandoffArgs),
    /// Finished turns' outcome records (what analytics consumers read), as JSON lines.
    Outcomes(outcomes::OutcomesArgs),
    /// Each SLO: target, value, error budget left and burn rates over 5m, 30m, 1h, 6h and 3d;
    /// `slo rules` writes the Prometheus alerting rules.
    Slo(slo::SloArgs),
    /// Rebuild every projection from offset 0 and print its digest (equal to the live one).
    Replay(replay::ReplayArgs),
    /// For each side effect of a turn, the chain of recorded facts that caused it.
    Audit(audit::AuditArgs),
    /// Re-evaluate every recorded policy decision under another policy set (no model, no tool).
    Backtest(audit::BacktestArgs),
    /// Undo a finished turn's completed calls by their compensations, newest first.
    Reverse(late::ReverseArgs),
    /// Attach a late outcome label to a finished turn (e.g. hallucination_with_action).
    Label(late::LabelArgs),
    /// Run the embedded deployment: worker, projections, HTTP API, dashboard, `/metrics`.
    Serve(serve::ServeArgs),
    /// Run a workload without and with injected faults; print the SLOs side by side.
    Drill(drill::DrillArgs),
    /// Validate a configuration file (ballast.toml); errors point at the line.
    CheckConfig(check_config::CheckConfigArgs),
    /// Issue an API token (tenant, roles) for `ballast serve`; only its hash is stored.
    Token(token::TokenArgs),
    /// Destroy the vault keys of a tenant or one of its users: their personal values can never
    /// be read again (views show [FORGOTTEN:kind]; replay and SLOs still work).
    Forget(forget::ForgetArgs),
    /// Re-wrap every tenant key of the vault under a new master key (stop `serve` or the
    /// workers first; nothing else is re-encrypted and no token changes).
    RotateMasterKey(rotate::RotateArgs),
    /// Run the prompt-injection suite: attacks in tool output, documents and session history
    /// against a hijackable scripted model; per scenario, what ran and what was stopped.
    Injection(injection::InjectionArgs),
    /// The resolved tool catalog of a configuration (catalog file and MCP servers, overrides
    /// applied): name, source, impact, idempotent, trust, scopes, sinks.
    Tools(tools::ToolsArgs),
    /// A local full-text index over a folder of Markdown or text files, for
    /// `[retrieval] kind = "index"`: `index build`, `index search`.
    Index(index::IndexArgs),
}

/// Runs the command; one that reads or answers on a data dir that `ballast serve` holds is sent
/// to that process over its local socket and run there (same output), since the dir is locked.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if LOCAL.try_with(|_| ()).is_err() {
        if let Some(dir) = forwardable(&cli.command) {
            let request = ballast::local_socket::Request {
                // Paths as the client means them: `serve` runs in another directory.
                argv: absolute_paths(std::env::args().skip(1).collect()),
                env: ["BALLAST_OPERATOR", "USER", ballast::vault::MASTER_KEY_ENV]
                    .iter()
                    .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
                    // A key file named relative to the client's directory, not the server's.
                    .map(|(k, v)| match std::path::absolute(&v) {
                        Ok(abs) if k == ballast::vault::MASTER_KEY_ENV => {
                            (k, abs.display().to_string())
                        }
                        _ => (k, v),
                    })
                    .collect(),
            };
            if let Some(reply) = ballast::local_socket::forward(&dir, &request).await {
                let reply = reply.map_err(|e| {
                    anyhow::anyhow!("`ballast serve` on {} did not answer: {e}", dir.display())
                })?;
                eprint!("{}", reply.stderr);
                emit(&reply.stdout)?;
                return match reply.error {
                    Some(e) => Err(anyhow::anyhow!(e)),
                    None => Ok(()),
                };
            }
        }
    }
    dispatch(cli).await
}

/// `argv` with the value of every path option (`--data-dir rel`, `--policies=p`) made absolute
/// against this process's directory, found from the command's own definition.
fn absolute_paths(argv: Vec<String>) -> Vec<String> {
    use clap::CommandFactory;
    let root = Cli::command();
    let mut path_flags = std::collections::BTreeSet::new();
    let mut collect = |cmd: &clap::Command| {
        for arg in cmd.get_arguments() {
            if arg.get_value_parser().type_id() == std::any::TypeId::of::<std::path::PathBuf>()
                && let Some(long) = arg.get_long()
            {
                path_flags.insert(format!("--{long}"));
            }
        }
    };
    collect(&root);
    let mut cmd = &root;
    for tok in &argv {
        if let Some(sub) = cmd.find_subcommand(tok) {
            cmd = sub;
            collect(cmd);
        }
    }
    let absolute = |v: &str| match std::path::absolute(v) {
        Ok(p) => p.display().to_string(),
        Err(_) => v.to_string(),
    };
    let mut out = Vec::with_capacity(argv.len());
    let mut next_is_path = false;
    for tok in argv {
        if next_is_path {
            next_is_path = false;
            out.push(absolute(&tok));
            continue;
        }
        if path_flags.contains(&tok) {
            next_is_path = true;
            out.push(tok);
        } else if let Some((flag, value)) = tok.split_once('=')
            && path_flags.contains(flag)
        {
            out.push(format!("{flag}={}", absolute(value)));
        } else {
            out.push(tok);
        }
    }
    out
}

/// The data dir of a command that can run inside the process serving it: the embedded read
/// and operator commands (not those that own a data dir, like `serve` or `demo`).
fn forwardable(command: &Command) -> Option<std::path::PathBuf> {
    match command {
        Command::Turns(a) => a.log.embedded_dir(),
        Command::Trace(a) => a.log.embedded_dir(),
        Command::Approve(a) | Command::Deny(a) => a.log.embedded_dir(),
        Command::Handoff(a) => a.embedded_dir(),
        Command::Outcomes(a) => a.log.embedded_dir(),
        Command::Slo(a) => a.embedded_dir(),
        Command::Replay(a) => a.log.embedded_dir(),
        Command::Audit(a) => a.log.embedded_dir(),
        Command::Backtest(a) => a.log.embedded_dir(),
        Command::Reverse(a) => a.log.embedded_dir(),
        Command::Label(a) => a.log.embedded_dir(),
        Command::Forget(a) => a.log.embedded_dir(),
        _ => None,
    }
}

tokio::task_local! {
    /// Set while a command runs for a CLI client inside `serve`: where its output goes and the
    /// client's environment.
    static LOCAL: Local;
}

#[derive(Clone)]
struct Local {
    out: std::sync::Arc<std::sync::Mutex<String>>,
    env: std::collections::BTreeMap<String, String>,
}

/// An environment variable of whoever runs the command (the CLI client's, inside `serve`).
fn env_var(name: &str) -> Option<String> {
    match LOCAL.try_with(|l| l.env.get(name).cloned()) {
        Ok(v) => v,
        Err(_) => std::env::var(name).ok(),
    }
}

/// Who answers, for the record: `--operator`, else `$BALLAST_OPERATOR`, else `$USER`.
fn operator_name(flag: &Option<String>) -> String {
    flag.clone()
        .or_else(|| env_var("BALLAST_OPERATOR"))
        .or_else(|| env_var("USER"))
        .unwrap_or_else(|| "cli".into())
}

/// What `serve` runs for a CLI client on its local socket.
pub fn local_handler() -> ballast::local_socket::Handler {
    ballast::local_socket::Handler(std::sync::Arc::new(
        |req: ballast::local_socket::Request| {
            Box::pin(async move {
                let mut reply = ballast::local_socket::Reply::default();
                let cli = match Cli::try_parse_from(
                    std::iter::once("ballast".to_string()).chain(req.argv.iter().cloned()),
                ) {
                    Ok(cli) => cli,
                    Err(e) => {
                        reply.error = Some(e.to_string());
                        return reply;
                    }
                };
                if forwardable(&cli.command).is_none() {
                    reply.error = Some("this command does not run through `ballast serve`".into());
                    return reply;
                }
                let local = Local {
                    out: Default::default(),
                    env: req.env,
                };
                let out = std::sync::Arc::clone(&local.out);
                let result = LOCAL.scope(local, dispatch(cli)).await;
                reply.stdout = std::mem::take(&mut *out.lock().unwrap_or_else(|p| p.into_inner()));
                reply.error = result.err().map(|e| format!("{e:#}"));
                reply
            })
        },
    ))
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo(a) => demo::run(a).await,
        Command::Turns(a) => turns::run(a).await,
        Command::Trace(a) => trace::run(a).await,
        Command::Bench(a) => bench::run(a).await,
        Command::Kafka(a) => kafka::run(a).await,
        Command::Worker(a) => worker::run(a).await,
        Command::Approve(a) => approve::run(a, true).await,
        Command::Deny(a) => approve::run(a, false).await,
        Command::Handoff(a) => handoff::run(a).await,
        Command::Outcomes(a) => outcomes::run(a).await,
        Command::Slo(a) => slo::run(a).await,
        Command::Replay(a) => replay::run(a).await,
        Command::Audit(a) => audit::audit(a).await,
        Command::Backtest(a) => audit::backtest_cmd(a).await,
        Command::Reverse(a) => late::reverse(a).await,
        Command::Label(a) => late::label(a).await,
        Command::Serve(a) => serve::run(a).await,
        Command::Token(a) => token::run(a).await,
        Command::Drill(a) => drill::run(a).await,
        Command::CheckConfig(a) => check_config::run(a).await,
        Command::Forget(a) => forget::run(a).await,
        Command::RotateMasterKey(a) => rotate::run(a).await,
        Command::Injection(a) => injection::run(a).await,
        Command::Tools(a) => tools::run(a).await,
        Command::Index(a) => index::run(a).await,
    }
}

/// What the read commands work on: the turn log (sled, or Kafka with `--bootstrap`), its codecs
/// and the turn index, caught up (cached in the data dir).
struct Opened {
    events: std::sync::Arc<dyn ballast::log::EventLog>,
    codecs: ballast::event::codec::Codecs,
    index: TurnIndex,
    outcomes: ballast::projection::outcomes::OutcomeView,
    projections: ballast::projection::Projections,
    store: ballast::log::SledStore,
    /// The vault's records (views ask it only whether a user's keys still exist).
    vault: std::sync::Arc<ballast::vault::SledVaultStore>,
    /// Where reveals are recorded.
    reveals: std::sync::Arc<dyn ballast::log::EventLog>,
}

impl Opened {
    /// Masks views: `[REDACTED:kind]`, `[FORGOTTEN:kind]`.
    fn masker(&self) -> ballast::vault::view::Masker<'_> {
        ballast::vault::view::Masker::new(Some(self.vault.as_ref()))
    }

    /// Records a reveal of `turn` by this CLI's operator, then opens the vault with the master
    /// key ($BALLAST_MASTER_KEY_FILE, else the data dir's development key — never a new one).
    async fn reveal(
        &self,
        dir: &Path,
        turn: ballast::ids::TurnId,
        tenant: &str,
        surface: &str,
        reason: Option<&str>,
        operator: &Option<String>,
    ) -> anyhow::Result<ballast::vault::Vault> {
        use ballast::vault::{MASTER_KEY_ENV, Vault};
        let master = match (env_var(MASTER_KEY_ENV), Vault::existing_dev_key(dir)) {
            (Some(path), _) => Vault::read_master(Path::new(&path))?,
            (None, Some(dev)) => Vault::read_master(&dev)?,
            (None, None) => anyhow::bail!(
                "revealing needs the master key: set ${MASTER_KEY_ENV} to the file `serve` or `worker` uses"
            ),
        };
        let detector = ballast::guard::Redactor::builtin();
        let vault = Vault::new(master, self.vault.clone(), detector);
        // A key that does not open the tenant would show every value as forgotten.
        vault.opens(tenant)?;
        let who = operator_name(operator);
        let r = ballast::vault::reveal::Reveal::new(
            turn,
            tenant,
            &who,
            vec!["local".into()],
            surface,
            reason,
            ballast::clock::Clock::now_ms(&ballast::clock::SystemClock),
        )?;
        ballast::vault::reveal::record(self.reveals.as_ref(), &[r]).await?;
        Ok(vault)
    }
}

/// `--reveal`: cleartext instead of `[REDACTED:kind]`, recorded in the reveals log first.
#[derive(Debug, Clone, clap::Args)]
pub struct RevealArgs {
    /// Show personal values in clear (needs the master key: $BALLAST_MASTER_KEY_FILE, or the
    /// data dir's development key). Recorded — who, when, which turn, why — before anything
    /// is shown.
    #[arg(long, requires = "reason")]
    reveal: bool,
    /// Why the values are revealed (kept with the reveal).
    #[arg(long)]
    reason: Option<String>,
    /// Who reveals (default $BALLAST_OPERATOR, else $USER).
    #[arg(long)]
    operator: Option<String>,
}

impl RevealArgs {
    /// Masks `events` (one turn's), or reveals them after recording the reveal.
    async fn show(
        &self,
        opened: &Opened,
        dir: &Path,
        turn: ballast::ids::TurnId,
        surface: &str,
        events: &mut [ballast::event::Event],
    ) -> anyhow::Result<()> {
        if !self.reveal {
            opened.masker().events(events);
            return Ok(());
        }
        let tenant = events.first().map(|e| e.tenant.clone()).unwrap_or_default();
        let vault = opened
            .reveal(
                dir,
                turn,
                &tenant,
                surface,
                self.reason.as_deref(),
                &self.operator,
            )
            .await?;
        ballast::vault::view::reveal_events(&vault, events);
        Ok(())
    }
}

/// Where the read commands find the turn log.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    #[arg(long)]
    data_dir: std::path::PathBuf,
    /// Read the turn log from Kafka (the data dir then only caches the index).
    #[arg(long)]
    bootstrap: Option<String>,
    #[arg(long, default_value = ballast::kafka::DEFAULT_PREFIX)]
    topic_prefix: String,
}

impl LogArgs {
    /// The data dir, when the turn log is the embedded one there (no `--bootstrap`).
    fn embedded_dir(&self) -> Option<std::path::PathBuf> {
        self.bootstrap.is_none().then(|| self.data_dir.clone())
    }
}

/// Brings the turn index up to the log's end. Inside `serve`, through its projection set (one
/// catch-up at a time: two would fold the same chunk twice).
async fn catch_up_index(emb: &Embedded, index: &TurnIndex) -> anyhow::Result<()> {
    catch_up_index_of(&emb.dir, emb.events.as_ref(), &emb.codecs, index).await
}

async fn catch_up_index_of(
    dir: &Path,
    events: &dyn ballast::log::EventLog,
    codecs: &ballast::event::codec::Codecs,
    index: &TurnIndex,
) -> anyhow::Result<()> {
    match Embedded::served(dir) {
        Some((_, projections)) => {
            projections
                .catch_up(events, &codecs.events, &|_| {})
                .await?;
        }
        None => {
            index.catch_up(events, &codecs.events).await?;
        }
    }
    Ok(())
}

/// The turn log with its projections caught up.
async fn open_log(a: &LogArgs) -> anyhow::Result<Opened> {
    let opened = open_raw(&a.data_dir, a.bootstrap.as_deref(), &a.topic_prefix).await?;
    opened
        .projections
        .catch_up(opened.events.as_ref(), &opened.codecs.events, &|_| {})
        .await?;
    Ok(opened)
}

/// The turn log and its projections as stored (not caught up).
async fn open_raw(
    dir: &Path,
    bootstrap: Option<&str>,
    topic_prefix: &str,
) -> anyhow::Result<Opened> {
    if !dir.join("sled").exists() {
        anyhow::bail!(
            "{} is not a ballast data dir (no sled/ inside)",
            dir.display()
        );
    }
    if bootstrap.is_none() {
        if let Some((emb, projections)) = Embedded::served(dir) {
            // Inside `serve`: its database and its projection set (one catch-up at a time).
            return Ok(Opened {
                index: TurnIndex::open(&emb.store)?,
                outcomes: ballast::projection::outcomes::OutcomeView::open(&emb.store)?,
                projections,
                events: emb.events.clone(),
                codecs: emb.codecs.clone(),
                store: emb.store.clone(),
                vault: emb.vault_store.clone(),
                reveals: emb.reveals.clone(),
            });
        }
    }
    type Log = std::sync::Arc<dyn ballast::log::EventLog>;
    let (events, codecs, store, reveals): (Log, _, _, Log) = match bootstrap {
        None => {
            let emb = Embedded::open(dir, 0)?;
            (
                emb.events.clone(),
                emb.codecs.clone(),
                emb.store.clone(),
                emb.reveals.clone(),
            )
        }
        Some(b) => {
            let store = ballast::log::SledStore::open(dir)?;
            let codecs = ballast::embedded::load_codecs(&store)?;
            let topics = ballast::kafka::Topics::new(topic_prefix);
            let cfg = ballast::log::kafka::KafkaConfig::new(b);
            let events =
                std::sync::Arc::new(ballast::log::KafkaLog::open(&cfg, &topics.events).await?);
            let reveals =
                std::sync::Arc::new(ballast::log::KafkaLog::open(&cfg, &topics.reveals).await?);
            // This data dir's replica of the vault topic, brought up to date: views tell kept
            // values from forgotten ones, and reveals read them.
            if let Err(e) = ballast::kafka::vault::open_synced(&cfg, &topics, &store, dir).await {
                eprintln!(
                    "warning: the vault topic could not be read ({e}); views show what this data dir last saw"
                );
            }
            (events, codecs, store, reveals)
        }
    };
    let vault = std::sync::Arc::new(
        ballast::vault::SledVaultStore::open(&store, dir).map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let index = TurnIndex::open(&store)?;
    let outcomes = ballast::projection::outcomes::OutcomeView::open(&store)?;
    let projections = ballast::projection::Projections::standard(&store)?;
    Ok(Opened {
        events,
        codecs,
        index,
        outcomes,
        projections,
        store,
        vault,
        reveals,
    })
}

/// Writes to stdout (or to the CLI client a command runs for inside `serve`); a closed pipe
/// (`ballast turns | head`) ends output quietly instead of panicking.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    if let Ok(()) = LOCAL.try_with(|l| {
        l.out
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_str(text)
    }) {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
