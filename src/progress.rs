//! Progress display for long work: one indicatif bar per method with the live loss, accuracy
//! and KL. When stderr is not a terminal (a log file, CI) the bar is hidden and a plain line
//! takes its place at most every [`TICK_LINE_SECONDS`] s; `--quiet` shows neither.

use crate::train::{CurvePoint, TrainObserver, TrainStatus};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Seconds between the lines a [`Ticker`] prints when there is no live bar (logs, CI).
pub const TICK_LINE_SECONDS: u64 = 10;

/// The line a [`Ticker`] shows: `"{what}, {s} s elapsed"`.
pub fn tick_line(what: &str, elapsed: Duration) -> String {
    format!("{what}, {} s elapsed", elapsed.as_secs())
}

/// A background thread that says what a long, silent piece of work is doing while it runs:
/// the first GPU step of a phase compiles its kernels for seconds to minutes and prints
/// nothing. It updates a visible progress bar's message every second, or, without one, prints
/// a line to stderr every [`TICK_LINE_SECONDS`] s. Nothing when `quiet`. Stops when dropped.
pub struct Ticker {
    stop: Option<mpsc::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    /// Start ticking for `what` (e.g. `"dpo: step 1: compiling kernels (first step)"` on a GPU).
    pub fn start(what: String, bar: Option<ProgressBar>, quiet: bool) -> Self {
        if quiet {
            return Ticker {
                stop: None,
                handle: None,
            };
        }
        let bar = bar.filter(|b| !b.is_hidden());
        let (tx, rx) = mpsc::channel::<()>();
        let clock = Instant::now();
        let handle = std::thread::spawn(move || {
            let period = if bar.is_some() {
                Duration::from_secs(1)
            } else {
                Duration::from_secs(TICK_LINE_SECONDS)
            };
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(period) {
                let line = tick_line(&what, clock.elapsed());
                match &bar {
                    Some(b) => b.set_message(line),
                    None => eprintln!("{line}"),
                }
            }
        });
        Ticker {
            stop: Some(tx),
            handle: Some(handle),
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A progress bar over one method's optimiser steps.
pub struct MethodProgress {
    bar: ProgressBar,
    label: String,
    last_eval: String,
    quiet: bool,
    first_step: Option<Ticker>,
    /// What the first step is doing, for its ticker.
    first_step_work: &'static str,
    /// Plain progress lines instead of the bar (stderr is not a terminal, not quiet): when
    /// the last one was printed.
    lines: Option<Instant>,
}

impl MethodProgress {
    /// A bar of `total` steps, hidden when `quiet` or stderr is not a TTY. `compiles`: the run
    /// is on a GPU, where the first step compiles its kernels (said so while it ticks); on the
    /// CPU it is only the first step.
    pub fn new(label: &str, total: usize, quiet: bool, compiles: bool) -> Self {
        let bar = ProgressBar::new(total as u64);
        let terminal = std::io::stderr().is_terminal();
        if quiet || !terminal {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>14} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        MethodProgress {
            bar,
            label: label.to_string(),
            last_eval: String::new(),
            quiet,
            first_step: None,
            first_step_work: if compiles {
                "compiling kernels (first step)"
            } else {
                "first step"
            },
            lines: (!quiet && !terminal).then(Instant::now),
        }
    }

    /// The plain line standing in for the bar: `"{label}: step {pos}/{len}, {msg}, {s} s
    /// elapsed"`.
    fn line(&self) -> String {
        tick_line(
            &format!(
                "{}: step {}/{}, {}",
                self.label,
                self.bar.position(),
                self.bar.length().unwrap_or(0),
                self.bar.message().trim_end()
            ),
            self.bar.elapsed(),
        )
    }

    /// Close the bar with the method's outcome.
    pub fn finish(&self, status: &TrainStatus) {
        match status {
            TrainStatus::Completed => self
                .bar
                .finish_with_message(format!("done {}", self.last_eval)),
            TrainStatus::Diverged { step } => self
                .bar
                .abandon_with_message(format!("{} diverged at step {step}", self.label)),
        }
        if self.lines.is_some() {
            eprintln!("{}", self.line());
        }
    }
}

impl TrainObserver for MethodProgress {
    fn on_first_step(&mut self) {
        let what = format!("{}: step 1: {}", self.label, self.first_step_work);
        self.bar.set_message(what.clone());
        self.first_step = Some(Ticker::start(what, Some(self.bar.clone()), self.quiet));
    }

    fn on_step(&mut self, _step: usize, loss: f64) {
        self.first_step = None;
        self.bar.inc(1);
        self.bar
            .set_message(format!("loss {loss:.4} {}", self.last_eval));
        if let Some(last) = self.lines
            && last.elapsed() >= Duration::from_secs(TICK_LINE_SECONDS)
        {
            eprintln!("{}", self.line());
            self.lines = Some(Instant::now());
        }
    }

    fn on_eval(&mut self, p: &CurvePoint) {
        self.last_eval = match (p.val_kl, p.val_post_nmi) {
            (Some(kl), Some(nmi)) => format!(
                "| val acc {:.3} kl {kl:.3} post-NMI {nmi:.2}",
                p.val_accuracy
            ),
            (Some(kl), None) => format!("| val acc {:.3} kl {kl:.3}", p.val_accuracy),
            _ => format!("| val acc {:.3}", p.val_accuracy),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_gpu_run_says_its_first_step_compiles_kernels() {
        // Oracle: the CPU backend compiles nothing, so its first step is only the first step.
        let cpu = MethodProgress::new("dpo", 10, true, false);
        let gpu = MethodProgress::new("dpo", 10, true, true);
        assert_eq!(cpu.first_step_work, "first step");
        assert_eq!(gpu.first_step_work, "compiling kernels (first step)");
    }

    #[test]
    fn the_plain_line_says_the_step_and_the_bar_message() {
        // Oracle: the bar's own state, written out as the documented line.
        let mut p = MethodProgress::new("dpo", 50, true, false);
        p.on_step(1, 0.7);
        p.on_step(2, 0.69);
        let line = p.line();
        assert!(line.starts_with("dpo: step 2/50, loss 0.6900, "), "{line}");
        assert!(line.ends_with(" s elapsed"), "{line}");
        // Quiet: no lines.
        assert!(p.lines.is_none());
    }

    #[test]
    fn the_ticker_line_names_the_work_and_whole_seconds() {
        // Oracle: the wording, seconds truncated.
        assert_eq!(
            tick_line(
                "dpo: step 1: compiling kernels (first step)",
                Duration::from_millis(42_900)
            ),
            "dpo: step 1: compiling kernels (first step), 42 s elapsed"
        );
        // A quiet ticker starts no thread; a hidden bar falls back to lines; both stop on drop.
        drop(Ticker::start("x".into(), None, true));
        let hidden = ProgressBar::hidden();
        let t = Ticker::start("y".into(), Some(hidden), false);
        assert!(t.handle.is_some());
        drop(t);
    }
}
