//! Command-line interface (clap derive). Each subcommand's work lives in `commands::<name>`;
//! this module only parses arguments and reports errors.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// lpc-bench: train and score Latent Preference Coding (LPC) against DPO, IPO, SimPO and peers
/// on synthetic preference worlds whose latent preference types are known, and on real
/// preference data.
///
/// A scenario TOML file describes the world (or real data files), the model, the training loop
/// and the methods to compare. Start with `lpc-bench validate scenarios/smoke.toml`, then
/// `lpc-bench run scenarios/smoke.toml --out results/smoke`.
#[derive(Debug, Parser)]
#[command(name = "lpc-bench", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check scenario files and print each one resolved (every default filled in), or a clear
    /// error naming the file, field or line and the rule broken.
    Validate(ValidateArgs),
    /// Generate a synthetic world's pairs as JSON Lines (train.jsonl, eval.jsonl) plus
    /// world.json (its parameters) and summary.csv (measured distance statistics and the exact
    /// accuracy ceilings).
    Generate(GenerateArgs),
    /// Score any assignment file: NMI, ARI, purity and one-to-one (Hungarian) matched accuracy
    /// of one CSV column (predicted codes or clusters) against another (true types), printed as
    /// JSON. Labels may be any strings.
    Score(ScoreArgs),
    /// Train every method of a scenario on the same pairs and score it on the same held-out
    /// pairs: writes scenario.resolved.toml, world.json, metrics.csv (one row per method, every
    /// score and the world's ceilings), curves.csv, codes.csv, steering.csv, summary.md and
    /// checkpoints/ into --out.
    Run(RunArgs),
    /// Rescore the checkpoints of a finished run folder (after `run`), writing the scores into
    /// DIR/rescored/ (metrics.csv, summary.md).
    Eval(EvalArgs),
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Scenario files to check.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print only errors, not the resolved scenarios.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Scenario file with a [world] table.
    pub scenario: PathBuf,
    /// Output folder; created if missing. Refuses to overwrite existing outputs without --force.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace output files that already exist.
    #[arg(long)]
    pub force: bool,
    /// Override the scenario's master seed (data.seed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Do not print the summary table.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// CSV file with a header row.
    pub file: PathBuf,
    /// Column holding the predicted labels (codes, clusters).
    #[arg(long)]
    pub pred: String,
    /// Column holding the true labels (types).
    #[arg(long)]
    pub truth: String,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Scenario file.
    pub scenario: PathBuf,
    /// Output folder; created if missing. Refuses to overwrite existing results without --force.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace result files that already exist.
    #[arg(long)]
    pub force: bool,
    /// No progress bars or messages (errors are still printed).
    #[arg(long, short)]
    pub quiet: bool,
    /// Override the scenario's device: cpu, cuda or cuda:N (cuda needs a build with
    /// `--features cuda`).
    #[arg(long)]
    pub device: Option<String>,
    /// CPU threads for the tensor backend (0 = all cores). Default: the scenario's train.threads.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Override the scenario's master seed (data.seed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Real data: skip malformed lines (they are counted and reported) instead of failing.
    #[arg(long)]
    pub skip_invalid: bool,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A folder written by `lpc-bench run`.
    pub dir: PathBuf,
    /// Replace an existing DIR/rescored/.
    #[arg(long)]
    pub force: bool,
    /// No messages.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Parse arguments, dispatch, and turn errors into a message and exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(a) => crate::commands::validate::run(&a),
        Command::Generate(a) => crate::commands::generate::run(&a),
        Command::Score(a) => crate::commands::score::run(&a),
        Command::Run(a) => crate::commands::run::run(&a),
        Command::Eval(a) => crate::commands::eval::run(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
