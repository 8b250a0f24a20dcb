//! The dashboard in a real browser: tests/browser/dashboard.mjs (playwright-core driving
//! Debian's headless Chromium; scripts/test.sh installs both) against a running `serve`.

/// Runs the dashboard script against `addr` signed in with `token` (an operator's, with turns
/// to show: a finished one, an approval waiting; with `expect_miss`, a turn the task-success
/// tile must count as a miss); panics with the
/// browser's log if it fails. Returns that log.
pub fn dashboard(addr: &str, token: &str, screenshot: &str, expect_miss: bool) -> String {
    let shot = std::env::var("BALLAST_SCREENSHOT_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir())
        .join(screenshot);
    let _ = std::fs::remove_file(&shot);
    let modules = std::env::var("BALLAST_NODE_MODULES").unwrap_or_else(|_| {
        format!(
            "{}/.cache/ballast/node/node_modules",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let out = std::process::Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/browser/dashboard.mjs"
        ))
        .env(
            "BALLAST_URL",
            format!("http://{}", addr.trim_start_matches("http://")),
        )
        .env("BALLAST_TOKEN", token)
        .env("BALLAST_EXPECT_MISS", if expect_miss { "1" } else { "0" })
        .env("BALLAST_SCREENSHOT", &shot)
        .env("BALLAST_NODE_MODULES", &modules)
        .output()
        .expect("node runs");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "browser test failed:\n{log}");
    assert!(log.contains("approved"), "{log}");
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10_000,
        "screenshot {} is {size} bytes",
        shot.display()
    );
    log
}
