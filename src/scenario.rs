//! Scenario files: the TOML format, its defaults, and validation.
//!
//! A scenario is a plain serde struct tree with `deny_unknown_fields` and a documented default for
//! every optional field. Loading is two steps, after the habit of ripgrep and linfa: parse the raw
//! file (the toml crate reports line and column), then [`Scenario::check`] checks every rule,
//! names the field that broke it (`world.types must be >= 1`) and returns a [`CheckedScenario`],
//! the only form the library's entry points (run, sweep, eval) take; command-line overrides go
//! through [`CheckedScenario::amend`], which checks again. The resolved scenario (every default
//! filled in) is written beside every result with [`Scenario::to_toml`].
//!
//! This module never touches tensors.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    Io {
        /// The scenario file.
        path: PathBuf,
        /// What the OS reported.
        source: std::io::Error,
    },
    /// The toml crate's message carries the line, column and the offending key.
    #[error("{path}: {message}")]
    Parse {
        /// The scenario file (empty before it is attached).
        path: PathBuf,
        /// The toml crate's message.
        message: String,
    },
    /// A rule on a field's value was broken.
    #[error("{path}: {field} {rule}")]
    Invalid {
        /// The scenario file (empty before it is attached).
        path: PathBuf,
        /// Dotted path of the field, e.g. `world.types`.
        field: String,
        /// The rule, phrased to follow the field name.
        rule: String,
    },
}

/// A broken validation rule, before the file path is attached.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleError {
    /// Dotted path of the field, e.g. `world.types` or `methods[2].beta`.
    pub field: String,
    /// The rule, phrased to follow the field name: `must be >= 1`.
    pub rule: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.field, self.rule)
    }
}

fn rule(field: impl Into<String>, rule: impl Into<String>) -> RuleError {
    RuleError {
        field: field.into(),
        rule: rule.into(),
    }
}

/// A whole scenario file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name used for result folders and tables. Default: the file stem.
    #[serde(default)]
    pub name: String,
    /// Free text shown in reports. Default: empty.
    #[serde(default)]
    pub description: String,
    /// The synthetic world. Default: the default world. Must be absent when `data.files` names
    /// real data.
    #[serde(default)]
    pub world: Option<WorldSpec>,
    /// Label noise. Default: no flips.
    #[serde(default)]
    pub noise: NoiseSpec,
    /// Pair counts, the master seed, and real data files (if any).
    #[serde(default)]
    pub data: DataSpec,
    /// The policy backbone. Default: the CPU-sized model (d_model 64, 2 layers, 4 heads).
    #[serde(default)]
    pub model: ModelSpec,
    /// The training loop. Default: 500 steps of Adam at 1e-3, batch 64.
    #[serde(default)]
    pub train: TrainSpec,
    /// What to train and compare. Default: `dpo` and `lpc-dpo`.
    #[serde(default = "default_methods")]
    pub methods: Vec<MethodSpec>,
    /// Grid over fields (see the `sweep` module). Default: none (one cell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<toml::Table>,
}

/// The synthetic world (METHOD.md §2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldSpec {
    /// Vocabulary size V (token ids 0..V). Default 16. Must be >= 2.
    #[serde(default = "d_vocab")]
    pub vocab: usize,
    /// Prompt length L_x. Default 6. Must be >= 1.
    #[serde(default = "d_len")]
    pub prompt_len: usize,
    /// Maximum response length L_y. Default 6. Must be >= 1.
    #[serde(default = "d_len")]
    pub response_len: usize,
    /// Minimum response length; lengths are drawn uniformly in
    /// `[response_len_min, response_len]`. Default: equal to `response_len` (fixed length).
    #[serde(default)]
    pub response_len_min: Option<usize>,
    /// Number of prompt sources S. Default 2. Must be >= 1.
    #[serde(default = "d_two")]
    pub sources: usize,
    /// Number of latent preference types T. Default 2. Must be >= 1.
    #[serde(default = "d_two")]
    pub types: usize,
    /// Mixture weights over types (unnormalised, length T). Default: uniform.
    /// With coupling < 1 this is the population mixture the population oracle knows.
    #[serde(default)]
    pub type_weights: Option<Vec<f64>>,
    /// Mixture weights over sources (unnormalised, length S). Default: chosen so that the type
    /// marginal equals `type_weights` when S is a multiple of T, else uniform.
    #[serde(default)]
    pub source_weights: Option<Vec<f64>>,
    /// Coupling c in [0, 1]: P(type = t | source s) = c 1[t = s mod T] + (1 - c) w_t, with w the
    /// normalised type weights (uniform weights give METHOD.md's (1 - c)/T). Default 1.
    #[serde(default = "d_one")]
    pub coupling: f64,
    /// Reward family. Default `linear`.
    #[serde(default)]
    pub reward: RewardFamily,
    /// Token feature dimension m of phi: V -> R^m. Default 8. Must be >= T (the simplex needs
    /// T - 1 dimensions beside the shared direction).
    #[serde(default = "d_feature_dim")]
    pub feature_dim: usize,
    /// Scale multiplying every reward (rewards are otherwise O(1)). Default 6.
    #[serde(default = "d_reward_scale")]
    pub reward_scale: f64,
    /// Distance knob d in [0, 1]: cos(theta_i, theta_j) = 1 - d T/(T-1). Default 1.
    #[serde(default = "d_one")]
    pub distance: f64,
    /// Length-term weight l_t per type (length T) or one value for all: r_t += l_t |y| / L_y.
    /// Default 0 (no length term).
    #[serde(default)]
    pub length_weight: Option<Vec<f64>>,
    /// Bradley–Terry temperature tau_bt > 0: P(y1 > y2) = sigmoid((r(y1) - r(y2)) / tau_bt).
    /// Default 1.
    #[serde(default = "d_one")]
    pub bt_temperature: f64,
    /// Reference policy that draws responses. Default `uniform`.
    #[serde(default)]
    pub reference: ReferenceKind,
    /// Dirichlet concentration of each source's prompt-token distribution. Default 0.5 (peaked,
    /// so sources are distinguishable from their prompts). Must be >= 0.001.
    #[serde(default = "d_prompt_concentration")]
    pub prompt_concentration: f64,
    /// Dirichlet concentration of the Markov reference's initial distribution and transition
    /// rows. Default 1. Must be >= 0.001.
    #[serde(default = "d_one")]
    pub markov_concentration: f64,
    /// Number of annotators (each has one fixed type drawn from the population type mixture;
    /// a pair goes to an annotator of its type, uniformly; a type that drew no annotator uses
    /// the stand-in id `annotators + type`). 0 = no annotator ids (all 0). Default 0.
    #[serde(default)]
    pub annotators: usize,
}

/// Reward family of the synthetic world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RewardFamily {
    /// r_t(x, y) = (1/L_y) sum_i <theta_t, phi(y_i)>.
    #[default]
    Linear,
    /// Non-additive over consecutive tokens, with psi: V x V -> R^m a fixed random bigram map
    /// and x_L the last prompt token:
    /// r_t(x, y) = (scale/L_y) [<theta_t, psi(x_L, y_1)> + sum_{i>=2} <theta_t, psi(y_{i-1}, y_i)>]
    /// (+ the length term). Any length >= 1 works: the first term is the prompt interaction.
    Bigram,
}

/// The reference policy pi_ref of the synthetic world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReferenceKind {
    /// Every response token uniform over the vocabulary.
    #[default]
    Uniform,
    /// A random first-order Markov chain per source (Dirichlet rows).
    Markov,
}

/// Label noise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseSpec {
    /// Probability epsilon that a Bradley–Terry label is flipped after it is drawn. Default 0.
    #[serde(default)]
    pub flip_rate: f64,
}

impl Default for NoiseSpec {
    fn default() -> Self {
        Self { flip_rate: 0.0 }
    }
}

/// Pair counts, the master seed, and (for real data) the files to read.
///
/// A scenario either draws pairs from a synthetic `[world]` or reads real preference files named
/// in `[[data.files]]`, never both. The real-data fields (`eval_fraction`, `max_prompt_tokens`,
/// `max_response_tokens`, `tokenizer`) apply only when `files` is non-empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// Training pairs. Default 8000. Must be >= 1. Real data: an upper bound; when the train
    /// side of the split holds more pairs, a seeded uniform subset of this size is kept.
    #[serde(default = "d_train_pairs")]
    pub train_pairs: usize,
    /// Held-out pairs every score is computed on. Default 2000. Must be >= 1. Real data: an upper
    /// bound, like `train_pairs`.
    #[serde(default = "d_eval_pairs")]
    pub eval_pairs: usize,
    /// Validation pairs: the only pairs checkpoint selection reads (`train.select`); the
    /// held-out pairs are scored once, at the end. Synthetic worlds draw them from their own
    /// stream (`pairs/val`), so adding them changes neither the training nor the held-out pairs.
    /// Real data: a seeded subset of the training side of the split is set aside. Default 1000
    /// (real data: at most a tenth of the training side). Must be >= 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_pairs: Option<usize>,
    /// Synthetic worlds with annotators: the share of annotator ids, in [0, 1), held out whole.
    /// Their pairs appear in neither the training nor the validation pairs, only in the held-out
    /// pairs, where their posterior context comes from their own other held-out pairs (never
    /// from another annotator). Scores on them get the suffix `_unseen`. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heldout_annotators: Option<f64>,
    /// Master seed: every random stream (world, pairs, model init, batches, sampling) derives
    /// from it by name. Default 0.
    #[serde(default)]
    pub seed: u64,
    /// Real data: the share of prompts held out, in (0, 1). A record goes to the held-out side when
    /// a seeded hash of its prompt text falls below this share (see `data::real`), so the split
    /// does not depend on file order and no prompt is on both sides. Default 0.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_fraction: Option<f64>,
    /// Real data: prompts longer than this many tokens keep their last tokens (left truncation,
    /// so the turn being answered survives). Default 96. Must be >= 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_prompt_tokens: Option<usize>,
    /// Real data: responses longer than this many tokens keep their first tokens. Default 64.
    /// Must be >= 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_tokens: Option<usize>,
    /// Real data: `byte` (UTF-8 bytes, vocabulary 256, no download) or the path of a Hugging Face
    /// `tokenizer.json` (needs the `hf-tokenizer` cargo feature; the path resolves like
    /// `files[].path`). Default `byte`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<String>,
    /// Real data: the largest share of a file's pairs that may be dropped (invalid records skipped
    /// with `--skip-invalid`, empty responses, responses identical after truncation) before a run
    /// refuses to start, in [0, 1]. Ties are counted but are not drops. Default 0.2
    /// (`data::real::DEFAULT_MAX_DROP_FRACTION`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_drop_fraction: Option<f64>,
    /// Real preference files. Empty (the default) means the scenario uses a synthetic world.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<DataFile>,
}

impl Default for DataSpec {
    fn default() -> Self {
        Self {
            train_pairs: d_train_pairs(),
            eval_pairs: d_eval_pairs(),
            val_pairs: None,
            heldout_annotators: None,
            seed: 0,
            eval_fraction: None,
            max_prompt_tokens: None,
            max_response_tokens: None,
            tokenizer: None,
            max_drop_fraction: None,
            files: Vec::new(),
        }
    }
}

