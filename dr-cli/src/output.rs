//! What the CLI prints: tables, JSON, progress bars.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::exit::{CliError, CliResult};

/// Prints `value` as pretty JSON on stdout.
pub fn json<T: Serialize>(value: &T) -> CliResult<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::usage(format!("JSON output: {e}")))?;
    println!("{text}");
    Ok(())
}

/// Prints rows as an aligned table with a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    print!("{}", table_text(header, rows));
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
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A progress bar on stderr when it is a terminal (and not `--json`), hidden otherwise.
pub struct Bar {
    bar: ProgressBar,
}

impl Bar {
    /// A bar for the current command.
    pub fn new(visible: bool) -> Self {
        let target = if visible && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        let style = ProgressStyle::with_template(
            "{msg:20} {bytes:>10} {bytes_per_sec:>12} {wide_bar} {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        Bar { bar }
    }

    /// Removes the bar from the screen.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl dr_core::Progress for Bar {
    fn event(&self, scope: &dr_core::Scope, event: &dr_core::Event) {
        match event {
            dr_core::Event::Started { phase, total_bytes } => {
                let what = scope.artifact.as_deref().unwrap_or_default();
                self.bar.set_message(format!("{phase} {what}"));
                self.bar.set_position(0);
                self.bar.set_length(total_bytes.unwrap_or(0));
            }
            dr_core::Event::Advanced { bytes } => self.bar.inc(*bytes),
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
