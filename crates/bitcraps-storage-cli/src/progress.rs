//! Progress bars on stderr (hidden when stderr is not a terminal), and a log writer that
//! suspends them so log lines never tear a bar.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use tracing_subscriber::fmt::MakeWriter;

/// The terminal side of a run: every progress bar is drawn through it.
#[derive(Clone, Debug)]
pub struct Ui {
    bars: MultiProgress,
}

impl Default for Ui {
    fn default() -> Self {
        Self::new()
    }
}

impl Ui {
    /// Bars are drawn on stderr when it is a terminal (and not `--quiet`), and hidden
    /// otherwise.
    pub fn new() -> Self {
        let target = if std::io::stderr().is_terminal() && !crate::notes::quiet() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Ui {
            bars: MultiProgress::with_draw_target(target),
        }
    }

    /// A bar counting to `len`, or a spinner with a counter when the length is unknown.
    pub fn bar(&self, len: Option<u64>, unit: &str, message: &str) -> Bar {
        let bar = match len {
            Some(len) => {
                let template = format!(
                    "{{msg}} [{{elapsed_precise}}] {{wide_bar}} {{human_pos}}/{{human_len}} {unit} ({{rate}}, eta {{eta}})"
                );
                ProgressBar::new(len).with_style(style(&template))
            }
            None => {
                let template = format!(
                    "{{spinner}} {{msg}} [{{elapsed_precise}}] {{human_pos}} {unit} ({{rate}})"
                );
                ProgressBar::new_spinner().with_style(style(&template))
            }
        };
        let bar = self.bars.add(bar.with_message(message.to_owned()));
        bar.enable_steady_tick(Duration::from_millis(120));
        Bar::new(bar)
    }

    /// A bar counting bytes to `len` (unknown: a spinner).
    pub fn byte_bar(&self, len: Option<u64>, message: &str) -> ProgressBar {
        let template = match len {
            Some(_) => {
                "{msg} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})"
            }
            None => "{spinner} {msg} [{elapsed_precise}] {bytes} ({bytes_per_sec})",
        };
        let bar = len.map_or_else(ProgressBar::new_spinner, ProgressBar::new);
        let bar = self.bars.add(
            bar.with_style(style(template))
                .with_message(message.to_owned()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }

    /// Runs `f` with every bar cleared from the screen (for printing to stderr).
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bars.suspend(f)
    }

    /// A writer for `tracing_subscriber` that prints through [`Ui::suspend`].
    pub fn log_writer(&self) -> LogWriter {
        LogWriter { ui: self.clone() }
    }
}

/// A progress bar whose position never passes its total: a total known in advance is an
/// estimate (a demo plays whole rounds, a source store may grow while it is copied), so a
/// count past it raises the total instead of drawing 120 %. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Bar {
    bar: ProgressBar,
    /// Makes "raise the total, then count" one step when clones count from several tasks.
    counting: std::sync::Arc<std::sync::Mutex<()>>,
}

impl Bar {
    fn new(bar: ProgressBar) -> Self {
        Bar {
            bar,
            counting: std::sync::Arc::default(),
        }
    }

    /// Counts `n` more.
    pub fn inc(&self, n: u64) {
        let _turn = self
            .counting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let position = self.bar.position().saturating_add(n);
        if let Some(len) = self.bar.length()
            && position > len
        {
            self.bar.set_length(position);
        }
        self.bar.inc(n);
    }

    /// Removes the bar from the screen.
    pub fn finish_and_clear(&self) {
        self.bar.finish_and_clear();
    }

    #[cfg(test)]
    fn state(&self) -> (u64, Option<u64>) {
        (self.bar.position(), self.bar.length())
    }
}

fn style(template: &str) -> ProgressStyle {
    // The templates above are constants of this file; fall back to the default style rather
    // than fail if one is ever wrong.
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "rate",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                // Whole items per second (indicatif's own {per_sec} prints four decimals).
                let _ = write!(w, "{:.0}/s", state.per_sec());
            },
        )
}

/// Makes one [`LogLine`] per log event.
#[derive(Clone, Debug)]
pub struct LogWriter {
    ui: Ui,
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> Self::Writer {
        LogLine {
            ui: self.ui.clone(),
            buf: Vec::new(),
        }
    }
}

/// Buffers one log event and prints it to stderr, bars suspended, when dropped.
#[derive(Debug)]
pub struct LogLine {
    ui: Ui,
    buf: Vec<u8>,
}

impl Write for LogLine {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        self.ui.suspend(|| std::io::stderr().lock().write_all(&buf))
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        // Nowhere to report a failed log write.
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #17: a bar's position never passes its total, even when more arrives than was
    /// announced, from several clones at once.
    #[test]
    fn a_bar_never_passes_its_total() {
        let ui = Ui {
            bars: MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
        };
        let bar = ui.bar(Some(10), "records", "copying");
        bar.inc(7);
        assert_eq!(bar.state(), (7, Some(10)));
        bar.inc(7);
        assert_eq!(bar.state(), (14, Some(14)));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let bar = bar.clone();
                std::thread::spawn(move || {
                    for _ in 0..250 {
                        bar.inc(1);
                        let (position, len) = bar.state();
                        assert!(
                            len.is_some_and(|len| position <= len),
                            "{position} > {len:?}"
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().is_ok());
        }
        assert_eq!(bar.state(), (1014, Some(1014)));
        // A spinner has no total to pass.
        let spinner = ui.bar(None, "", "working");
        spinner.inc(3);
        assert_eq!(spinner.state(), (3, None));
    }
}
