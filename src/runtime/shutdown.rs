//! Graceful shutdown: SIGINT or SIGTERM asks the worker to drain; a second signal exits at once.

use tokio::sync::watch;

/// A shutdown switch: flip the sender to true to start draining.
pub fn channel() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    watch::channel(false)
}

/// Flips `tx` on the first SIGINT/SIGTERM; exits the process on the second.
pub fn on_signals(tx: watch::Sender<bool>) {
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            if wait_for_signal().await.is_err() {
                return;
            }
            seen += 1;
            if seen > 1 {
                tracing::warn!("second signal: exiting without draining");
                std::process::exit(130);
            }
            tracing::info!("signal received: draining (send again to exit at once)");
            tx.send_replace(true);
        }
    });
}

#[cfg(unix)]
async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signal() -> std::io::Result<()> {
    tokio::signal::ctrl_c().await
}
