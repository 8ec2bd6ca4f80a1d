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
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check scenario files and print each one resolved (every default filled in, methods
    /// included) with its resource estimate (memory by part, work) as comments, or a clear error
    /// naming the file, field or line and the rule broken. For real data, also check that the
    /// files exist and are readable and that the fields the scenario names are present in their
    /// first records.
    Validate(ValidateArgs),
    /// Load a scenario's data without training: print the load table (lines, pairs, ties,
    /// identical, truncated prompts/responses, skipped by reason), the group sizes on each side
    /// of the split and the reference baselines; fails as `run` would when too many pairs are
    /// dropped (data.max_drop_fraction). Takes seconds.
    Inspect(InspectArgs),
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
    /// Run every cell of a scenario's `[sweep]` grid (grid point × method), each into its own
    /// folder `OUT/cells/<point>/<method>/` written atomically; finished cells are skipped, so an
    /// interrupted sweep resumes where it stopped. Then merges OUT/all-metrics.csv and
    /// OUT/all-metrics-summary.csv (mean ± std over seeds).
    Sweep(SweepArgs),
    /// Write report.md and plots/ (SVG and PNG) for a sweep folder (merging what every shard
    /// wrote first) or for a single `run` folder.
    Report(ReportArgs),
}

/// Arguments of `lpc-bench validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Scenario files to check.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print only errors, not the resolved scenarios.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Arguments of `lpc-bench generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Scenario file with a `[world]` table.
    pub scenario: PathBuf,
    /// Output folder; created if missing. Refuses to overwrite existing outputs without --force.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace output files that already exist.
    #[arg(long)]
    pub force: bool,
    /// Override the scenario's master seed (data.seed). It re-draws the world's parameters and
    /// every pair.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Do not print the summary table.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Arguments of `lpc-bench score`.
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

/// Arguments of `lpc-bench run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Scenario file (one scenario; a file with a `[sweep]` table runs with `lpc-bench sweep`).
    pub scenario: PathBuf,
    /// Output folder; created if missing. Refuses to overwrite existing results (checkpoints
    /// included) without --force. Required unless --dry-run.
    #[arg(long, required_unless_present = "dry_run")]
    pub out: Option<PathBuf>,
    /// Replace the results a run owns: every result file and checkpoint is rewritten, and
    /// checkpoints of methods the scenario no longer lists are removed (the run says which).
    #[arg(long)]
    pub force: bool,
    /// Print the plan and the resource estimate (memory by part, work), check it against this
    /// machine's memory, and stop: nothing is trained or written.
    #[arg(long)]
    pub dry_run: bool,
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
    /// Override the scenario's kernel fusion on a CUDA device (train.fusion): `on` compiles
    /// chains of element-wise operations into fused kernels, `off` launches each operation as
    /// its own kernel. The CPU backend does not fuse.
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    pub fusion: Option<bool>,
    /// Override the scenario's master seed (data.seed). It re-draws everything random: the
    /// synthetic world and its pairs (real data: the train/held-out split of the prompts and the
    /// subsets kept by data.train_pairs / data.eval_pairs), model initialisation, warm-up and
    /// batch order, code sampling, and the shuffled-code NMI null.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Real data: skip malformed records (they are counted by reason and reported) instead of
    /// failing. Skipped records count as dropped pairs (data.max_drop_fraction).
    #[arg(long)]
    pub skip_invalid: bool,
}

/// Arguments of `lpc-bench inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Scenario file.
    pub scenario: PathBuf,
    /// Override the scenario's master seed (data.seed): re-draws the split (real data) or the
    /// world and its pairs (synthetic).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Real data: skip malformed records (counted by reason) instead of failing.
    #[arg(long)]
    pub skip_invalid: bool,
}

/// Arguments of `lpc-bench eval`.
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

/// Arguments of `lpc-bench sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Scenario file with a `[sweep]` table (a file without one runs one cell per method).
    pub scenario: PathBuf,
    /// Output folder (shared by every shard); created if missing. Required unless --dry-run.
    #[arg(long, required_unless_present = "dry_run")]
    pub out: Option<PathBuf>,
    /// List the cells of this shard with their relative cost and estimated time; write nothing.
    /// With --out, cells already finished there are marked and left out of the estimate.
    #[arg(long)]
    pub dry_run: bool,
    /// Cells run at the same time on this machine.
    #[arg(long, default_value = "1")]
    pub jobs: std::num::NonZeroUsize,
    /// Run only the I-th of N disjoint slices of the grid (0-based, as SLURM_ARRAY_TASK_ID for
    /// --array=0-(N-1)); cell k of the expansion order belongs to shard k mod N.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<crate::sweep::Shard>,
    /// CPU threads per cell; the tensor backend's pool gets threads-per-cell × jobs threads
    /// shared by the running cells (0 = all cores). Default: the scenario's train.threads.
    #[arg(long, value_name = "T")]
    pub threads_per_cell: Option<usize>,
    /// Override every cell's device: cpu, cuda or cuda:N.
    #[arg(long)]
    pub device: Option<String>,
    /// Print only errors and the final line, not one line per cell.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Arguments of `lpc-bench report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A sweep output folder (holding cells/) or a folder written by `lpc-bench run`.
    pub dir: PathBuf,
    /// Print nothing but errors.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Parse arguments, dispatch, and turn errors into a message and exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(a) => crate::commands::validate::run(&a),
        Command::Inspect(a) => crate::commands::inspect::run(&a),
        Command::Generate(a) => crate::commands::generate::run(&a),
        Command::Score(a) => crate::commands::score::run(&a),
        Command::Run(a) => crate::commands::run::run(&a),
        Command::Eval(a) => crate::commands::eval::run(&a),
        Command::Sweep(a) => crate::commands::sweep::run(&a),
        Command::Report(a) => crate::commands::report::run(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `on` / `off` (also `true` / `false`) as a bool, for switches such as `--fusion`.
fn parse_on_off(s: &str) -> std::result::Result<bool, String> {
    match s {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(format!("expected on or off, got '{s}'")),
    }
}
