//! What the CLI prints: tables, JSON, progress bars.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::exit::{CliError, CliResult};

/// Prints `value` as pretty JSON on stdout.
pub fn json<T: Serialize>(value: &T) -> CliResult<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::usage(format!("JSON output: {e}")))?;
    println!("{text}");
    Ok(())
}

/// Rows as an aligned table with a header, one line each.
pub fn table_text(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut text = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        text.push_str(&line(row.clone()));
    }
    text
}

/// Bytes for people: `12.3 MiB`.
pub fn size(bytes: u64) -> String {
    dr_core::human_size(bytes)
}

/// Progress bars on stderr when it is a terminal (and not `--json`), hidden otherwise: one
/// bar per source and artifact in flight, so concurrent backups of a group stay apart.
pub struct Bar {
    bars: MultiProgress,
    style: ProgressStyle,
    active: Mutex<HashMap<BarKey, ProgressBar>>,
}

/// The source and artifact a bar follows.
type BarKey = (Option<String>, Option<String>);

impl Bar {
    /// The bars of the current command.
    pub fn new(visible: bool) -> Self {
        let target = if visible && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let style = ProgressStyle::with_template(
            "{msg:32} {bytes:>10} {bytes_per_sec:>12} {wide_bar} {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        Bar {
            bars: MultiProgress::with_draw_target(target),
            style,
            active: Mutex::new(HashMap::new()),
        }
    }

    /// Removes every bar from the screen.
    pub fn finish(&self) {
        for (_, bar) in self.lock().drain() {
            bar.finish_and_clear();
        }
        let _ = self.bars.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<BarKey, ProgressBar>> {
        self.active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn start(&self, key: BarKey, phase: &str, total_bytes: Option<u64>) {
        let label = [key.0.as_deref(), Some(phase), key.1.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        let mut active = self.lock();
        let bar = active.entry(key).or_insert_with(|| {
            let bar = self.bars.add(ProgressBar::no_length());
            bar.set_style(self.style.clone());
            bar
        });
        bar.set_message(label);
        bar.set_position(0);
        bar.set_length(total_bytes.unwrap_or(0));
    }
}

impl dr_core::Progress for Bar {
    fn event(&self, scope: &dr_core::Scope, event: &dr_core::Event) {
        let key = (scope.source.clone(), scope.artifact.clone());
        match event {
            dr_core::Event::Started { phase, total_bytes } => {
                self.start(key, phase, *total_bytes);
            }
            dr_core::Event::Advanced { bytes } => {
                if let Some(bar) = self.lock().get(&key) {
                    bar.inc(*bytes);
                }
            }
            dr_core::Event::Finished => {
                if let Some(bar) = self.lock().remove(&key) {
                    bar.finish_and_clear();
                }
            }
            dr_core::Event::Failed { message } => {
                if let Some(bar) = self.lock().remove(&key) {
                    bar.abandon_with_message(format!("failed: {message}"));
                }
            }
            _ => {}
        }
    }
}

/// Compares `actual` with the snapshot file `path` (relative to dr-cli); with
/// `DR_UPDATE_SNAPSHOTS=1` in the environment, writes it instead.
#[cfg(test)]
pub fn assert_snapshot(path: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    if std::env::var_os("DR_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).expect("writing the snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(actual, expected, "snapshot {} differs", path.display());
}
