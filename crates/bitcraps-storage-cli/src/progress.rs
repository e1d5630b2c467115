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
    pub fn bar(&self, len: Option<u64>, unit: &str, message: &str) -> ProgressBar {
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
        bar
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
