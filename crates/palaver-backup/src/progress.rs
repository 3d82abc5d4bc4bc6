//! Progress of a backup, export or import on stderr: a bar redrawn in place on a terminal, plain lines
//! otherwise (a log file, CI), at most one every [`LINE_INTERVAL`] and one at the end.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Told how a long operation advances.
pub trait Progress: Send {
    /// The operation knows its size now: `total` `unit`s (pages, conversations, bytes).
    fn start(&mut self, total: u64, unit: &'static str);
    /// `done` of the total are done; `note` says what is being worked on.
    fn advance(&mut self, done: u64, note: &str);
    /// The operation is over, whether it succeeded or not.
    fn finish(&mut self);
}

/// Reports nothing.
#[derive(Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&mut self, _: u64, _: &'static str) {}
    fn advance(&mut self, _: u64, _: &str) {}
    fn finish(&mut self) {}
}

/// How often [`StderrProgress`] writes a line when stderr is not a terminal.
pub const LINE_INTERVAL: Duration = Duration::from_secs(2);

/// Progress on stderr, each line prefixed with the operation's name.
#[derive(Debug)]
pub struct StderrProgress {
    /// `backup`, `export`, `import`: the prefix of plain lines.
    operation: &'static str,
    /// `Some` on a terminal.
    bar: Option<ProgressBar>,
    total: u64,
    unit: &'static str,
    done: u64,
    note: String,
    last_line: Option<Instant>,
}

impl StderrProgress {
    /// A bar when stderr is a terminal, periodic lines otherwise.
    pub fn new(operation: &'static str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}") {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Self { operation, bar, total: 0, unit: "", done: 0, note: String::new(), last_line: None }
    }

    fn line(&mut self) {
        let _ =
            writeln!(std::io::stderr(), "{}: {}/{} {} {}", self.operation, self.done, self.total, self.unit, self.note);
        self.last_line = Some(Instant::now());
    }
}

impl Progress for StderrProgress {
    fn start(&mut self, total: u64, unit: &'static str) {
        (self.total, self.unit) = (total, unit);
        match &self.bar {
            Some(bar) => bar.set_length(total),
            None => self.line(),
        }
    }

    fn advance(&mut self, done: u64, note: &str) {
        self.done = done;
        match &self.bar {
            Some(bar) => {
                bar.set_position(done);
                bar.set_message(format!("{} {note}", self.unit));
            }
            None => {
                note.clone_into(&mut self.note);
                if self.last_line.is_none_or(|at| at.elapsed() >= LINE_INTERVAL) {
                    self.line();
                }
            }
        }
    }

    fn finish(&mut self) {
        match &self.bar {
            Some(bar) => bar.finish_and_clear(),
            None => {
                self.note.clear();
                self.line();
            }
        }
    }
}