impl DataSpec {
    /// Validation pairs for a synthetic world, resolved (default 1000).
    pub fn val_pairs(&self) -> usize {
        self.val_pairs.unwrap_or(DEFAULT_VAL_PAIRS)
    }
    /// Share of annotators held out of training and validation, resolved (default 0).
    pub fn heldout_annotators(&self) -> f64 {
        self.heldout_annotators.unwrap_or(0.0)
    }
    /// Held-out share of prompts for real data, resolved (default 0.2).
    pub fn eval_fraction(&self) -> f64 {
        self.eval_fraction.unwrap_or(0.2)
    }
    /// Prompt token limit for real data, resolved (default 96).
    pub fn max_prompt_tokens(&self) -> usize {
        self.max_prompt_tokens.unwrap_or(96)
    }
    /// Response token limit for real data, resolved (default 64).
    pub fn max_response_tokens(&self) -> usize {
        self.max_response_tokens.unwrap_or(64)
    }
    /// Largest share of a file's pairs that may be dropped, resolved (default 0.2).
    pub fn max_drop_fraction(&self) -> f64 {
        self.max_drop_fraction
            .unwrap_or(crate::data::real::DEFAULT_MAX_DROP_FRACTION)
    }
    /// Tokeniser spec for real data, resolved (default `byte`).
    pub fn tokenizer(&self) -> &str {
        self.tokenizer.as_deref().unwrap_or(BYTE_TOKENIZER)
    }
}

/// Default number of validation pairs (`data.val_pairs`).
pub const DEFAULT_VAL_PAIRS: usize = 1000;

/// The tokeniser spec naming the built-in byte-level tokeniser.
pub const BYTE_TOKENIZER: &str = "byte";

/// One real preference file (`[[data.files]]`).
///
/// Paths: an absolute path is used as is; a relative one is resolved against the directory the
/// run starts in (the project root), so the shipped scenarios name the data the repository
/// ships as `data/hh-rlhf/...`. Files are JSON Lines or one JSON array, gzip-compressed or plain (both
/// told by content). Every key is documented with worked examples in `docs/DATA.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataFile {
    /// The file. Required.
    pub path: PathBuf,
    /// Record layout. Required.
    pub format: DataFormat,
    /// Fixed group label for every pair of this file (`hh-rlhf`, `jsonl`, `pairwise`). Exactly
    /// one of `group` and `group_field` is required for those formats (none with `pairwise`
    /// votes and `annotator_as = "group"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Name of a record field holding the group label (`hh-rlhf`, `jsonl`, `pairwise`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_field: Option<String>,
    /// Read only the first `limit` valid records. Default: all. Must be >= 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// `jsonl` and `pairwise`: the prompt field. Default `prompt`. The field may be absent from a record
    /// whose chosen and rejected are message lists (the prompt is then the turns before the last
    /// assistant turn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_field: Option<String>,
    /// `jsonl` and `pairwise` (without a label or votes): the chosen field (a string, or a `[{role, content}]` message list ending in
    /// an assistant turn). Default `chosen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen_field: Option<String>,
    /// `jsonl` and `pairwise` (without a label or votes): the rejected field, like `chosen_field`. Default `rejected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_field: Option<String>,
    /// `ultrafeedback` and `pku-saferlhf` only: which preferences to build pairs from; each is a
    /// group. `ultrafeedback`: any of `helpfulness`, `honesty`, `instruction_following`,
    /// `truthfulness` (the per-aspect ratings), `overall_score`, `fine-grained_score`; default the
    /// four aspects. `pku-saferlhf`: any of `helpful` (better_response_id), `safe`
    /// (safer_response_id); default both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspects: Option<Vec<String>>,
    /// `pairwise` only: several prompt fields (strings; a null or empty one is left out), joined
    /// with `prompt_separator`. Excludes `prompt_field`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_fields: Option<Vec<String>>,
    /// `pairwise` only: what joins the `prompt_fields`. Default `"\n\n"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_separator: Option<String>,
    /// `pairwise` only: the field of the first response (with `label_field` or `vote_fields`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_field: Option<String>,
    /// `pairwise` only: the field of the second response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_field: Option<String>,
    /// `pairwise` only: a list field holding the responses; `response_indices` picks the first
    /// and the second (excludes `first_field` / `second_field`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responses_field: Option<String>,
    /// `pairwise` only: the 0-based indices of the first and second response in
    /// `responses_field`. Default `[0, 1]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_indices: Option<[usize; 2]>,
    /// `pairwise` only: a field whose value, looked up in `label_map`, says which response won.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_field: Option<String>,
    /// `pairwise` only: per-annotator vote fields; each vote (looked up in `label_map`) gives
    /// one pair, and the field name is the annotator id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vote_fields: Option<Vec<String>>,
    /// `pairwise` only: label or vote value (as text: `0`, `1`, `"tie"`, `true`) → `first`,
    /// `second` or `tie`. Required with `label_field` and `vote_fields`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_map: Option<std::collections::BTreeMap<String, Outcome>>,
    /// `pairwise` with `vote_fields` only: where the annotator id goes, `annotator` (the pair's
    /// annotator; the default) or `group` (the pair's group, instead of `group`/`group_field`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotator_as: Option<AnnotatorAs>,
}

/// What a `pairwise` label or vote says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The first response won.
    First,
    /// The second response won.
    Second,
    /// Neither: the pair is dropped and counted as a tie.
    Tie,
}

/// Where a `pairwise` vote's annotator id goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnnotatorAs {
    /// The pair's `annotator` (numbered in order of first appearance); the group comes from
    /// `group` or `group_field`.
    #[default]
    Annotator,
    /// The pair's group.
    Group,
}

/// How a `pairwise` file says which response won (see [`DataFile::winner`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WinnerBy {
    /// `chosen_field` / `rejected_field`.
    ChosenRejected,
    /// `label_field` with `label_map`.
    Label,
    /// `vote_fields` with `label_map`.
    Votes,
}

/// Record layout of a real preference file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataFormat {
    /// Anthropic HH-RLHF: `{"chosen": transcript, "rejected": transcript}`.
    #[serde(rename = "hh-rlhf")]
    HhRlhf,
    /// Generic JSON Lines with configurable prompt/chosen/rejected fields.
    #[serde(rename = "jsonl")]
    Jsonl,
    /// OpenBMB UltraFeedback: `instruction` plus rated `completions`; one pair per aspect.
    #[serde(rename = "ultrafeedback")]
    UltraFeedback,
    /// PKU-SafeRLHF: `prompt`, `response_0/1`, `better_response_id`, `safer_response_id`.
    #[serde(rename = "pku-saferlhf")]
    PkuSafeRlhf,
    /// General pairwise records: responses by field or list index, the winner by
    /// chosen/rejected fields, a mapped label or per-annotator votes (see `docs/DATA.md`).
    #[serde(rename = "pairwise")]
    Pairwise,
}

impl DataFormat {
    /// The name used in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            DataFormat::HhRlhf => "hh-rlhf",
            DataFormat::Jsonl => "jsonl",
            DataFormat::UltraFeedback => "ultrafeedback",
            DataFormat::PkuSafeRlhf => "pku-saferlhf",
            DataFormat::Pairwise => "pairwise",
        }
    }

    /// The aspects a file of this format may name (empty for formats without aspects).
    pub fn known_aspects(self) -> &'static [&'static str] {
        match self {
            DataFormat::UltraFeedback => &[
                "helpfulness",
                "honesty",
                "instruction_following",
                "truthfulness",
                "overall_score",
                "fine-grained_score",
            ],
            DataFormat::PkuSafeRlhf => &["helpful", "safe"],
            DataFormat::HhRlhf | DataFormat::Jsonl | DataFormat::Pairwise => &[],
        }
    }

    /// The aspects used when `aspects` is not set.
    pub fn default_aspects(self) -> &'static [&'static str] {
        match self {
            DataFormat::UltraFeedback => &self.known_aspects()[..4],
            other => other.known_aspects(),
        }
    }

    /// Whether each record carries its own groups (its aspects) rather than a file or field label.
    pub fn has_aspects(self) -> bool {
        !self.known_aspects().is_empty()
    }
}

