//! Preference pairs as token ids: the common currency between worlds, real-data loaders and
//! training.
//!
//! A [`PreferencePair`] is what every method trains on and is scored on. Synthetic worlds fill in
//! [`PairTruth`]; real data leaves it empty and carries only its group label. Token ids are
//! `u32` in `0..vocab`; the separator token that joins prompt and response is `vocab` (one past
//! the world's tokens), so a model's vocabulary is `vocab + 1`.
//!
//! This module knows nothing about losses or tensors.

pub mod batch;
pub mod context;
pub mod gguf_tokenizer;

use serde::{Deserialize, Serialize};

pub mod pairwise;
pub mod real;
pub mod tokenize;

/// One labelled comparison: `chosen` was preferred to `rejected` for `prompt`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreferencePair {
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// Preferred response (after any label flip: this is the observed label).
    pub chosen: Vec<u32>,
    /// Rejected response.
    pub rejected: Vec<u32>,
    /// True latent type (synthetic) or group label (real data), in `0..groups`.
    pub group: usize,
    /// Prompt source (synthetic) or origin file index (real data).
    pub source: usize,
    /// Annotator id (0 when the data has none).
    pub annotator: usize,
    /// Ground truth, known only in synthetic worlds.
    pub truth: Option<PairTruth>,
}

/// What a synthetic world knows about a pair.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairTruth {
    /// r_type(x, chosen): true reward of the observed chosen response under the pair's type.
    pub reward_chosen: f64,
    /// r_type(x, rejected).
    pub reward_rejected: f64,
    /// P(chosen > rejected) under the pair's type before any flip:
    /// sigmoid((r(chosen) - r(rejected)) / tau_bt).
    pub label_prob: f64,
    /// Whether the Bradley–Terry label was flipped by label noise.
    pub flipped: bool,
}

impl PairTruth {
    /// Noiseless type preference: 1 if the type truly prefers `chosen`, 0 if `rejected`,
    /// 0.5 on an exact tie (so accuracy against it gives half credit to either answer).
    pub fn noiseless_chosen_wins(&self) -> f64 {
        if self.reward_chosen > self.reward_rejected {
            1.0
        } else if self.reward_chosen < self.reward_rejected {
            0.0
        } else {
            0.5
        }
    }
}

/// A train/validation/held-out split plus what a model needs to know about the token space.
///
/// Methods train on `train`; checkpoint selection reads only `val`; `eval` (the held-out pairs)
/// is scored once, on the selected checkpoint. `val` may be empty (real data with fewer than ten
/// training pairs), and then selection keeps the last step.
#[derive(Debug, Clone)]
pub struct PreferenceData {
    /// Training pairs.
    pub train: Vec<PreferencePair>,
    /// Validation pairs (checkpoint selection only).
    pub val: Vec<PreferencePair>,
    /// Held-out pairs every score is computed on.
    pub eval: Vec<PreferencePair>,
    /// Number of content tokens; the separator is token `vocab`, so models use `vocab + 1`.
    pub vocab: usize,
    /// Number of groups (true types).
    pub groups: usize,
    /// Human-readable group names (`type0`, `helpful`, ...), length `groups`.
    pub group_names: Vec<String>,
    /// Longest prompt, in tokens.
    pub max_prompt_len: usize,
    /// Longest response, in tokens.
    pub max_response_len: usize,
    /// `Some(id)` when the text is rendered with a pretrained model's chat template: the
    /// template's own last prompt token (the newline after `<|im_start|>assistant`) then closes
    /// each prompt, so the separator is a token of the model's vocabulary. `None`: the
    /// separator is the extra token `vocab`.
    pub chat_separator: Option<u32>,
}

impl PreferenceData {
    /// Separator token id joining prompt and response.
    pub fn separator(&self) -> u32 {
        self.chat_separator.unwrap_or(self.vocab as u32)
    }
    /// Vocabulary size a model must cover (content tokens plus the separator, unless the
    /// separator is one of them).
    pub fn model_vocab(&self) -> usize {
        if self.chat_separator.is_some() {
            self.vocab
        } else {
            self.vocab + 1
        }
    }
    /// Longest `[prompt, separator, response]` sequence.
    pub fn max_seq_len(&self) -> usize {
        self.max_prompt_len + 1 + self.max_response_len
    }
}
