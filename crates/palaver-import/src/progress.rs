//! Progress of an import: rows copied per table and overall.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// One table to copy and its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableProgress {
    /// The table.
    pub name: String,
    /// Its rows in the source snapshot.
    pub rows: u64,
}

/// Told how an import advances.
pub trait Progress {
    /// The copy begins: the tables in copy order.
    fn start(&mut self, tables: &[TableProgress]);
    /// `copied` rows of the table at `table` (an index into the list given to [`Progress::start`]) are in.
    fn advance(&mut self, table: usize, copied: u64);
    /// The copy is over; `step` (setting sequences, checking, committing) runs.
    fn step(&mut self, step: &str);
    /// The import is over, committed or not.
    fn finish(&mut self);
}

/// Reports nothing.
#[derive(Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&mut self, _: &[TableProgress]) {}
    fn advance(&mut self, _: usize, _: u64) {}
    fn step(&mut self, _: &str) {}
    fn finish(&mut self) {}
}

/// How often [`StderrProgress`] writes a line when stderr is not a terminal.
const LINE_INTERVAL: Duration = Duration::from_secs(2);

/// Progress on stderr: a bar redrawn in place on a terminal; otherwise (a log file, CI) one line when each
/// table is done and at most one every [`LINE_INTERVAL`] in between.
#[derive(Debug)]
pub struct StderrProgress {
    /// `Some` on a terminal.
    bar: Option<ProgressBar>,
    tables: Vec<TableProgress>,
    /// Rows of the tables before each table.
    before: Vec<u64>,
    total: u64,
    last_line: Option<Instant>,
}

impl StderrProgress {
    /// A bar when stderr is a terminal, periodic lines otherwise.
    pub fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} rows {msg}") {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Self { bar, tables: Vec::new(), before: Vec::new(), total: 0, last_line: None }
    }
}

impl Default for StderrProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for StderrProgress {
    fn start(&mut self, tables: &[TableProgress]) {
        self.tables = tables.to_vec();
        let mut sum = 0;
        self.before = tables
            .iter()
            .map(|t| {
                let before = sum;
                sum += t.rows;
                before
            })
            .collect();
        self.total = sum;
        match &self.bar {
            Some(bar) => bar.set_length(sum),
            None => line(&format!("copying {sum} rows in {} tables", tables.len())),
        }
    }

    fn advance(&mut self, table: usize, copied: u64) {
        let Some(t) = self.tables.get(table) else { return };
        let overall = self.before[table] + copied;
        let text = format!("table {}/{} {} {copied}/{}", table + 1, self.tables.len(), t.name, t.rows);
        match &self.bar {
            Some(bar) => {
                bar.set_position(overall);
                bar.set_message(text);
            }
            None => {
                let due = self.last_line.is_none_or(|at| at.elapsed() >= LINE_INTERVAL);
                if due || copied == t.rows {
                    line(&format!("{text} rows, overall {overall}/{} rows", self.total));
                    self.last_line = Some(Instant::now());
                }
            }
        }
    }

    fn step(&mut self, step: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(step.to_string()),
            None => line(step),
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn line(text: &str) {
    let _ = writeln!(std::io::stderr(), "import: {text}");
}