impl DataFile {
    /// A file entry with only its path and format set.
    pub fn new(path: impl Into<PathBuf>, format: DataFormat) -> DataFile {
        DataFile {
            path: path.into(),
            format,
            group: None,
            group_field: None,
            limit: None,
            prompt_field: None,
            chosen_field: None,
            rejected_field: None,
            aspects: None,
            prompt_fields: None,
            prompt_separator: None,
            first_field: None,
            second_field: None,
            responses_field: None,
            response_indices: None,
            label_field: None,
            vote_fields: None,
            label_map: None,
            annotator_as: None,
        }
    }
    /// How a `pairwise` file names its winner: votes when `vote_fields` is set, a label when
    /// `label_field` is, chosen/rejected fields otherwise.
    pub fn winner(&self) -> WinnerBy {
        if self.vote_fields.is_some() {
            WinnerBy::Votes
        } else if self.label_field.is_some() {
            WinnerBy::Label
        } else {
            WinnerBy::ChosenRejected
        }
    }
    /// `pairwise` prompt separator, resolved (default `"\n\n"`).
    pub fn prompt_separator(&self) -> &str {
        self.prompt_separator.as_deref().unwrap_or("\n\n")
    }
    /// `pairwise` response indices into `responses_field`, resolved (default `[0, 1]`).
    pub fn response_indices(&self) -> [usize; 2] {
        self.response_indices.unwrap_or([0, 1])
    }
    /// `pairwise` annotator placement, resolved (default `annotator`).
    pub fn annotator_as(&self) -> AnnotatorAs {
        self.annotator_as.unwrap_or_default()
    }
    /// Every record field this entry names (for `validate`'s look at the first records): the
    /// prompt, response, label, vote and group fields of its format.
    pub fn named_fields(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        match self.format {
            DataFormat::HhRlhf => out.extend(["chosen".to_string(), "rejected".to_string()]),
            DataFormat::UltraFeedback => {
                out.extend(["instruction".to_string(), "completions".to_string()])
            }
            DataFormat::PkuSafeRlhf => out.extend(
                ["prompt", "response_0", "response_1"]
                    .iter()
                    .map(|s| s.to_string()),
            ),
            DataFormat::Jsonl => {
                out.push(self.chosen_field().to_string());
                out.push(self.rejected_field().to_string());
            }
            DataFormat::Pairwise => {
                match &self.prompt_fields {
                    Some(fields) => out.extend(fields.iter().cloned()),
                    // With chosen/rejected message lists the default prompt field may be absent.
                    None if self.winner() == WinnerBy::ChosenRejected
                        && self.prompt_field.is_none() => {}
                    None => out.push(self.prompt_field().to_string()),
                }
                match self.winner() {
                    WinnerBy::ChosenRejected => {
                        out.push(self.chosen_field().to_string());
                        out.push(self.rejected_field().to_string());
                    }
                    by => {
                        match &self.responses_field {
                            Some(f) => out.push(f.clone()),
                            None => out.extend(
                                [&self.first_field, &self.second_field]
                                    .into_iter()
                                    .flatten()
                                    .cloned(),
                            ),
                        }
                        if by == WinnerBy::Label {
                            out.extend(self.label_field.iter().cloned());
                        } else {
                            out.extend(self.vote_fields.iter().flatten().cloned());
                        }
                    }
                }
            }
        }
        out.extend(self.group_field.iter().cloned());
        out
    }
    /// Fill in the `pairwise` defaults (for `scenario.resolved.toml`).
    pub fn resolve_pairwise(&mut self) {
        if self.format != DataFormat::Pairwise {
            return;
        }
        if self.prompt_fields.is_some() {
            self.prompt_separator = Some(self.prompt_separator().to_string());
        } else {
            self.prompt_field = Some(self.prompt_field().to_string());
        }
        match self.winner() {
            WinnerBy::ChosenRejected => {
                self.chosen_field = Some(self.chosen_field().to_string());
                self.rejected_field = Some(self.rejected_field().to_string());
            }
            WinnerBy::Votes => {
                self.annotator_as = Some(self.annotator_as());
                if self.responses_field.is_some() {
                    self.response_indices = Some(self.response_indices());
                }
            }
            WinnerBy::Label => {
                if self.responses_field.is_some() {
                    self.response_indices = Some(self.response_indices());
                }
            }
        }
    }
    /// `jsonl` prompt field, resolved (default `prompt`).
    pub fn prompt_field(&self) -> &str {
        self.prompt_field.as_deref().unwrap_or("prompt")
    }
    /// `jsonl` chosen field, resolved (default `chosen`).
    pub fn chosen_field(&self) -> &str {
        self.chosen_field.as_deref().unwrap_or("chosen")
    }
    /// `jsonl` rejected field, resolved (default `rejected`).
    pub fn rejected_field(&self) -> &str {
        self.rejected_field.as_deref().unwrap_or("rejected")
    }
    /// Aspects, resolved (the format's defaults when unset; empty for formats without aspects).
    pub fn aspects(&self) -> Vec<String> {
        match &self.aspects {
            Some(a) => a.clone(),
            None => self
                .format
                .default_aspects()
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }

    /// Rules of the `pairwise` keys (and that no other format sets them).
    fn validate_pairwise(&self, i: usize) -> Result<(), RuleError> {
        let f = |name: &str| format!("data.files[{i}].{name}");
        let set: [(&str, bool); 10] = [
            ("prompt_fields", self.prompt_fields.is_some()),
            ("prompt_separator", self.prompt_separator.is_some()),
            ("first_field", self.first_field.is_some()),
            ("second_field", self.second_field.is_some()),
            ("responses_field", self.responses_field.is_some()),
            ("response_indices", self.response_indices.is_some()),
            ("label_field", self.label_field.is_some()),
            ("vote_fields", self.vote_fields.is_some()),
            ("label_map", self.label_map.is_some()),
            ("annotator_as", self.annotator_as.is_some()),
        ];
        if self.format != DataFormat::Pairwise {
            if let Some((name, _)) = set.iter().find(|(_, s)| *s) {
                return Err(rule(f(name), "applies only to format = \"pairwise\""));
            }
            return Ok(());
        }
        let non_empty = |v: &Option<String>, name: &str| match v {
            Some(s) if s.is_empty() => Err(rule(f(name), "must not be empty")),
            _ => Ok(()),
        };
        for (v, name) in [
            (&self.first_field, "first_field"),
            (&self.second_field, "second_field"),
            (&self.responses_field, "responses_field"),
            (&self.label_field, "label_field"),
        ] {
            non_empty(v, name)?;
        }
        for (v, name) in [
            (&self.prompt_fields, "prompt_fields"),
            (&self.vote_fields, "vote_fields"),
        ] {
            if let Some(list) = v {
                if list.is_empty() {
                    return Err(rule(f(name), "must name at least one field"));
                }
                if let Some(j) = (0..list.len()).find(|&j| list[j].is_empty()) {
                    return Err(rule(f(name), format!("entry {j} must not be empty")));
                }
                if let Some(j) = (1..list.len()).find(|&j| list[..j].contains(&list[j])) {
                    return Err(rule(f(name), format!("names '{}' twice", list[j])));
                }
            }
        }
        if self.prompt_fields.is_some() && self.prompt_field.is_some() {
            return Err(rule(
                f("prompt_fields"),
                "cannot be combined with prompt_field (name one field there, or several here)",
            ));
        }
        if self.prompt_separator.is_some() && self.prompt_fields.is_none() {
            return Err(rule(
                f("prompt_separator"),
                "applies only with prompt_fields",
            ));
        }
        if self.label_field.is_some() && self.vote_fields.is_some() {
            return Err(rule(
                f("vote_fields"),
                "cannot be combined with label_field (the winner comes from one label or from votes)",
            ));
        }
        if self.annotator_as.is_some() && self.vote_fields.is_none() {
            return Err(rule(f("annotator_as"), "applies only with vote_fields"));
        }
        match self.winner() {
            WinnerBy::ChosenRejected => {
                for (name, on) in &set[2..] {
                    if *on {
                        return Err(rule(
                            f(name),
                            "applies only with label_field or vote_fields (which say which response won)",
                        ));
                    }
                }
            }
            WinnerBy::Label | WinnerBy::Votes => {
                for (v, name) in [
                    (&self.chosen_field, "chosen_field"),
                    (&self.rejected_field, "rejected_field"),
                ] {
                    if v.is_some() {
                        return Err(rule(
                            f(name),
                            "cannot be combined with label_field or vote_fields (use first_field \
                             and second_field, or responses_field)",
                        ));
                    }
                }
                match (&self.first_field, &self.second_field, &self.responses_field) {
                    (Some(a), Some(b), None) => {
                        if a == b {
                            return Err(rule(f("second_field"), "must differ from first_field"));
                        }
                    }
                    (None, None, Some(_)) => {}
                    (_, _, Some(_)) => {
                        return Err(rule(
                            f("responses_field"),
                            "cannot be combined with first_field / second_field",
                        ));
                    }
                    (_, _, None) => {
                        return Err(rule(
                            f("first_field"),
                            "first_field and second_field (or responses_field) must be set with \
                             label_field or vote_fields",
                        ));
                    }
                }
                if self.response_indices.is_some() && self.responses_field.is_none() {
                    return Err(rule(
                        f("response_indices"),
                        "applies only with responses_field",
                    ));
                }
                let [a, b] = self.response_indices();
                if a == b {
                    return Err(rule(
                        f("response_indices"),
                        "must name two different indices",
                    ));
                }
                match &self.label_map {
                    None => {
                        return Err(rule(
                            f("label_map"),
                            "must be set with label_field or vote_fields, e.g. \
                             { \"0\" = \"first\", \"1\" = \"second\", \"2\" = \"tie\" }",
                        ));
                    }
                    Some(m) if m.is_empty() => {
                        return Err(rule(f("label_map"), "must map at least one value"));
                    }
                    Some(m)
                        if !m.values().any(|o| *o == Outcome::First)
                            || !m.values().any(|o| *o == Outcome::Second) =>
                    {
                        return Err(rule(
                            f("label_map"),
                            "must map some value to \"first\" and some value to \"second\"",
                        ));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn validate(&self, i: usize) -> Result<(), RuleError> {
        let f = |name: &str| format!("data.files[{i}].{name}");
        let format = self.format.as_str();
        if self.path.as_os_str().is_empty() {
            return Err(rule(f("path"), "must not be empty"));
        }
        if let Some(0) = self.limit {
            return Err(rule(f("limit"), "must be >= 1"));
        }
        let non_empty = |v: &Option<String>, name: &str| match v {
            Some(s) if s.is_empty() => Err(rule(f(name), "must not be empty")),
            _ => Ok(()),
        };
        non_empty(&self.group, "group")?;
        non_empty(&self.group_field, "group_field")?;
        if self.format.has_aspects() {
            for (v, name) in [(&self.group, "group"), (&self.group_field, "group_field")] {
                if v.is_some() {
                    return Err(rule(
                        f(name),
                        format!(
                            "does not apply to format = \"{format}\" (its groups are the aspects; see `aspects`)"
                        ),
                    ));
                }
            }
        } else if self.format == DataFormat::Pairwise
            && self.annotator_as == Some(AnnotatorAs::Group)
        {
            for (v, name) in [(&self.group, "group"), (&self.group_field, "group_field")] {
                if v.is_some() {
                    return Err(rule(
                        f(name),
                        "cannot be combined with annotator_as = \"group\" (the annotator is the group)",
                    ));
                }
            }
        } else {
            match (&self.group, &self.group_field) {
                (None, None) => {
                    return Err(rule(
                        f("group"),
                        format!(
                            "must be set for format = \"{format}\" (a label for every pair of the file), or set group_field"
                        ),
                    ));
                }
                (Some(_), Some(_)) => {
                    return Err(rule(f("group_field"), "cannot be combined with group"));
                }
                _ => {}
            }
            if self.aspects.is_some() {
                return Err(rule(
                    f("aspects"),
                    "applies only to format = \"ultrafeedback\" or \"pku-saferlhf\"",
                ));
            }
        }
        for (v, name) in [
            (&self.prompt_field, "prompt_field"),
            (&self.chosen_field, "chosen_field"),
            (&self.rejected_field, "rejected_field"),
        ] {
            if v.is_some() && !matches!(self.format, DataFormat::Jsonl | DataFormat::Pairwise) {
                return Err(rule(
                    f(name),
                    "applies only to format = \"jsonl\" or \"pairwise\"",
                ));
            }
            non_empty(v, name)?;
        }
        self.validate_pairwise(i)?;
        if let Some(aspects) = &self.aspects {
            if aspects.is_empty() {
                return Err(rule(f("aspects"), "must name at least one aspect"));
            }
            let known = self.format.known_aspects();
            for (j, a) in aspects.iter().enumerate() {
                if !known.contains(&a.as_str()) {
                    return Err(rule(
                        f("aspects"),
                        format!(
                            "must be among {} for format = \"{format}\", got '{a}'",
                            known.join(", ")
                        ),
                    ));
                }
                if aspects[..j].contains(a) {
                    return Err(rule(f("aspects"), format!("names '{a}' twice")));
                }
            }
        }
        Ok(())
    }
}

/// The policy backbone: a small causal transformer (see the `model` module).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Hidden size d (also the code dimension). Default 64.
    #[serde(default = "d_d_model")]
    pub d_model: usize,
    /// Transformer layers. Default 2.
    #[serde(default = "d_two")]
    pub layers: usize,
    /// Attention heads; must divide d_model. Default 4.
    #[serde(default = "d_heads")]
    pub heads: usize,
    /// Feed-forward width. Default 4 * d_model.
    #[serde(default)]
    pub d_ff: Option<usize>,
    /// Dropout probability in [0, 1). Default 0.
    #[serde(default)]
    pub dropout: f64,
    /// Supervised warm-up steps fitting the starting policy to pi_ref. Default 300.
    #[serde(default = "d_warmup_steps")]
    pub warmup_steps: usize,
    /// Learning rate of the warm-up. Default 3e-3.
    #[serde(default = "d_warmup_lr")]
    pub warmup_lr: f64,
    /// A pretrained Llama-family model in a GGUF file as the policy (real data only; a relative
    /// path resolves against the directory the run starts in, like `data.files`). It is also
    /// pi_ref, so there is no warm-up, and its own tokenizer and chat template render the text;
    /// `d_model`, `layers`, `heads`, `d_ff`, `dropout` and the warm-up fields do not apply.
    /// Unset (the default): the scratch transformer those fields describe.
    #[serde(default)]
    pub pretrained: Option<PathBuf>,
    /// What of the pretrained model trains: `"all"` (the default) or `"last:K"` (the last K
    /// blocks and the final norm; the lower blocks are frozen and their output is computed once
    /// per sequence). See `model::pretrained`.
    #[serde(default)]
    pub trainable: Option<String>,
    /// With `trainable = "last:K"`: whether the output projection trains too (untied from the
    /// frozen input embedding it starts as). Default false. With `"all"` it always trains, so
    /// `false` is an error there.
    #[serde(default)]
    pub train_head: Option<bool>,
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self {
            d_model: d_d_model(),
            layers: 2,
            heads: d_heads(),
            d_ff: None,
            dropout: 0.0,
            warmup_steps: d_warmup_steps(),
            warmup_lr: d_warmup_lr(),
            pretrained: None,
            trainable: None,
            train_head: None,
        }
    }
}

impl ModelSpec {
    /// Feed-forward width, resolved.
    pub fn d_ff(&self) -> usize {
        self.d_ff.unwrap_or(4 * self.d_model)
    }
}

/// The training loop (shared by every method unless a method overrides `lr` or `steps`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    /// Optimiser steps. Default 500. Ignored when `epochs` is set.
    #[serde(default = "d_steps")]
    pub steps: usize,
    /// Train for this many passes over the training pairs instead of `steps`. Default: unset.
    #[serde(default)]
    pub epochs: Option<usize>,
    /// Pairs per step. Default 64.
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    /// Peak Adam learning rate. Default 1e-3.
    #[serde(default = "d_lr")]
    pub lr: f64,
    /// Linear learning-rate warm-up steps. Default 20.
    #[serde(default = "d_lr_warmup")]
    pub lr_warmup_steps: usize,
    /// Learning-rate schedule after warm-up. Default `cosine`.
    #[serde(default)]
    pub schedule: LrSchedule,
    /// Gradient-norm clip applied to each parameter tensor on its own (burn clips per tensor, not
    /// the global norm over all tensors; 0 = off). Default 1.
    #[serde(default = "d_one")]
    pub grad_clip: f64,
    /// Evaluate on the validation pairs every this many steps (and after the last step).
    /// Default 50.
    #[serde(default = "d_eval_every")]
    pub eval_every: usize,
    /// Which checkpoint is scored, chosen on the validation pairs only (never the held-out
    /// pairs): `best-val` (default) keeps the evaluation with the lowest validation value of
    /// the method's own training objective (base loss under the posterior's argmax code plus
    /// lambda KL(q||p) for latent methods, so using the codes is not penalised; the base loss
    /// for baselines); `best-val-loss` the lowest validation base loss under the inference
    /// (prior) code; `last` the final step.
    #[serde(default)]
    pub select: CheckpointSelect,
    /// Device: `cpu`, `cuda` or `cuda:N`. Default `cpu`.
    #[serde(default = "d_device")]
    pub device: String,
    /// CPU threads (0 = all cores). Default 0.
    #[serde(default)]
    pub threads: usize,
    /// Precision of the policy's matmuls: `f32` (default), or `bf16` / `f16` mixed precision on
    /// a GPU (parameters, optimiser, losses and KL stay f32). Half precision is rejected on the
    /// CPU.
    #[serde(default)]
    pub precision: Precision,
    /// Kernel fusion on a CUDA device (default `true`, burn-cuda's default): element-wise chains
    /// compile into fused kernels. `false` runs every operation as its own kernel (fewer kernels
    /// to compile, more launches per step). The CPU backend does not fuse; ignored there.
    #[serde(default = "d_true")]
    pub fusion: bool,
}

/// Precision of the policy's matmuls (`train.precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// Matmuls in bfloat16 (8-bit mantissa, f32 range): GPUs with bf16 tensor cores.
    Bf16,
    /// Matmuls in IEEE half (10-bit mantissa, max 65504).
    F16,
}

impl Precision {
    /// The name used in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }
}

impl Default for TrainSpec {
    fn default() -> Self {
        Self {
            steps: d_steps(),
            epochs: None,
            batch_size: d_batch(),
            lr: d_lr(),
            lr_warmup_steps: d_lr_warmup(),
            schedule: LrSchedule::default(),
            grad_clip: 1.0,
            eval_every: d_eval_every(),
            select: CheckpointSelect::default(),
            device: d_device(),
            threads: 0,
            precision: Precision::F32,
            fusion: true,
        }
    }
}

/// Learning-rate schedule after the linear warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LrSchedule {
    /// The warmed-up rate throughout.
    Constant,
    /// Linear decay to 0 at the last step.
    Linear,
    /// Cosine decay to 0 at the last step.
    #[default]
    Cosine,
}

/// Which checkpoint a method reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckpointSelect {
    /// The final step.
    Last,
    /// Lowest validation value of the method's training objective (see `TrainSpec::select`).
    #[default]
    BestVal,
    /// Lowest validation base loss under the inference code. `best-eval-loss` (the name before
    /// the validation split existed) is read as this.
    #[serde(alias = "best-eval-loss")]
    BestValLoss,
}

