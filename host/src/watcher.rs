//! Watches the components folder and rescans it after changes settle.

use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_mini::notify::RecursiveMode;
use notify_debouncer_mini::{DebounceEventResult, new_debouncer};

use crate::registry::Registry;

/// Quiet time after the last event before a rescan. Short enough for the
/// one-second reload promise, long enough to coalesce a file copy's writes.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// Starts watching; the returned value keeps the watcher alive.
pub fn watch(
    registry: Arc<Registry>,
) -> notify::Result<notify_debouncer_mini::Debouncer<notify::RecommendedWatcher>> {
    for dir in [registry.guards_dir(), registry.agents_dir()] {
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot create components folder");
        }
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut debouncer = new_debouncer(DEBOUNCE, move |res: DebounceEventResult| match res {
        Ok(events) => {
            let relevant = events.iter().any(|e| {
                matches!(
                    e.path.extension().and_then(|x| x.to_str()),
                    Some("wasm" | "toml" | "sig")
                )
            });
            if relevant {
                let _ = tx.send(());
            }
        }
        Err(e) => tracing::warn!(error = %e, "file watch error"),
    })?;
    for dir in [registry.guards_dir(), registry.agents_dir()] {
        debouncer
            .watcher()
            .watch(&dir, RecursiveMode::NonRecursive)?;
    }
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Coalesce a burst into one scan.
            while rx.try_recv().is_ok() {}
            registry.sync().await;
        }
    });
    Ok(debouncer)
}
