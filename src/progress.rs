//! Progress display for long work: one indicatif bar per method with the live loss, accuracy
//! and KL. Hidden with `--quiet` and when stderr is not a terminal (logs and CI stay clean).

use crate::train::{CurvePoint, TrainObserver, TrainStatus};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// A progress bar over one method's optimiser steps.
pub struct MethodProgress {
    bar: ProgressBar,
    label: String,
    last_eval: String,
}

impl MethodProgress {
    /// A bar of `total` steps, hidden when `quiet` or stderr is not a TTY.
    pub fn new(label: &str, total: usize, quiet: bool) -> Self {
        let bar = ProgressBar::new(total as u64);
        if quiet || !std::io::stderr().is_terminal() {
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
        }
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
    }
}

impl TrainObserver for MethodProgress {
    fn on_step(&mut self, _step: usize, loss: f64) {
        self.bar.inc(1);
        self.bar
            .set_message(format!("loss {loss:.4} {}", self.last_eval));
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