/// The base preference objective (METHOD.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ObjectiveKind {
    /// Direct preference optimisation.
    Dpo,
    /// Identity preference optimisation (squared loss on the margin).
    Ipo,
    /// Simple preference optimisation (length-normalised, no reference).
    Simpo,
    /// Conservative DPO (label smoothing eps).
    Cdpo,
    /// Robust DPO (Chowdhury et al. 2024).
    Rdpo,
}

impl ObjectiveKind {
    /// Every objective, in declaration order.
    pub const ALL: [ObjectiveKind; 5] = [
        ObjectiveKind::Dpo,
        ObjectiveKind::Ipo,
        ObjectiveKind::Simpo,
        ObjectiveKind::Cdpo,
        ObjectiveKind::Rdpo,
    ];
    /// The name used in method names (`dpo`, `ipo`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectiveKind::Dpo => "dpo",
            ObjectiveKind::Ipo => "ipo",
            ObjectiveKind::Simpo => "simpo",
            ObjectiveKind::Cdpo => "cdpo",
            ObjectiveKind::Rdpo => "rdpo",
        }
    }
}

/// How the policy is conditioned on a latent code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LatentKind {
    /// No code: the bare objective.
    None,
    /// Discrete codebook with prior and posterior (LPC).
    Lpc,
    /// Continuous Gaussian latent (VPL-style ablation).
    Gaussian,
    /// The true type as a one-hot code into a K = T codebook (upper bound; synthetic only).
    Oracle,
}

/// A method name as written in scenario files: `[lpc-|oracle-]<objective>[-gaussian]`,
/// e.g. `dpo`, `lpc-simpo`, `oracle-dpo`, `lpc-dpo-gaussian`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodName {
    /// The latent head: none, discrete LPC, oracle or Gaussian.
    pub latent: LatentKind,
    /// The base objective.
    pub objective: ObjectiveKind,
}

impl MethodName {
    /// Parse `dpo`, `lpc-dpo`, `oracle-ipo`, `lpc-dpo-gaussian`, ...
    pub fn parse(s: &str) -> Option<MethodName> {
        let (latent, rest) = if let Some(r) = s.strip_prefix("lpc-") {
            match r.strip_suffix("-gaussian") {
                Some(base) => (LatentKind::Gaussian, base),
                None => (LatentKind::Lpc, r),
            }
        } else if let Some(r) = s.strip_prefix("oracle-") {
            (LatentKind::Oracle, r)
        } else {
            (LatentKind::None, s)
        };
        let objective = ObjectiveKind::ALL
            .into_iter()
            .find(|o| o.as_str() == rest)?;
        Some(MethodName { latent, objective })
    }

    /// The name as written in scenario files, e.g. `lpc-dpo-gaussian`.
    pub fn canonical(self) -> String {
        match self.latent {
            LatentKind::None => self.objective.as_str().to_string(),
            LatentKind::Lpc => format!("lpc-{}", self.objective.as_str()),
            LatentKind::Gaussian => format!("lpc-{}-gaussian", self.objective.as_str()),
            LatentKind::Oracle => format!("oracle-{}", self.objective.as_str()),
        }
    }
}

/// One method to train and compare. Hyper-parameters that do not apply to the method are
/// rejected by validation rather than silently ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodSpec {
    /// `[lpc-|oracle-]<dpo|ipo|simpo|cdpo|rdpo>[-gaussian]`.
    pub method: String,
    /// Display name, unique within the scenario. Default: `method`.
    #[serde(default)]
    pub label: Option<String>,
    /// beta of DPO/IPO/SimPO. Default 0.1 (SimPO: 2.0, its paper's range).
    #[serde(default)]
    pub beta: Option<f64>,
    /// SimPO target margin gamma. Default 0.5. SimPO only.
    #[serde(default)]
    pub gamma: Option<f64>,
    /// Label-noise rate eps for cDPO / rDPO, in [0, 0.5). Default 0.1.
    #[serde(default)]
    pub eps: Option<f64>,
    /// KL weight lambda of LPC (METHOD.md §4: 1 is the true ELBO). Default 1. Latent methods only.
    #[serde(default)]
    pub lambda: Option<f64>,
    /// Codebook size K. Default 8. LPC only.
    #[serde(default)]
    pub codebook: Option<usize>,
    /// Gumbel-softmax temperature at the start of training. Default 1.
    #[serde(default)]
    pub tau: Option<f64>,
    /// Gumbel-softmax temperature at the end (annealed exponentially). Default: equal to `tau`.
    #[serde(default)]
    pub tau_end: Option<f64>,
    /// Straight-through hard Gumbel samples instead of the soft relaxation. Default false.
    #[serde(default)]
    pub hard: Option<bool>,
    /// Code used at inference: prior `expectation`, `argmax` or `sample`. Default expectation.
    #[serde(default)]
    pub inference: Option<InferenceMode>,
    /// Posterior→prior schedule g: `linear` rises 0→1 over training (paper), `off` keeps the
    /// posterior code throughout. Default linear.
    #[serde(default)]
    pub prior_schedule: Option<PriorSchedule>,
    /// Fraction of training over which lambda warms up linearly from 0. Default 0 (off).
    #[serde(default)]
    pub lambda_warmup: Option<f64>,
    /// Free bits: the KL term is max(KL, free_bits) per pair. Default 0 (off).
    #[serde(default)]
    pub free_bits: Option<f64>,
    /// Weight alpha of a code-diversity term on the batch's mean posterior (as in wav2vec 2.0's
    /// Gumbel codebook): `alpha_now (1 - H(mean_batch q) / ln K)`, which keeps the posterior
    /// from putting every pair on one code before the codes mean anything. `alpha_now` falls
    /// linearly from alpha to 0 over the first `diversity_until` of training, so the final
    /// objective is the method's own. Default 0 (off). Discrete LPC only.
    #[serde(default)]
    pub diversity: Option<f64>,
    /// Fraction of training over which the diversity weight decays to 0. Default 0.25.
    #[serde(default)]
    pub diversity_until: Option<f64>,
    /// Annotator context C: the posterior mean-pools features over the pair and C other pairs
    /// labelled by the same annotator (needs `world.annotators > 0`). Default 0 (off).
    #[serde(default)]
    pub context: Option<usize>,
    /// How training batches give the posterior its annotator context (with `context > 0`):
    /// `grouped` (default) builds each batch from runs of C + 1 pairs by one annotator, each
    /// run its own context (no extra backbone pass, but only batch / (C + 1) distinct posterior
    /// inputs per step); `fresh` draws C other training pairs of the annotator for every pair
    /// of an ordinary batch (METHOD.md §4; C extra forward passes per pair, whose hidden states
    /// are read without gradient into the backbone).
    #[serde(default)]
    pub context_batches: Option<ContextBatches>,
    /// What the posterior reads of each response: the hidden state at its `last` token (paper)
    /// or the `mean` of the states over its tokens. Default last.
    #[serde(default)]
    pub posterior_pool: Option<PosteriorPool>,
    /// Gaussian latent dimension for the Gaussian ablation. Default d_model.
    #[serde(default)]
    pub latent_dim: Option<usize>,
    /// Learning-rate override for this method. Default: `train.lr`.
    #[serde(default)]
    pub lr: Option<f64>,
    /// Learning-rate schedule override for this method (`constant`, `linear`, `cosine`).
    /// Default: `train.schedule`.
    #[serde(default)]
    pub schedule: Option<LrSchedule>,
    /// Step-count override for this method. Default: `train.steps`.
    #[serde(default)]
    pub steps: Option<usize>,
}

/// How training batches carry annotator context (`methods[].context_batches`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContextBatches {
    /// Runs of C + 1 pairs by one annotator; each run is its own context.
    #[default]
    Grouped,
    /// Ordinary batches; C fresh context pairs drawn per pair (stream `context/<label>`).
    Fresh,
}

/// How the posterior summarises a response's hidden states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PosteriorPool {
    /// The state at the last token of `[x, sep, y]` (the paper's reading).
    #[default]
    Last,
    /// The mean of the states over the response tokens.
    Mean,
}

/// How z is chosen from the prior at inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InferenceMode {
    /// The prior-weighted mean of the codes.
    #[default]
    Expectation,
    /// The prior's most likely code.
    Argmax,
    /// A code drawn from the prior.
    Sample,
}

/// The posterior→prior schedule of the code fed to the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PriorSchedule {
    /// The mixing weight grows linearly from 0 to 1 over training.
    #[default]
    Linear,
    /// Posterior only (weight 0).
    Off,
}

/// A method with every default resolved and its name parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedMethod {
    /// `methods[].label`, or the method name.
    pub label: String,
    /// The parsed method name.
    pub name: MethodName,
    /// `methods[].beta`.
    pub beta: f64,
    /// `methods[].gamma` (SimPO).
    pub gamma: f64,
    /// `methods[].eps` (cDPO, rDPO).
    pub eps: f64,
    /// `methods[].lambda`, the KL weight (default 1).
    pub lambda: f64,
    /// `methods[].codebook`, the number of codes K.
    pub codebook: usize,
    /// `methods[].tau`, the starting Gumbel-softmax temperature.
    pub tau: f64,
    /// `methods[].tau_end`, the final temperature.
    pub tau_end: f64,
    /// `methods[].hard`: straight-through Gumbel-softmax.
    pub hard: bool,
    /// `methods[].inference`: how the code is chosen from the prior when scoring.
    pub inference: InferenceMode,
    /// `methods[].prior_schedule`.
    pub prior_schedule: PriorSchedule,
    /// `methods[].lambda_warmup`, a fraction of training.
    pub lambda_warmup: f64,
    /// `methods[].free_bits`, nats of KL not penalised.
    pub free_bits: f64,
    /// `methods[].diversity`, the starting weight of the code-diversity term (0 = off).
    pub diversity: f64,
    /// `methods[].diversity_until`, the fraction of training over which that weight decays.
    pub diversity_until: f64,
    /// `methods[].context`: same-annotator pairs pooled into the posterior (0 = off).
    pub context: usize,
    /// `methods[].posterior_pool`.
    pub posterior_pool: PosteriorPool,
    /// `methods[].context_batches`.
    pub context_batches: ContextBatches,
    /// `methods[].latent_dim`, the Gaussian latent's dimension.
    pub latent_dim: usize,
    /// Learning rate (`methods[].lr`, else `train.lr`).
    pub lr: f64,
    /// Learning-rate schedule (`methods[].schedule`, else `train.schedule`).
    pub schedule: LrSchedule,
    /// Optimiser steps (`methods[].steps`, else `train.steps`).
    pub steps: usize,
}

impl MethodSpec {
    /// A method spec with only its name set.
    pub fn named(method: &str) -> MethodSpec {
        MethodSpec {
            method: method.to_string(),
            label: None,
            beta: None,
            gamma: None,
            eps: None,
            lambda: None,
            codebook: None,
            tau: None,
            tau_end: None,
            hard: None,
            inference: None,
            prior_schedule: None,
            lambda_warmup: None,
            free_bits: None,
            diversity: None,
            diversity_until: None,
            context: None,
            posterior_pool: None,
            context_batches: None,
            schedule: None,
            latent_dim: None,
            lr: None,
            steps: None,
        }
    }

    /// The display label.
    pub fn label(&self) -> String {
        self.label.clone().unwrap_or_else(|| self.method.clone())
    }
}

fn default_methods() -> Vec<MethodSpec> {
    vec![MethodSpec::named("dpo"), MethodSpec::named("lpc-dpo")]
}

fn d_vocab() -> usize {
    16
}
fn d_len() -> usize {
    6
}
fn d_two() -> usize {
    2
}
fn d_one() -> f64 {
    1.0
}
fn d_feature_dim() -> usize {
    8
}
fn d_reward_scale() -> f64 {
    6.0
}
fn d_prompt_concentration() -> f64 {
    0.5
}
fn d_train_pairs() -> usize {
    8000
}
fn d_eval_pairs() -> usize {
    2000
}
fn d_d_model() -> usize {
    64
}
fn d_heads() -> usize {
    4
}
fn d_warmup_steps() -> usize {
    300
}
fn d_warmup_lr() -> f64 {
    3e-3
}
fn d_steps() -> usize {
    500
}
fn d_batch() -> usize {
    64
}
fn d_lr() -> f64 {
    1e-3
}
fn d_lr_warmup() -> usize {
    20
}
fn d_eval_every() -> usize {
    50
}
fn d_device() -> String {
    "cpu".to_string()
}

fn d_true() -> bool {
    true
}

/// Normalise non-negative weights to sum 1.
pub fn normalise(weights: &[f64]) -> Vec<f64> {
    let total: f64 = weights.iter().sum();
    weights.iter().map(|w| w / total).collect()
}

impl WorldSpec {
    /// Normalised type mixture w (length T).
    pub fn type_weights(&self) -> Vec<f64> {
        match &self.type_weights {
            Some(w) => normalise(w),
            None => vec![1.0 / self.types as f64; self.types],
        }
    }

    /// Normalised source mixture (length S). Default: when S is a multiple of T, source s gets
    /// w_{s mod T} / (S/T), so the type marginal equals the type weights for any coupling;
    /// otherwise uniform.
    pub fn source_weights(&self) -> Vec<f64> {
        if let Some(w) = &self.source_weights {
            return normalise(w);
        }
        let (s, t) = (self.sources, self.types);
        if s.is_multiple_of(t) {
            let tw = self.type_weights();
            normalise(&(0..s).map(|i| tw[i % t]).collect::<Vec<_>>())
        } else {
            vec![1.0 / s as f64; s]
        }
    }

    /// P(type | source), row per source:
    /// `c 1[t = s mod T] + (1 - c) w_t`.
    pub fn type_given_source(&self) -> Vec<Vec<f64>> {
        let w = self.type_weights();
        (0..self.sources)
            .map(|s| {
                (0..self.types)
                    .map(|t| {
                        let hit = if t == s % self.types { 1.0 } else { 0.0 };
                        self.coupling * hit + (1.0 - self.coupling) * w[t]
                    })
                    .collect()
            })
            .collect()
    }

    /// Length-term weight per type (length T).
    pub fn length_weights(&self) -> Vec<f64> {
        match &self.length_weight {
            None => vec![0.0; self.types],
            Some(v) if v.len() == 1 => vec![v[0]; self.types],
            Some(v) => v.clone(),
        }
    }

    /// Minimum response length, resolved.
    pub fn response_len_min(&self) -> usize {
        self.response_len_min.unwrap_or(self.response_len)
    }
}

impl Default for WorldSpec {
    fn default() -> Self {
        toml::from_str("").expect("an empty world table takes every default")
    }
}

/// A [`Scenario`] that passed every rule: made only by [`Scenario::check`] (which the loaders
/// call), so code that holds one never checks again. It reads as the scenario
/// (`Deref<Target = Scenario>`); changing it goes through [`CheckedScenario::amend`].
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedScenario {
    scenario: Scenario,
    /// The parsed name of each method, in order.
    names: Vec<MethodName>,
}

impl std::ops::Deref for CheckedScenario {
    type Target = Scenario;

    fn deref(&self) -> &Scenario {
        &self.scenario
    }
}

impl CheckedScenario {
    /// The scenario itself, unchecked again (to change it and [`Scenario::check`] it anew).
    pub fn into_inner(self) -> Scenario {
        self.scenario
    }

    /// The scenario after `change` (command-line overrides, a sweep cell's values), checked
    /// again: an override can break a rule (e.g. `--device cpu` with `train.precision =
    /// "bf16"`). The error names the scenario: `scenario '<name>': <field> <rule>`.
    pub fn amend(self, change: impl FnOnce(&mut Scenario)) -> crate::Result<CheckedScenario> {
        let mut scenario = self.scenario;
        change(&mut scenario);
        let name = scenario.name.clone();
        scenario
            .check()
            .map_err(|r| crate::Error::msg(format!("scenario '{name}': {r}")))
    }

    /// Every method with its defaults resolved (its name parsed when the scenario was checked).
    pub fn resolved_methods(&self) -> Vec<ResolvedMethod> {
        self.methods
            .iter()
            .zip(&self.names)
            .map(|(m, &name)| {
                let default_beta = if name.objective == ObjectiveKind::Simpo {
                    2.0
                } else {
                    0.1
                };
                let tau = m.tau.unwrap_or(1.0);
                ResolvedMethod {
                    label: m.label(),
                    name,
                    beta: m.beta.unwrap_or(default_beta),
                    gamma: m.gamma.unwrap_or(0.5),
                    eps: m.eps.unwrap_or(0.1),
                    lambda: m.lambda.unwrap_or(1.0),
                    codebook: match name.latent {
                        LatentKind::Oracle => self.world().types,
                        _ => m.codebook.unwrap_or(8),
                    },
                    tau,
                    tau_end: m.tau_end.unwrap_or(tau),
                    hard: m.hard.unwrap_or(false),
                    inference: m.inference.unwrap_or_default(),
                    prior_schedule: m.prior_schedule.unwrap_or_default(),
                    lambda_warmup: m.lambda_warmup.unwrap_or(0.0),
                    free_bits: m.free_bits.unwrap_or(0.0),
                    diversity: m.diversity.unwrap_or(0.0),
                    diversity_until: m.diversity_until.unwrap_or(0.25),
                    context: m.context.unwrap_or(0),
                    posterior_pool: m.posterior_pool.unwrap_or_default(),
                    context_batches: m.context_batches.unwrap_or_default(),
                    latent_dim: m.latent_dim.unwrap_or(self.model.d_model),
                    lr: m.lr.unwrap_or(self.train.lr),
                    schedule: m.schedule.unwrap_or(self.train.schedule),
                    steps: m.steps.unwrap_or(self.train.steps),
                }
            })
            .collect()
    }
}

impl Scenario {
    /// Parse and validate a scenario file. The name defaults to the file stem.
    pub fn load(path: &Path) -> Result<CheckedScenario, ScenarioError> {
        let text = read_text(path)?;
        Scenario::from_file_text(&text, &file_stem(path)).map_err(|e| e.with_path(path))
    }

    /// Parse and validate the text of a scenario *file*: as [`Scenario::from_toml_str`], and a
    /// file with no key at all (empty, or only comments) is an error rather than a silent
    /// default run: a default run needs at least `name = "..."`.
    pub fn from_file_text(
        text: &str,
        default_name: &str,
    ) -> Result<CheckedScenario, ScenarioError> {
        if text.parse::<toml::Table>().is_ok_and(|t| t.is_empty()) {
            return Err(ScenarioError::Invalid {
                path: PathBuf::new(),
                field: "name".into(),
                rule: "must be set: the file is empty (or only comments); a run of every default \
                       needs at least `name = \"...\"`"
                    .into(),
            });
        }
        Scenario::from_toml_str(text, default_name)
    }

    /// Parse and validate scenario text; `default_name` is used when `name` is absent.
    pub fn from_toml_str(text: &str, default_name: &str) -> Result<CheckedScenario, ScenarioError> {
        let mut scenario: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            path: PathBuf::new(),
            message: e.to_string().trim_end().to_string(),
        })?;
        if scenario.name.is_empty() {
            scenario.name = default_name.to_string();
        }
        scenario.check().map_err(|r| ScenarioError::Invalid {
            path: PathBuf::new(),
            field: r.field,
            rule: r.rule,
        })
    }

    /// Parse and validate an already-parsed TOML table (used by sweeps after expanding a grid).
    pub fn from_table(
        table: toml::Table,
        default_name: &str,
    ) -> Result<CheckedScenario, ScenarioError> {
        let text = toml::to_string(&table).map_err(|e| ScenarioError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        Scenario::from_toml_str(&text, default_name)
    }

    /// The resolved scenario as TOML: every default filled in, so a result folder documents
    /// exactly what ran. Loading this text gives back an equal scenario. An encoding failure is
    /// a [`ScenarioError::Parse`] naming the scenario.
    pub fn to_toml(&self) -> Result<String, ScenarioError> {
        let mut resolved = self.clone();
        if resolved.world.is_none() && !self.is_real_data() {
            resolved.world = Some(WorldSpec::default());
        }
        if let Some(w) = resolved.world.as_mut() {
            w.type_weights = Some(w.type_weights());
            w.source_weights = Some(w.source_weights());
            w.response_len_min = Some(w.response_len_min());
            w.length_weight = Some(w.length_weights());
        }
        resolved.data.val_pairs = Some(self.data.val_pairs());
        if !self.is_real_data() {
            resolved.data.heldout_annotators = Some(self.data.heldout_annotators());
        }
        if self.is_real_data() {
            let d = &mut resolved.data;
            d.eval_fraction = Some(self.data.eval_fraction());
            d.max_prompt_tokens = Some(self.data.max_prompt_tokens());
            d.max_response_tokens = Some(self.data.max_response_tokens());
            // A pretrained model renders the text with its own tokenizer, and the field must
            // stay unset (validation), so the resolved file reloads (`lpc-bench eval`).
            if self.model.pretrained.is_none() {
                d.tokenizer = Some(self.data.tokenizer().to_string());
            }
            d.max_drop_fraction = Some(self.data.max_drop_fraction());
            for f in &mut d.files {
                if f.format == DataFormat::Jsonl {
                    f.prompt_field = Some(f.prompt_field().to_string());
                    f.chosen_field = Some(f.chosen_field().to_string());
                    f.rejected_field = Some(f.rejected_field().to_string());
                }
                if f.format.has_aspects() {
                    f.aspects = Some(f.aspects());
                }
                f.resolve_pairwise();
            }
        }
        resolved.model.d_ff = Some(self.model.d_ff());
        for m in &mut resolved.methods {
            m.label = Some(m.label());
        }
        toml::to_string_pretty(&resolved).map_err(|e| ScenarioError::Parse {
            path: PathBuf::from(&self.name),
            message: format!("cannot write the resolved scenario as TOML: {e}"),
        })
    }

    /// True when the scenario reads real preference files instead of a synthetic world.
    pub fn is_real_data(&self) -> bool {
        !self.data.files.is_empty()
    }

    /// The synthetic world; scenarios without a `[world]` table get the default world.
    pub fn world(&self) -> WorldSpec {
        self.world.clone().unwrap_or_default()
    }

    /// Check every rule ([`Scenario::validate`]) and, when all hold, the scenario as a
    /// [`CheckedScenario`]; its only constructor.
    pub fn check(self) -> Result<CheckedScenario, RuleError> {
        let names = self.validate()?;
        Ok(CheckedScenario {
            scenario: self,
            names,
        })
    }

    /// Check every rule; the first broken one is returned with its field path. When all hold,
    /// the parsed name of each method, in order.
    pub fn validate(&self) -> Result<Vec<MethodName>, RuleError> {
        // Sanity bounds on every size first, so later rules never compute with absurd sizes.
        crate::plan::check_bounds(self)?;
        if self.name.contains(['/', '\\']) || self.name.starts_with('.') {
            return Err(rule(
                "name",
                "must not contain path separators or start with '.'",
            ));
        }
        if !self.is_real_data() {
            self.world().validate()?;
        }
        let n = &self.noise;
        if !(0.0..=1.0).contains(&n.flip_rate) {
            return Err(rule("noise.flip_rate", "must be in [0, 1]"));
        }
        let d = &self.data;
        if d.train_pairs < 1 {
            return Err(rule("data.train_pairs", "must be >= 1"));
        }
        if d.eval_pairs < 1 {
            return Err(rule("data.eval_pairs", "must be >= 1"));
        }
        if d.val_pairs == Some(0) {
            return Err(rule("data.val_pairs", "must be >= 1"));
        }
        if let Some(h) = d.heldout_annotators {
            if !(0.0..1.0).contains(&h) {
                return Err(rule("data.heldout_annotators", "must be in [0, 1)"));
            }
            let annotators = self.world.as_ref().map_or(0, |w| w.annotators);
            if h > 0.0 && annotators < 2 {
                return Err(rule(
                    "data.heldout_annotators",
                    "needs a synthetic world with world.annotators >= 2",
                ));
            }
        }
        self.validate_real_data()?;
        self.model.validate()?;
        self.train.validate()?;
        if self.methods.is_empty() {
            return Err(rule("methods", "must list at least one method"));
        }
        let mut labels = std::collections::BTreeSet::new();
        let mut names = Vec::with_capacity(self.methods.len());
        for (i, m) in self.methods.iter().enumerate() {
            names.push(self.validate_method(i, m)?);
            if !labels.insert(m.label()) {
                return Err(rule(
                    format!("methods[{i}].label"),
                    format!(
                        "must be unique: '{}' is used twice (set `label` to tell them apart)",
                        m.label()
                    ),
                ));
            }
        }
        Ok(names)
    }

    /// Rules of the real-data fields: they need `data.files`, and `data.files` excludes `[world]`.
    fn validate_real_data(&self) -> Result<(), RuleError> {
        let d = &self.data;
        if !self.is_real_data() {
            let set = [
                ("data.eval_fraction", d.eval_fraction.is_some()),
                ("data.max_prompt_tokens", d.max_prompt_tokens.is_some()),
                ("data.max_response_tokens", d.max_response_tokens.is_some()),
                ("data.tokenizer", d.tokenizer.is_some()),
                ("data.max_drop_fraction", d.max_drop_fraction.is_some()),
            ];
            if let Some((field, _)) = set.iter().find(|(_, s)| *s) {
                return Err(rule(
                    *field,
                    "applies only to real data (name files in [[data.files]])",
                ));
            }
            if self.model.pretrained.is_some() {
                return Err(rule(
                    "model.pretrained",
                    "needs real data (name files in [[data.files]]): a pretrained model reads text",
                ));
            }
            return Ok(());
        }
        if self.model.pretrained.is_some() && d.tokenizer.is_some() {
            return Err(rule(
                "data.tokenizer",
                "must be left unset with model.pretrained: the model's own tokenizer (read from \
                 its GGUF file) renders the text",
            ));
        }
        if self.model.pretrained.is_some() && self.train.precision != Precision::F32 {
            return Err(rule(
                "train.precision",
                "must be \"f32\" with model.pretrained (the pretrained policy runs in f32)",
            ));
        }
        if self.world.is_some() {
            return Err(rule(
                "world",
                "must be absent when data.files names real data (a scenario reads either a \
                 synthetic world or real files)",
            ));
        }
        let fraction = d.eval_fraction();
        if !(fraction > 0.0 && fraction < 1.0) {
            return Err(rule("data.eval_fraction", "must be in (0, 1)"));
        }
        if d.max_prompt_tokens() < 1 {
            return Err(rule("data.max_prompt_tokens", "must be >= 1"));
        }
        if d.max_response_tokens() < 1 {
            return Err(rule("data.max_response_tokens", "must be >= 1"));
        }
        if !(0.0..=1.0).contains(&d.max_drop_fraction()) {
            return Err(rule("data.max_drop_fraction", "must be in [0, 1]"));
        }
        if d.tokenizer().is_empty() {
            return Err(rule(
                "data.tokenizer",
                "must be \"byte\" or the path of a tokenizer.json",
            ));
        }
        for (i, f) in d.files.iter().enumerate() {
            f.validate(i)?;
        }
        Ok(())
    }

    /// The rules of method `i`; its parsed name when they hold.
    fn validate_method(&self, i: usize, m: &MethodSpec) -> Result<MethodName, RuleError> {
        let f = |name: &str| format!("methods[{i}].{name}");
        let Some(name) = MethodName::parse(&m.method) else {
            return Err(rule(
                f("method"),
                format!(
                    "must be [lpc-|oracle-]<dpo|ipo|simpo|cdpo|rdpo>[-gaussian] (e.g. dpo, lpc-dpo, \
                     oracle-dpo, lpc-dpo-gaussian), got '{}'",
                    m.method
                ),
            ));
        };
        if let Some(label) = &m.label
            && (label.is_empty() || label.contains(['/', '\\', ',']))
        {
            return Err(rule(
                f("label"),
                "must be non-empty without '/', '\\' or ','",
            ));
        }
        let latent = name.latent != LatentKind::None;
        let lpc = name.latent == LatentKind::Lpc;
        let only = |set: bool, field: &str, applies: bool, to: &str| -> Result<(), RuleError> {
            if set && !applies {
                Err(rule(f(field), format!("applies only to {to} methods")))
            } else {
                Ok(())
            }
        };
        only(
            m.gamma.is_some(),
            "gamma",
            name.objective == ObjectiveKind::Simpo,
            "simpo",
        )?;
        only(
            m.eps.is_some(),
            "eps",
            matches!(name.objective, ObjectiveKind::Cdpo | ObjectiveKind::Rdpo),
            "cdpo/rdpo",
        )?;
        only(
            m.lambda.is_some(),
            "lambda",
            latent && name.latent != LatentKind::Oracle,
            "lpc",
        )?;
        only(m.codebook.is_some(), "codebook", lpc, "discrete lpc")?;
        only(m.tau.is_some(), "tau", lpc, "discrete lpc")?;
        only(m.tau_end.is_some(), "tau_end", lpc, "discrete lpc")?;
        only(m.hard.is_some(), "hard", lpc, "discrete lpc")?;
        only(m.inference.is_some(), "inference", lpc, "discrete lpc")?;
        only(
            m.prior_schedule.is_some(),
            "prior_schedule",
            lpc || name.latent == LatentKind::Gaussian,
            "lpc",
        )?;
        only(
            m.lambda_warmup.is_some(),
            "lambda_warmup",
            lpc || name.latent == LatentKind::Gaussian,
            "lpc",
        )?;
        only(
            m.free_bits.is_some(),
            "free_bits",
            lpc || name.latent == LatentKind::Gaussian,
            "lpc",
        )?;
        only(m.diversity.is_some(), "diversity", lpc, "discrete lpc")?;
        only(
            m.diversity_until.is_some(),
            "diversity_until",
            lpc,
            "discrete lpc",
        )?;
        only(m.context.is_some(), "context", lpc, "discrete lpc")?;
        if m.context_batches.is_some() && m.context.unwrap_or(0) == 0 {
            return Err(rule(f("context_batches"), "needs context >= 1"));
        }
        only(
            m.posterior_pool.is_some(),
            "posterior_pool",
            lpc || name.latent == LatentKind::Gaussian,
            "lpc",
        )?;
        only(
            m.latent_dim.is_some(),
            "latent_dim",
            name.latent == LatentKind::Gaussian,
            "gaussian",
        )?;
        let positive = |v: Option<f64>, field: &str| match v {
            Some(x) if !(x > 0.0 && x.is_finite()) => Err(rule(f(field), "must be > 0")),
            _ => Ok(()),
        };
        positive(m.beta, "beta")?;
        positive(m.tau, "tau")?;
        positive(m.tau_end, "tau_end")?;
        positive(m.lr, "lr")?;
        if let Some(g) = m.gamma
            && !g.is_finite()
        {
            return Err(rule(f("gamma"), "must be finite"));
        }
        if let Some(e) = m.eps
            && !(0.0..0.5).contains(&e)
        {
            return Err(rule(f("eps"), "must be in [0, 0.5)"));
        }
        if let Some(l) = m.lambda
            && !(l >= 0.0 && l.is_finite())
        {
            return Err(rule(f("lambda"), "must be >= 0"));
        }
        if let Some(k) = m.codebook
            && k < 1
        {
            return Err(rule(f("codebook"), "must be >= 1"));
        }
        if let Some(w) = m.lambda_warmup
            && !(0.0..=1.0).contains(&w)
        {
            return Err(rule(
                f("lambda_warmup"),
                "must be in [0, 1] (a fraction of training)",
            ));
        }
        if let Some(b) = m.free_bits
            && !(b >= 0.0 && b.is_finite())
        {
            return Err(rule(f("free_bits"), "must be >= 0"));
        }
        if let Some(a) = m.diversity
            && !(a >= 0.0 && a.is_finite())
        {
            return Err(rule(f("diversity"), "must be >= 0"));
        }
        if let Some(u) = m.diversity_until
            && !(u > 0.0 && u <= 1.0)
        {
            return Err(rule(
                f("diversity_until"),
                "must be in (0, 1] (a fraction of training)",
            ));
        }
        if let Some(c) = m.context
            && c > 0
            && self.world().annotators == 0
        {
            return Err(rule(f("context"), "needs world.annotators > 0"));
        }
        if let Some(s) = m.steps
            && s < 1
        {
            return Err(rule(f("steps"), "must be >= 1"));
        }
        if let Some(d) = m.latent_dim
            && d < 1
        {
            return Err(rule(f("latent_dim"), "must be >= 1"));
        }
        if name.latent == LatentKind::Oracle && self.is_real_data() {
            return Err(rule(
                f("method"),
                "oracle methods need a synthetic world (real data has no true type per pair)",
            ));
        }
        Ok(name)
    }
}

impl ScenarioError {
    pub(crate) fn with_path(self, p: &Path) -> ScenarioError {
        match self {
            ScenarioError::Parse { message, .. } => ScenarioError::Parse {
                path: p.to_path_buf(),
                message,
            },
            ScenarioError::Invalid { field, rule, .. } => ScenarioError::Invalid {
                path: p.to_path_buf(),
                field,
                rule,
            },
            other => other,
        }
    }
}

/// A file's stem, the default scenario name (`scenario` when the path has none).
pub fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "scenario".to_string())
}

/// Read a scenario file as UTF-8 text. Bytes that are not UTF-8 are a parse error giving the
/// byte offset, line and column of the first bad byte.
pub fn read_text(path: &Path) -> Result<String, ScenarioError> {
    let bytes = std::fs::read(path).map_err(|source| ScenarioError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    text_of(bytes).map_err(|e| e.with_path(path))
}

/// The bytes as UTF-8 text, or a parse error locating the first invalid byte.
pub fn text_of(bytes: Vec<u8>) -> Result<String, ScenarioError> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let good = &e.as_bytes()[..at];
        let line = good.iter().filter(|b| **b == b'\n').count() + 1;
        let line_start = good.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&good[line_start..]).chars().count() + 1;
        ScenarioError::Parse {
            path: PathBuf::new(),
            message: format!(
                "not UTF-8 text: invalid byte 0x{:02x} at byte offset {at} (line {line}, column \
                 {column}); a scenario is a TOML text file",
                e.as_bytes()[at]
            ),
        }
    })
}

/// Smallest Dirichlet concentration a world accepts.
pub const MIN_CONCENTRATION: f64 = 1e-3;

impl WorldSpec {
    /// Check the world's rules.
    pub fn validate(&self) -> Result<(), RuleError> {
        let f = |name: &str| format!("world.{name}");
        if self.vocab < 2 {
            return Err(rule(f("vocab"), "must be >= 2"));
        }
        if self.prompt_len < 1 {
            return Err(rule(f("prompt_len"), "must be >= 1"));
        }
        if self.response_len < 1 {
            return Err(rule(f("response_len"), "must be >= 1"));
        }
        if let Some(m) = self.response_len_min
            && !(1..=self.response_len).contains(&m)
        {
            return Err(rule(
                f("response_len_min"),
                "must be in [1, world.response_len]",
            ));
        }
        if self.sources < 1 {
            return Err(rule(f("sources"), "must be >= 1"));
        }
        if self.types < 1 {
            return Err(rule(f("types"), "must be >= 1"));
        }
        let weights_ok =
            |w: &[f64]| w.iter().all(|x| *x >= 0.0 && x.is_finite()) && w.iter().sum::<f64>() > 0.0;
        if let Some(w) = &self.type_weights {
            if w.len() != self.types {
                return Err(rule(
                    f("type_weights"),
                    format!(
                        "must have world.types = {} entries, got {}",
                        self.types,
                        w.len()
                    ),
                ));
            }
            if !weights_ok(w) {
                return Err(rule(
                    f("type_weights"),
                    "must be finite, >= 0 and not all 0",
                ));
            }
        }
        if let Some(w) = &self.source_weights {
            if w.len() != self.sources {
                return Err(rule(
                    f("source_weights"),
                    format!(
                        "must have world.sources = {} entries, got {}",
                        self.sources,
                        w.len()
                    ),
                ));
            }
            if !weights_ok(w) {
                return Err(rule(
                    f("source_weights"),
                    "must be finite, >= 0 and not all 0",
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.coupling) {
            return Err(rule(f("coupling"), "must be in [0, 1]"));
        }
        if self.feature_dim < self.types {
            return Err(rule(
                f("feature_dim"),
                format!(
                    "must be >= world.types = {} (the simplex needs T - 1 dimensions beside the shared direction)",
                    self.types
                ),
            ));
        }
        if !(self.reward_scale >= 0.0 && self.reward_scale.is_finite()) {
            return Err(rule(f("reward_scale"), "must be finite and >= 0"));
        }
        if !(0.0..=1.0).contains(&self.distance) {
            return Err(rule(f("distance"), "must be in [0, 1]"));
        }
        if self.types == 1 && self.distance != 0.0 && self.type_weights.is_none() {
            // One type has no pairwise distance; accept any d but say nothing changes.
        }
        if let Some(l) = &self.length_weight {
            if l.len() != 1 && l.len() != self.types {
                return Err(rule(
                    f("length_weight"),
                    format!(
                        "must have 1 or world.types = {} entries, got {}",
                        self.types,
                        l.len()
                    ),
                ));
            }
            if !l.iter().all(|x| x.is_finite()) {
                return Err(rule(f("length_weight"), "must be finite"));
            }
        }
        if !(self.bt_temperature > 0.0 && self.bt_temperature.is_finite()) {
            return Err(rule(f("bt_temperature"), "must be > 0"));
        }
        // Dirichlet sampling is reliable down to small concentrations, not to subnormal ones;
        // 1e-3 already gives near one-hot distributions.
        if !(self.prompt_concentration >= MIN_CONCENTRATION
            && self.prompt_concentration.is_finite())
        {
            return Err(rule(
                f("prompt_concentration"),
                "must be finite and >= 0.001",
            ));
        }
        if !(self.markov_concentration >= MIN_CONCENTRATION
            && self.markov_concentration.is_finite())
        {
            return Err(rule(
                f("markov_concentration"),
                "must be finite and >= 0.001",
            ));
        }
        Ok(())
    }
}

impl ModelSpec {
    fn validate(&self) -> Result<(), RuleError> {
        if self.d_model < 1 {
            return Err(rule("model.d_model", "must be >= 1"));
        }
        if self.layers < 1 {
            return Err(rule("model.layers", "must be >= 1"));
        }
        if self.heads < 1 || !self.d_model.is_multiple_of(self.heads) {
            return Err(rule(
                "model.heads",
                format!("must be >= 1 and divide model.d_model = {}", self.d_model),
            ));
        }
        if self.d_ff() < 1 {
            return Err(rule("model.d_ff", "must be >= 1"));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(rule("model.dropout", "must be in [0, 1)"));
        }
        if !(self.warmup_lr > 0.0 && self.warmup_lr.is_finite()) {
            return Err(rule("model.warmup_lr", "must be > 0"));
        }
        if let Some(t) = &self.trainable {
            if self.pretrained.is_none() {
                return Err(rule(
                    "model.trainable",
                    "applies only with model.pretrained (a GGUF model file)",
                ));
            }
            if let Err(e) = crate::model::pretrained::Trainable::parse(t) {
                return Err(rule("model.trainable", e));
            }
        }
        if let Some(head) = self.train_head {
            if self.pretrained.is_none() {
                return Err(rule(
                    "model.train_head",
                    "applies only with model.pretrained (a GGUF model file)",
                ));
            }
            if !head && self.trainable() == Some(crate::model::pretrained::Trainable::All) {
                return Err(rule(
                    "model.train_head",
                    "false needs model.trainable = \"last:K\": with \"all\" the head is the \
                     tied input embedding and trains with it",
                ));
            }
        }
        Ok(())
    }

    /// What of the pretrained model trains (`model.trainable`, default `"all"`); `None` for the
    /// scratch policy. Call after validation.
    pub fn trainable(&self) -> Option<crate::model::pretrained::Trainable> {
        self.pretrained.as_ref()?;
        let t = self.trainable.as_deref().unwrap_or("all");
        crate::model::pretrained::Trainable::parse(t)
            .ok()
            .map(|t| t.with_head(self.train_head.unwrap_or(false)))
    }
}

impl TrainSpec {
    fn validate(&self) -> Result<(), RuleError> {
        if self.steps < 1 {
            return Err(rule("train.steps", "must be >= 1"));
        }
        if let Some(e) = self.epochs
            && e < 1
        {
            return Err(rule("train.epochs", "must be >= 1"));
        }
        if self.batch_size < 1 {
            return Err(rule("train.batch_size", "must be >= 1"));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(rule("train.lr", "must be > 0"));
        }
        if !(self.grad_clip >= 0.0 && self.grad_clip.is_finite()) {
            return Err(rule("train.grad_clip", "must be >= 0 (0 = off)"));
        }
        if self.eval_every < 1 {
            return Err(rule("train.eval_every", "must be >= 1"));
        }
        let dev = self.device.as_str();
        let cuda_ok = dev == "cuda"
            || dev
                .strip_prefix("cuda:")
                .is_some_and(|n| n.parse::<usize>().is_ok());
        if dev != "cpu" && !cuda_ok {
            return Err(rule(
                "train.device",
                format!("must be cpu, cuda or cuda:N, got '{dev}'"),
            ));
        }
        if dev == "cpu" && self.precision != Precision::F32 {
            return Err(rule(
                "train.precision",
                format!(
                    "'{}' needs a GPU (train.device = \"cuda\"): the CPU backend has no fast \
                     half-precision matmul; use \"f32\" on the CPU",
                    self.precision.as_str()
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(text: &str) -> (String, String) {
        match Scenario::from_toml_str(text, "t") {
            Err(ScenarioError::Invalid { field, rule, .. }) => (field, rule),
            other => panic!("expected a rule error, got {other:?}"),
        }
    }

    #[test]
    fn empty_file_takes_every_default() {
        let s = Scenario::from_toml_str("", "empty").unwrap();
        assert_eq!(s.name, "empty");
        assert_eq!(s.world().types, 2);
        assert_eq!(s.methods.len(), 2);
    }

    #[test]
    fn an_empty_or_comment_only_file_is_an_error() {
        for text in ["", "   \n", "# just a comment\n\n# another\n"] {
            match Scenario::from_file_text(text, "e") {
                Err(ScenarioError::Invalid { field, rule, .. }) => {
                    assert_eq!(field, "name");
                    assert!(rule.contains("empty"), "{rule}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
        assert_eq!(
            Scenario::from_file_text("name = \"d\"", "e").unwrap().name,
            "d"
        );
    }

    #[test]
    fn binary_garbage_names_the_byte_offset() {
        let mut bytes = b"name = \"x\"\n[world]\nvo".to_vec();
        bytes.extend([0xff, 0xfe, 0x00]);
        let e = text_of(bytes).unwrap_err().to_string();
        assert!(
            e.contains("byte offset 21") && e.contains("line 3, column 3") && e.contains("0xff"),
            "{e}"
        );
    }

    #[test]
    fn resolved_toml_round_trips() {
        let s = Scenario::from_toml_str(
            "[world]\ntypes = 3\nfeature_dim = 4\n[[methods]]\nmethod = \"lpc-simpo\"\ncodebook = 4\n",
            "rt",
        )
        .unwrap();
        let again = Scenario::from_toml_str(&s.to_toml().unwrap(), "other").unwrap();
        assert_eq!(again.to_toml().unwrap(), s.to_toml().unwrap());
        assert_eq!(again.name, "rt");
    }

    #[test]
    fn rules_name_their_field() {
        assert_eq!(invalid("[world]\ntypes = 0").0, "world.types");
        assert_eq!(invalid("[noise]\nflip_rate = 1.5").0, "noise.flip_rate");
        assert_eq!(invalid("[model]\nheads = 3").0, "model.heads");
        assert_eq!(
            invalid("[[methods]]\nmethod = \"dpo\"\ngamma = 1.0").0,
            "methods[0].gamma"
        );
        assert_eq!(
            invalid("[[methods]]\nmethod = \"xpo\"").0,
            "methods[0].method"
        );
        let (f, r) = invalid("[[methods]]\nmethod = \"dpo\"\n[[methods]]\nmethod = \"dpo\"");
        assert_eq!(f, "methods[1].label");
        assert!(r.contains("unique"));
        assert_eq!(invalid("[data]\nval_pairs = 0").0, "data.val_pairs");
        assert_eq!(
            invalid("[world]\nannotators = 10\n[data]\nheldout_annotators = 1.0").0,
            "data.heldout_annotators"
        );
        assert_eq!(
            invalid("[[methods]]\nmethod = \"dpo\"\ndiversity = 0.1").0,
            "methods[0].diversity"
        );
        assert_eq!(
            invalid("[[methods]]\nmethod = \"lpc-dpo\"\ndiversity = -1.0").0,
            "methods[0].diversity"
        );
        assert_eq!(
            invalid("[[methods]]\nmethod = \"lpc-dpo\"\ndiversity_until = 0.0").0,
            "methods[0].diversity_until"
        );
        let (f, r) = invalid("[data]\nheldout_annotators = 0.2");
        assert_eq!(f, "data.heldout_annotators");
        assert!(r.contains("annotators >= 2"), "{r}");
    }

    #[test]
    fn an_amended_scenario_is_checked_again() {
        // Oracle: the rule text of `validate_method`; an amendment that breaks a rule is refused
        // with the scenario's name, one that keeps them gives a checked scenario whose methods
        // resolve in order.
        let s = Scenario::from_toml_str("[[methods]]\nmethod = \"lpc-dpo\"\n", "t").unwrap();
        let err = s
            .clone()
            .amend(|s| s.methods[0].method = "nope".into())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("scenario 't': methods[0].method must be [lpc-|oracle-]"),
            "{err}"
        );
        let ok = s
            .amend(|s| s.methods.push(MethodSpec::named("oracle-ipo")))
            .unwrap();
        let names: Vec<String> = ok
            .resolved_methods()
            .iter()
            .map(|m| m.name.canonical())
            .collect();
        assert_eq!(names, ["lpc-dpo", "oracle-ipo"]);
    }

    #[test]
    fn checkpoint_selection_names() {
        let sel = |t: &str| {
            Scenario::from_toml_str(&format!("[train]\nselect = \"{t}\""), "t")
                .unwrap()
                .train
                .select
        };
        assert_eq!(sel("best-val"), CheckpointSelect::BestVal);
        assert_eq!(sel("best-val-loss"), CheckpointSelect::BestValLoss);
        // The pre-validation-split name reads as the validation-loss rule.
        assert_eq!(sel("best-eval-loss"), CheckpointSelect::BestValLoss);
        assert_eq!(sel("last"), CheckpointSelect::Last);
        assert_eq!(
            Scenario::from_toml_str("", "t").unwrap().train.select,
            CheckpointSelect::BestVal
        );
    }

    #[test]
    fn fusion_defaults_on_and_switches_off() {
        // Oracle: burn-cuda's own default (fusion on) when the field is absent.
        assert!(Scenario::from_toml_str("", "t").unwrap().train.fusion);
        let off = "[train]\ndevice = \"cuda\"\nfusion = false";
        assert!(!Scenario::from_toml_str(off, "t").unwrap().train.fusion);
        assert!(matches!(
            Scenario::from_toml_str("[train]\nfusion = \"off\"", "t"),
            Err(ScenarioError::Parse { .. })
        ));
    }

    #[test]
    fn the_head_trains_only_when_asked_or_with_every_parameter() {
        use crate::model::pretrained::Trainable;
        // Oracle: the field's documented default (false) and `all`, which always trains it.
        let model = |lines: &str| {
            let text = format!(
                "[model]\npretrained = \"m.gguf\"\n{lines}\n[[data.files]]\npath = \"x.jsonl\"\n\
                 format = \"hh-rlhf\"\ngroup = \"g\""
            );
            Scenario::from_toml_str(&text, "t")
                .unwrap()
                .model
                .trainable()
                .unwrap()
        };
        let last2 = |head| Trainable::Last { blocks: 2, head };
        assert_eq!(model("trainable = \"last:2\""), last2(false));
        let head = "trainable = \"last:2\"\ntrain_head = true";
        assert_eq!(model(head), last2(true));
        assert_eq!(model(""), Trainable::All);
        assert_eq!(model("train_head = true"), Trainable::All);
    }

    #[test]
    fn half_precision_needs_a_gpu_device() {
        let (field, why) = invalid("[train]\nprecision = \"bf16\"");
        assert_eq!(field, "train.precision");
        assert!(why.contains("needs a GPU") && why.contains("f32"), "{why}");
        assert_eq!(invalid("[train]\nprecision = \"f16\"").0, "train.precision");
        for p in ["bf16", "f16"] {
            let s = Scenario::from_toml_str(
                &format!("[train]\ndevice = \"cuda:1\"\nprecision = \"{p}\""),
                "t",
            )
            .unwrap();
            assert_eq!(s.train.precision.as_str(), p);
        }
        assert_eq!(
            Scenario::from_toml_str("", "t").unwrap().train.precision,
            Precision::F32
        );
        assert!(matches!(
            Scenario::from_toml_str("[train]\nprecision = \"fp8\"", "t"),
            Err(ScenarioError::Parse { .. })
        ));
    }

    #[test]
    fn unknown_key_reports_line_and_column() {
        match Scenario::from_toml_str("[world]\nvocabb = 3\n", "t") {
            Err(ScenarioError::Parse { message, .. }) => {
                assert!(message.contains("line 2"), "{message}");
                assert!(message.contains("vocabb"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn method_names_parse() {
        let p = |s| MethodName::parse(s).unwrap();
        assert_eq!(p("dpo").latent, LatentKind::None);
        assert_eq!(p("lpc-simpo").objective, ObjectiveKind::Simpo);
        assert_eq!(p("lpc-dpo-gaussian").latent, LatentKind::Gaussian);
        assert_eq!(p("oracle-ipo").latent, LatentKind::Oracle);
        for s in ["dpo", "lpc-rdpo", "lpc-ipo-gaussian", "oracle-cdpo"] {
            assert_eq!(p(s).canonical(), s);
        }
        assert!(MethodName::parse("lpc-").is_none());
    }

    #[test]
    fn coupling_gives_type_given_source() {
        let w: WorldSpec = toml::from_str("sources = 4\ntypes = 2\ncoupling = 0.5").unwrap();
        let m = w.type_given_source();
        assert_eq!(m[0], vec![0.75, 0.25]);
        assert_eq!(m[3], vec![0.25, 0.75]);
    }
}
