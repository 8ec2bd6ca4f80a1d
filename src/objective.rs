//! Preference objectives: per-pair log-probabilities in, unreduced per-pair losses and detached
//! implicit rewards out; and the LPC wrapper that adds `lambda * KL(q || p)` to any of them.
//!
//! Owns: the loss formulas of DPO, IPO, SimPO, conservative DPO and robust DPO (METHOD.md §1),
//! what each declares it needs (a reference model or not, summed or mean-per-token
//! log-probabilities), the closed [`Objective`] set that scenario files can name, the [`Lpc`]
//! wrapper, and the exact categorical and diagonal-Gaussian KL divergences.
//!
//! Does not own: parameters, models, optimisers or reductions. Every tensor here has shape
//! `[batch]` (one entry per pair) unless stated; the training loop computes the log-probabilities
//! (the model's job), reduces the losses (usually a mean) and steps the optimiser.
//!
//! Variable names follow the reference DPO trainer (`policy_chosen_logps`,
//! `reference_rejected_logps`, `chosen_rewards`), so each line can be checked against the papers.
//! All log-sigmoids go through [`log_sigmoid`], which is stable for any finite input, so every
//! loss here is finite for log-ratio margins of ±1e4 in `f32`.

use burn::tensor::Tensor;
use burn::tensor::activation::{log_sigmoid, log_softmax, softmax};
use burn::tensor::backend::Backend;

use crate::scenario::{ObjectiveKind, ResolvedMethod};

/// Which log-probability of a response an objective consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogpForm {
    /// `log pi(y|x) = sum_t log pi(y_t | x, y_<t)` over response tokens (DPO, IPO, cDPO, rDPO).
    Sum,
    /// `(1/|y|) log pi(y|x)`, the length-normalised form (SimPO).
    MeanPerToken,
}

/// Per-pair log-probabilities, each of shape `[batch]`, in the [`LogpForm`] the objective
/// declares. The reference entries are `None` for reference-free objectives (SimPO).
///
/// Objectives detach the reference log-probabilities before use, so the reference never receives
/// a gradient through a loss even if the caller forgot to compute it without tracking.
#[derive(Debug, Clone)]
pub struct PairLogps<B: Backend> {
    /// `log pi(y_w | x)` (or `| x, z` under LPC).
    pub policy_chosen_logps: Tensor<B, 1>,
    /// `log pi(y_l | x)` (or `| x, z` under LPC).
    pub policy_rejected_logps: Tensor<B, 1>,
    /// `log pi_ref(y_w | x)`.
    pub reference_chosen_logps: Option<Tensor<B, 1>>,
    /// `log pi_ref(y_l | x)`.
    pub reference_rejected_logps: Option<Tensor<B, 1>>,
}

impl<B: Backend> PairLogps<B> {
    /// Log-probabilities of the policy and the frozen reference.
    pub fn with_reference(
        policy_chosen_logps: Tensor<B, 1>,
        policy_rejected_logps: Tensor<B, 1>,
        reference_chosen_logps: Tensor<B, 1>,
        reference_rejected_logps: Tensor<B, 1>,
    ) -> Self {
        PairLogps {
            policy_chosen_logps,
            policy_rejected_logps,
            reference_chosen_logps: Some(reference_chosen_logps),
            reference_rejected_logps: Some(reference_rejected_logps),
        }
    }

    /// Log-probabilities of the policy only (reference-free objectives).
    pub fn reference_free(
        policy_chosen_logps: Tensor<B, 1>,
        policy_rejected_logps: Tensor<B, 1>,
    ) -> Self {
        PairLogps {
            policy_chosen_logps,
            policy_rejected_logps,
            reference_chosen_logps: None,
            reference_rejected_logps: None,
        }
    }

    /// Number of pairs.
    pub fn batch_size(&self) -> usize {
        self.policy_chosen_logps.dims()[0]
    }

    /// The policy/reference log-ratios of the chosen and the rejected response,
    /// `log pi(y_w|x) - log pi_ref(y_w|x)` and `log pi(y_l|x) - log pi_ref(y_l|x)`, with the
    /// reference detached.
    ///
    /// # Panics
    /// If a reference entry is `None`: an objective that declares
    /// [`PreferenceObjective::needs_reference`] was called without one, a bug in the caller.
    fn logratios(&self, objective: &str) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let missing = || -> ! {
            panic!(
                "{objective} needs reference log-probabilities (needs_reference() is true) \
                 but PairLogps has none"
            )
        };
        let rc = self
            .reference_chosen_logps
            .clone()
            .unwrap_or_else(|| missing());
        let rr = self
            .reference_rejected_logps
            .clone()
            .unwrap_or_else(|| missing());
        (
            self.policy_chosen_logps.clone() - rc.detach(),
            self.policy_rejected_logps.clone() - rr.detach(),
        )
    }
}

/// What an objective returns for a batch of pairs. All tensors have shape `[batch]`.
#[derive(Debug, Clone)]
pub struct ObjectiveOutput<B: Backend> {
    /// Unreduced per-pair losses (tracked: reduce and call `backward` on them).
    pub losses: Tensor<B, 1>,
    /// Detached implicit reward of the chosen response (`beta log pi/pi_ref`; SimPO:
    /// `beta * mean log pi`). Preference accuracy compares it with `rejected_rewards`.
    pub chosen_rewards: Tensor<B, 1>,
    /// Detached implicit reward of the rejected response.
    pub rejected_rewards: Tensor<B, 1>,
}

/// A pairwise preference objective written as a loss on per-pair log-probabilities.
///
/// The training loop asks [`needs_reference`](Self::needs_reference) and
/// [`logp_form`](Self::logp_form) to know what to compute; it never matches on names.
pub trait PreferenceObjective {
    /// Whether [`PairLogps`] must carry reference log-probabilities.
    fn needs_reference(&self) -> bool;
    /// Whether the log-probabilities are summed or mean-per-token.
    fn logp_form(&self) -> LogpForm;
    /// Unreduced per-pair losses and detached implicit rewards.
    ///
    /// # Panics
    /// If [`needs_reference`](Self::needs_reference) is true and `logps` has no reference.
    fn loss<B: Backend>(&self, logps: &PairLogps<B>) -> ObjectiveOutput<B>;
}

/// The DPO logit margin `h` and the implicit rewards `beta * log-ratio` (detached).
fn margin_and_rewards<B: Backend>(
    logps: &PairLogps<B>,
    beta: f64,
    name: &str,
) -> (Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>) {
    let (chosen_logratios, rejected_logratios) = logps.logratios(name);
    let chosen_rewards = chosen_logratios.clone().detach().mul_scalar(beta);
    let rejected_rewards = rejected_logratios.clone().detach().mul_scalar(beta);
    (
        chosen_logratios - rejected_logratios,
        chosen_rewards,
        rejected_rewards,
    )
}

/// Direct Preference Optimization (Rafailov et al., NeurIPS 2023, eq. 7).
///
/// ```text
/// h    = [log pi(y_w|x) - log pi_ref(y_w|x)] - [log pi(y_l|x) - log pi_ref(y_l|x)]
/// loss = -log sigmoid(beta * h)                       range (0, inf); ln 2 at h = 0
/// rewards: beta * (log pi(y|x) - log pi_ref(y|x))
/// ```
/// `beta > 0` (validated by the scenario).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dpo {
    /// Inverse temperature on the log-ratio margin, `> 0`.
    pub beta: f64,
}

impl PreferenceObjective for Dpo {
    fn needs_reference(&self) -> bool {
        true
    }
    fn logp_form(&self) -> LogpForm {
        LogpForm::Sum
    }
    fn loss<B: Backend>(&self, logps: &PairLogps<B>) -> ObjectiveOutput<B> {
        let (h, chosen_rewards, rejected_rewards) = margin_and_rewards(logps, self.beta, "DPO");
        ObjectiveOutput {
            losses: log_sigmoid(h.mul_scalar(self.beta)).neg(),
            chosen_rewards,
            rejected_rewards,
        }
    }
}

/// Identity Preference Optimisation (Azar et al., AISTATS 2024: the sampled IPO loss).
///
/// ```text
/// loss = (h - 1/(2 beta))^2                           range [0, inf); h as in DPO
/// rewards: beta * (log pi(y|x) - log pi_ref(y|x))
/// ```
/// Uses summed log-probabilities as in the paper (TRL's `ipo` averages per token instead).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ipo {
    /// Regularisation strength: the target margin is `1/(2 beta)`.
    pub beta: f64,
}

impl PreferenceObjective for Ipo {
    fn needs_reference(&self) -> bool {
        true
    }
    fn logp_form(&self) -> LogpForm {
        LogpForm::Sum
    }
    fn loss<B: Backend>(&self, logps: &PairLogps<B>) -> ObjectiveOutput<B> {
        let (h, chosen_rewards, rejected_rewards) = margin_and_rewards(logps, self.beta, "IPO");
        ObjectiveOutput {
            losses: h.sub_scalar(1.0 / (2.0 * self.beta)).square(),
            chosen_rewards,
            rejected_rewards,
        }
    }
}

/// Simple Preference Optimization (Meng et al., NeurIPS 2024): reference-free and
/// length-normalised. It consumes mean-per-token log-probabilities `m = log pi(y|x) / |y|`.
///
/// ```text
/// loss = -log sigmoid(beta * m_w - beta * m_l - gamma)   range (0, inf)
/// rewards: beta * m
/// ```
/// `beta > 0`; `gamma` is the target reward margin (any finite value).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Simpo {
    /// Scale of the length-normalised rewards, `> 0`.
    pub beta: f64,
    /// Target reward margin.
    pub gamma: f64,
}

impl PreferenceObjective for Simpo {
    fn needs_reference(&self) -> bool {
        false
    }
    fn logp_form(&self) -> LogpForm {
        LogpForm::MeanPerToken
    }
    fn loss<B: Backend>(&self, logps: &PairLogps<B>) -> ObjectiveOutput<B> {
        let chosen = logps.policy_chosen_logps.clone().mul_scalar(self.beta);
        let rejected = logps.policy_rejected_logps.clone().mul_scalar(self.beta);
        let chosen_rewards = chosen.clone().detach();
        let rejected_rewards = rejected.clone().detach();
        ObjectiveOutput {
            losses: log_sigmoid((chosen - rejected).sub_scalar(self.gamma)).neg(),
            chosen_rewards,
            rejected_rewards,
        }
    }
}

/// Conservative DPO: DPO with label smoothing `eps`, the cross-entropy against a label that is
/// right with probability `1 - eps` (Mitchell 2023, "A note on DPO with noisy preferences").
///
/// ```text
/// loss = -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h)    range (0, inf)
/// rewards: beta * (log pi(y|x) - log pi_ref(y|x))
/// ```
/// `eps` in `[0, 0.5)`; `eps = 0` is DPO.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConservativeDpo {
    /// Inverse temperature, as in DPO.
    pub beta: f64,
    /// Assumed label-flip rate, in `[0, 0.5)`.
    pub eps: f64,
}

impl PreferenceObjective for ConservativeDpo {
    fn needs_reference(&self) -> bool {
        true
    }
    fn logp_form(&self) -> LogpForm {
        LogpForm::Sum
    }
    fn loss<B: Backend>(&self, logps: &PairLogps<B>) -> ObjectiveOutput<B> {
        let (h, chosen_rewards, rejected_rewards) = margin_and_rewards(logps, self.beta, "cDPO");
        let logits = h.mul_scalar(self.beta);
        let agree = log_sigmoid(logits.clone()).mul_scalar(-(1.0 - self.eps));
        let disagree = log_sigmoid(logits.neg()).mul_scalar(-self.eps);
        ObjectiveOutput {
            losses: agree + disagree,
            chosen_rewards,
            rejected_rewards,
        }
    }
}

/// Robust DPO (Chowdhury, Kini, Natarajan, ICML 2024): an unbiased estimate of the clean
/// DPO loss under labels flipped with known rate `eps`.
///
/// ```text
/// l(t) = -log sigmoid(t)
/// loss = [(1 - eps) l(beta h) - eps l(-beta h)] / (1 - 2 eps)   range: all reals (may be < 0)
/// rewards: beta * (log pi(y|x) - log pi_ref(y|x))
/// ```
/// `eps` in `[0, 0.5)`; `eps = 0` is DPO.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RobustDpo {
    /// Inverse temperature, as in DPO.
    pub beta: f64,
    /// Assumed label-flip rate, in `[0, 0.5)`.
    pub eps: f64,
}

impl PreferenceObjective for RobustDpo {
    fn needs_reference(&self) -> bool {
        true
    }
    fn logp_form(&self) -> LogpForm {
        LogpForm::Sum
    }
    fn loss<B: Backend>(&self, logps: &PairLogps<B>) -> ObjectiveOutput<B> {
        let (h, chosen_rewards, rejected_rewards) = margin_and_rewards(logps, self.beta, "rDPO");
        let logits = h.mul_scalar(self.beta);
        let scale = 1.0 / (1.0 - 2.0 * self.eps);
        // (1-eps) l(t) = -(1-eps) log sigmoid(t);  -eps l(-t) = +eps log sigmoid(-t)
        let clean = log_sigmoid(logits.clone()).mul_scalar(-(1.0 - self.eps) * scale);
        let flipped = log_sigmoid(logits.neg()).mul_scalar(self.eps * scale);
        ObjectiveOutput {
            losses: clean + flipped,
            chosen_rewards,
            rejected_rewards,
        }
    }
}

/// The closed set of base objectives a scenario can name; dispatch is an exhaustive `match`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Objective {
    /// DPO.
    Dpo(Dpo),
    /// IPO.
    Ipo(Ipo),
    /// SimPO.
    Simpo(Simpo),
    /// Conservative DPO.
    ConservativeDpo(ConservativeDpo),
    /// Robust DPO.
    RobustDpo(RobustDpo),
}

impl Objective {
    /// The base objective of a resolved scenario method, with its `beta`, `gamma`, `eps`.
    /// (The latent part of the method — LPC, Gaussian, oracle — is [`Lpc::from_method`]'s
    /// and the model's concern.)
    pub fn from_method(method: &ResolvedMethod) -> Objective {
        let beta = method.beta;
        match method.name.objective {
            ObjectiveKind::Dpo => Objective::Dpo(Dpo { beta }),
            ObjectiveKind::Ipo => Objective::Ipo(Ipo { beta }),
            ObjectiveKind::Simpo => Objective::Simpo(Simpo {
                beta,
                gamma: method.gamma,
            }),
            ObjectiveKind::Cdpo => Objective::ConservativeDpo(ConservativeDpo {
                beta,
                eps: method.eps,
            }),
            ObjectiveKind::Rdpo => Objective::RobustDpo(RobustDpo {
                beta,
                eps: method.eps,
            }),
        }
    }

    /// The scenario name of the objective (`dpo`, `ipo`, `simpo`, `cdpo`, `rdpo`).
    pub fn kind(&self) -> ObjectiveKind {
        match self {
            Objective::Dpo(_) => ObjectiveKind::Dpo,
            Objective::Ipo(_) => ObjectiveKind::Ipo,
            Objective::Simpo(_) => ObjectiveKind::Simpo,
            Objective::ConservativeDpo(_) => ObjectiveKind::Cdpo,
            Objective::RobustDpo(_) => ObjectiveKind::Rdpo,
        }
    }
}

impl PreferenceObjective for Objective {
    fn needs_reference(&self) -> bool {
        match self {
            Objective::Dpo(o) => o.needs_reference(),
            Objective::Ipo(o) => o.needs_reference(),
            Objective::Simpo(o) => o.needs_reference(),
            Objective::ConservativeDpo(o) => o.needs_reference(),
            Objective::RobustDpo(o) => o.needs_reference(),
        }
    }
    fn logp_form(&self) -> LogpForm {
        match self {
            Objective::Dpo(o) => o.logp_form(),
            Objective::Ipo(o) => o.logp_form(),
            Objective::Simpo(o) => o.logp_form(),
            Objective::ConservativeDpo(o) => o.logp_form(),
            Objective::RobustDpo(o) => o.logp_form(),
        }
    }
    fn loss<B: Backend>(&self, logps: &PairLogps<B>) -> ObjectiveOutput<B> {
        match self {
            Objective::Dpo(o) => o.loss(logps),
            Objective::Ipo(o) => o.loss(logps),
            Objective::Simpo(o) => o.loss(logps),
            Objective::ConservativeDpo(o) => o.loss(logps),
            Objective::RobustDpo(o) => o.loss(logps),
        }
    }
}

/// Exact KL divergence between two categoricals given by logits, per row.
///
/// ```text
/// q = softmax(q_logits), p = softmax(p_logits)          shapes [batch, K] -> [batch]
/// KL(q || p) = sum_k q_k (log q_k - log p_k)            range [0, inf); 0 iff q = p
/// ```
/// Computed from `log_softmax`, so it is finite for any finite logits (a `q_k` that underflows
/// to 0 contributes 0). Rounding can leave values a few ulps below 0 when `q = p`.
pub fn categorical_kl<B: Backend>(q_logits: Tensor<B, 2>, p_logits: Tensor<B, 2>) -> Tensor<B, 1> {
    let log_q = log_softmax(q_logits, 1);
    let log_p = log_softmax(p_logits, 1);
    let q = log_q.clone().exp();
    (q * (log_q - log_p)).sum_dim(1).squeeze_dim(1)
}

/// KL divergence between diagonal Gaussians given by means and log-variances, per row.
///
/// ```text
/// q = N(mu_q, diag exp(logvar_q)), p = N(mu_p, diag exp(logvar_p))   shapes [batch, D] -> [batch]
/// KL(q || p) = 1/2 sum_d [ logvar_p - logvar_q
///                          + (exp(logvar_q) + (mu_q - mu_p)^2) / exp(logvar_p) - 1 ]
/// ```
/// Range `[0, inf)`, 0 iff the two are equal. For a standard-normal prior pass zeros for
/// `mu_p` and `logvar_p`.
pub fn gaussian_kl<B: Backend>(
    mu_q: Tensor<B, 2>,
    logvar_q: Tensor<B, 2>,
    mu_p: Tensor<B, 2>,
    logvar_p: Tensor<B, 2>,
) -> Tensor<B, 1> {
    let inv_var_p = logvar_p.clone().neg().exp();
    let mean_term = (mu_q - mu_p).square();
    let terms = (logvar_p - logvar_q.clone()) + (logvar_q.exp() + mean_term) * inv_var_p;
    terms
        .sub_scalar(1.0)
        .sum_dim(1)
        .squeeze_dim(1)
        .mul_scalar(0.5)
}

/// Latent Preference Coding (Gong et al., ICML 2025): any base objective evaluated on
/// log-probabilities computed under a code `z ~ q`, plus a weighted KL between the posterior
/// `q(z | x, y_w > y_l)` and the prior `p(z | x)` (the negative ELBO when `lambda = 1`).
///
/// ```text
/// kl_i      = KL(q_i || p_i)                       (categorical, or diagonal Gaussian)
/// penalty_i = max(kl_i, free_bits)                 per pair; free_bits = 0 is the plain KL
/// loss_i    = base_loss_i(logps under z) + lambda_now * penalty_i
/// ```
/// Free bits (after Kingma et al. 2016, applied here per pair rather than per latent group):
/// while a pair's KL is below `free_bits` nats, the penalty is the constant `free_bits` and gives
/// the posterior and prior no gradient, so the posterior may carry that much information for
/// free. `lambda` is the configured full weight; [`Lpc::loss`] takes the weight for the current
/// step, `lambda_now` (see [`Lpc::lambda_at`] for the warm-up).
///
/// With `K = 1` code, `q = p = [1]`, every KL is exactly 0, and with `lambda_now = 0` the loss
/// equals the base objective's bit for bit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lpc<O> {
    /// The base objective evaluated under the code.
    pub base: O,
    /// KL weight at full strength, `>= 0` (1 is the true ELBO; the paper searched 0.01–0.1).
    pub lambda: f64,
    /// Free-bits floor in nats, `>= 0` (0: off).
    pub free_bits: f64,
}

/// The code-diversity penalty on a batch's posterior logits `[N, K]` (wav2vec 2.0's diversity
/// loss for a Gumbel codebook): one minus the normalised entropy of the batch-mean posterior,
///
/// ```text
/// qbar = (1/N) sum_n softmax(logits_n)
/// L_div = 1 - H(qbar) / ln K            in [0, 1]; 0 when the batch uses every code equally
/// ```
///
/// It is 1 when every pair puts all its mass on the same code, whatever that code, so adding it
/// (with a small weight, early in training) pushes a posterior that is drifting into one code
/// back toward using several, without saying which pair goes where. A `[1]` tracked tensor; 0
/// with `K = 1`.
pub fn code_diversity_loss<B: Backend>(logits: Tensor<B, 2>) -> Tensor<B, 1> {
    let [_, k] = logits.dims();
    let mean = softmax(logits, 1).mean_dim(0); // [1, K]
    if k <= 1 {
        return mean.sum().mul_scalar(0.0);
    }
    let entropy = mean.clone().mul(mean.clamp_min(1e-12).log()).sum().neg();
    entropy.div_scalar(-(k as f64).ln()).add_scalar(1.0)
}

/// The KL weight after a linear warm-up from 0 over the first `warmup_fraction` of training,
/// `lambda * min(1, progress / warmup_fraction)` (just `lambda` when `warmup_fraction <= 0`);
/// the one statement of the rule, used by [`Lpc::lambda_at`] and the training schedule.
pub fn warmed_up_lambda(lambda: f64, progress: f64, warmup_fraction: f64) -> f64 {
    if warmup_fraction > 0.0 {
        lambda * (progress / warmup_fraction).clamp(0.0, 1.0)
    } else {
        lambda
    }
}

/// What [`Lpc::loss`] returns. `[batch]` tensors unless stated.
#[derive(Debug, Clone)]
pub struct LpcOutput<B: Backend> {
    /// Unreduced per-pair `base_loss + lambda_now * max(kl, free_bits)` (tracked).
    pub losses: Tensor<B, 1>,
    /// The base objective's per-pair losses under z (detached).
    pub base_losses: Tensor<B, 1>,
    /// Per-pair `KL(q || p)` in nats, before free bits (detached): the posterior-collapse signal.
    pub kl: Tensor<B, 1>,
    /// Detached implicit rewards of the base objective under z.
    pub chosen_rewards: Tensor<B, 1>,
    /// Detached implicit rewards of the rejected responses under z.
    pub rejected_rewards: Tensor<B, 1>,
    /// `softmax(posterior_logits)`, `[batch, K]` (detached).
    pub posterior_probs: Tensor<B, 2>,
    /// `softmax(prior_logits)`, `[batch, K]` (detached).
    pub prior_probs: Tensor<B, 2>,
}

/// What [`Lpc::loss_gaussian`] returns: as [`LpcOutput`] without code probabilities.
#[derive(Debug, Clone)]
pub struct GaussianLpcOutput<B: Backend> {
    /// Unreduced per-pair `base_loss + lambda_now * max(kl, free_bits)` (tracked).
    pub losses: Tensor<B, 1>,
    /// The base objective's per-pair losses under z (detached).
    pub base_losses: Tensor<B, 1>,
    /// Per-pair Gaussian `KL(q || p)` in nats, before free bits (detached).
    pub kl: Tensor<B, 1>,
    /// Detached implicit rewards of the chosen responses under z.
    pub chosen_rewards: Tensor<B, 1>,
    /// Detached implicit rewards of the rejected responses under z.
    pub rejected_rewards: Tensor<B, 1>,
}

impl Lpc<Objective> {
    /// LPC around the method's base objective, with its `lambda` and `free_bits`.
    pub fn from_method(method: &ResolvedMethod) -> Lpc<Objective> {
        Lpc {
            base: Objective::from_method(method),
            lambda: method.lambda,
            free_bits: method.free_bits,
        }
    }
}

impl<O: PreferenceObjective> Lpc<O> {
    /// Whether the base objective needs reference log-probabilities.
    pub fn needs_reference(&self) -> bool {
        self.base.needs_reference()
    }

    /// The log-probability form the base objective consumes.
    pub fn logp_form(&self) -> LogpForm {
        self.base.logp_form()
    }

    /// The KL weight after a linear warm-up from 0 over the first `warmup_fraction` of training.
    ///
    /// ```text
    /// lambda_at(progress) = lambda * min(1, progress / warmup_fraction)   (warmup_fraction > 0)
    ///                     = lambda                                         (warmup_fraction <= 0)
    /// ```
    /// `progress` is the fraction of training done, in `[0, 1]`.
    pub fn lambda_at(&self, progress: f64, warmup_fraction: f64) -> f64 {
        warmed_up_lambda(self.lambda, progress, warmup_fraction)
    }

    /// Add the weighted, free-bits-floored KL to the base loss.
    fn combine<B: Backend>(
        &self,
        logps_under_z: &PairLogps<B>,
        kl: Tensor<B, 1>,
        lambda_now: f64,
    ) -> (ObjectiveOutput<B>, Tensor<B, 1>, Tensor<B, 1>) {
        let base = self.base.loss(logps_under_z);
        // With free_bits = 0 the raw KL is used, so its gradient is exact even where rounding
        // leaves it a few ulps below 0.
        let penalty = if self.free_bits > 0.0 {
            kl.clone().clamp_min(self.free_bits)
        } else {
            kl.clone()
        };
        let losses = base.losses.clone() + penalty.mul_scalar(lambda_now);
        (base, losses, kl.detach())
    }

    /// The LPC loss with a categorical code.
    ///
    /// `logps_under_z`: the base objective's inputs, with the policy conditioned on the sampled
    /// code; `posterior_logits`, `prior_logits`: `[batch, K]` logits of `q(z|x, y_w > y_l)` and
    /// `p(z|x)`; `lambda_now`: the KL weight for this step.
    pub fn loss<B: Backend>(
        &self,
        logps_under_z: &PairLogps<B>,
        posterior_logits: Tensor<B, 2>,
        prior_logits: Tensor<B, 2>,
        lambda_now: f64,
    ) -> LpcOutput<B> {
        let posterior_probs = softmax(posterior_logits.clone().detach(), 1);
        let prior_probs = softmax(prior_logits.clone().detach(), 1);
        let kl = categorical_kl(posterior_logits, prior_logits);
        let (base, losses, kl) = self.combine(logps_under_z, kl, lambda_now);
        LpcOutput {
            losses,
            base_losses: base.losses.detach(),
            kl,
            chosen_rewards: base.chosen_rewards,
            rejected_rewards: base.rejected_rewards,
            posterior_probs,
            prior_probs,
        }
    }

    /// The LPC loss with a continuous diagonal-Gaussian latent (the VPL-style ablation):
    /// posterior `N(mu_q, exp(logvar_q))`, prior `N(mu_p, exp(logvar_p))`, all `[batch, D]`
    /// (for a standard-normal prior pass zeros as `mu_p` and `logvar_p`).
    pub fn loss_gaussian<B: Backend>(
        &self,
        logps_under_z: &PairLogps<B>,
        mu_q: Tensor<B, 2>,
        logvar_q: Tensor<B, 2>,
        mu_p: Tensor<B, 2>,
        logvar_p: Tensor<B, 2>,
        lambda_now: f64,
    ) -> GaussianLpcOutput<B> {
        let kl = gaussian_kl(mu_q, logvar_q, mu_p, logvar_p);
        let (base, losses, kl) = self.combine(logps_under_z, kl, lambda_now);
        GaussianLpcOutput {
            losses,
            base_losses: base.losses.detach(),
            kl,
            chosen_rewards: base.chosen_rewards,
            rejected_rewards: base.rejected_rewards,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_diversity_loss_closed_forms() {
        // Oracle: 1 - H(qbar)/ln K by hand. Uniform use of K codes gives 0; every pair on the
        // same code gives 1; two pairs one-hot on two of four codes give 1 - ln 2 / ln 4 = 1/2.
        type B = crate::model::CpuBackend;
        let device = Default::default();
        let value = |rows: Vec<f32>, k: usize| -> f64 {
            let n = rows.len() / k;
            let t = Tensor::<B, 2>::from_data(burn::tensor::TensorData::new(rows, [n, k]), &device);
            f64::from(code_diversity_loss(t).into_scalar())
        };
        let big = 40.0f32;
        assert!(value(vec![0.0; 8], 4).abs() < 1e-6);
        assert!((value(vec![big, 0.0, 0.0, 0.0, big, 0.0, 0.0, 0.0], 4) - 1.0).abs() < 1e-5);
        assert!((value(vec![big, 0.0, 0.0, 0.0, 0.0, big, 0.0, 0.0], 4) - 0.5).abs() < 1e-5);
        assert_eq!(value(vec![3.0, -1.0], 1), 0.0);
    }
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{DType, TensorData};
    use proptest::prelude::*;

    /// Flex stores and computes `f64` tensors when asked for `DType::F64` (checked: forward,
    /// log_sigmoid, log_softmax and backward all stay in F64), so the known-value and gradient
    /// tests run in double precision.
    type AB = Autodiff<Flex>;

    fn t64(v: &[f64]) -> Tensor<AB, 1> {
        Tensor::from_data(
            TensorData::new(v.to_vec(), [v.len()]),
            (&Default::default(), DType::F64),
        )
    }

    fn m64(v: &[f64], rows: usize) -> Tensor<AB, 2> {
        Tensor::from_data(
            TensorData::new(v.to_vec(), [rows, v.len() / rows]),
            (&Default::default(), DType::F64),
        )
    }

    fn t32(v: &[f32]) -> Tensor<AB, 1> {
        Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), &Default::default())
    }

    fn m32(v: &[f32], rows: usize) -> Tensor<AB, 2> {
        Tensor::from_data(
            TensorData::new(v.to_vec(), [rows, v.len() / rows]),
            &Default::default(),
        )
    }

    fn vals<Bk: Backend, const D: usize>(t: Tensor<Bk, D>) -> Vec<f64> {
        t.into_data().convert::<f64>().to_vec().unwrap()
    }

    fn assert_close(got: &[f64], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tol * w.abs().max(1.0),
                "entry {i}: got {g}, want {w} (all: {got:?})"
            );
        }
    }

    // Three pairs with DPO margins h = 4, 0, -4 (chosen > rejected, equal, reversed):
    //   pair 0: (pc - rc) - (pr - rr) = (-10 + 12) - (-15 + 13) =  2 - (-2) =  4
    //   pair 1: (-13 + 13) - (-13 + 13)                          =  0 -   0  =  0
    //   pair 2: (-14 + 12) - (-11 + 13)                          = -2 -   2  = -4
    const PC: [f64; 3] = [-10.0, -13.0, -14.0];
    const RC: [f64; 3] = [-12.0, -13.0, -12.0];
    const PR: [f64; 3] = [-15.0, -13.0, -11.0];
    const RR: [f64; 3] = [-13.0, -13.0, -13.0];

    fn three_pairs() -> PairLogps<AB> {
        PairLogps::with_reference(t64(&PC), t64(&PR), t64(&RC), t64(&RR))
    }

    // softplus values used below, sp(x) = ln(1 + e^x) = -log sigmoid(-x), and sp(x) = x + sp(-x):
    //   sp(-0.4) = ln(1 + 0.670320046) = 0.513015252400   sp(0.4) = 0.4 + 0.5130152524 = 0.9130152524
    //   sp(-2)   = ln(1 + 0.135335283) = 0.126928011043   sp(2)   = 2 + 0.1269280110   = 2.1269280110
    //   sp(0)    = ln 2                = 0.693147180560
    const SP_M04: f64 = 0.513_015_252_400;
    const SP_P04: f64 = 0.913_015_252_400;
    const SP_M2: f64 = 0.126_928_011_043;
    const SP_P2: f64 = 2.126_928_011_043;
    const LN2: f64 = std::f64::consts::LN_2;

    #[test]
    fn dpo_known_values() {
        // loss = -log sigmoid(beta h) = sp(-beta h).
        // beta = 0.1: beta h = 0.4, 0, -0.4  -> sp(-0.4), ln 2, sp(0.4)
        let out = Dpo { beta: 0.1 }.loss(&three_pairs());
        assert_close(&vals(out.losses), &[SP_M04, LN2, SP_P04], 1e-11);
        // rewards beta (pc - rc) = 0.1 * [2, 0, -2]; beta (pr - rr) = 0.1 * [-2, 0, 2]
        assert_close(&vals(out.chosen_rewards), &[0.2, 0.0, -0.2], 1e-12);
        assert_close(&vals(out.rejected_rewards), &[-0.2, 0.0, 0.2], 1e-12);
        // beta = 0.5: beta h = 2, 0, -2 -> sp(-2), ln 2, sp(2)
        let out = Dpo { beta: 0.5 }.loss(&three_pairs());
        assert_close(&vals(out.losses), &[SP_M2, LN2, SP_P2], 1e-11);
        assert_close(&vals(out.chosen_rewards), &[1.0, 0.0, -1.0], 1e-12);
    }

    #[test]
    fn ipo_known_values() {
        // loss = (h - 1/(2 beta))^2.
        // beta = 0.1: 1/(2 beta) = 5 -> (4-5)^2 = 1, (0-5)^2 = 25, (-4-5)^2 = 81
        let out = Ipo { beta: 0.1 }.loss(&three_pairs());
        assert_close(&vals(out.losses), &[1.0, 25.0, 81.0], 1e-12);
        // beta = 0.5: 1/(2 beta) = 1 -> (4-1)^2 = 9, (0-1)^2 = 1, (-4-1)^2 = 25
        let out = Ipo { beta: 0.5 }.loss(&three_pairs());
        assert_close(&vals(out.losses), &[9.0, 1.0, 25.0], 1e-12);
        assert_close(&vals(out.rejected_rewards), &[-1.0, 0.0, 1.0], 1e-12);
    }

    #[test]
    fn simpo_known_values() {
        // Mean log-probs m_w, m_l: chosen better, equal, reversed.
        let logps = PairLogps::reference_free(t64(&[-1.0, -1.2, -1.5]), t64(&[-1.5, -1.2, -1.0]));
        // beta = 0.5, gamma = 0.25: logits = 0.5 m_w - 0.5 m_l - 0.25
        //   pair 0: -0.5 + 0.75 - 0.25 =  0    -> ln 2
        //   pair 1: -0.6 + 0.6  - 0.25 = -0.25 -> sp(0.25) = ln(1 + e^0.25) = 0.825939419879
        //   pair 2: -0.75 + 0.5 - 0.25 = -0.5  -> sp(0.5)  = ln(1 + e^0.5)  = 0.974076984180
        let out = Simpo {
            beta: 0.5,
            gamma: 0.25,
        }
        .loss(&logps);
        assert_close(
            &vals(out.losses),
            &[LN2, 0.825_939_419_879, 0.974_076_984_180],
            1e-11,
        );
        // rewards beta * m: 0.5 * [-1, -1.2, -1.5] and 0.5 * [-1.5, -1.2, -1]
        assert_close(&vals(out.chosen_rewards), &[-0.5, -0.6, -0.75], 1e-12);
        assert_close(&vals(out.rejected_rewards), &[-0.75, -0.6, -0.5], 1e-12);
        // beta = 0.1, gamma = 0: logits = 0.1 (m_w - m_l) = 0.05, 0, -0.05
        //   sp(-0.05) = ln(1 + e^-0.05) = 0.668459648013, ln 2, sp(0.05) = 0.718459648013
        let out = Simpo {
            beta: 0.1,
            gamma: 0.0,
        }
        .loss(&logps);
        assert_close(
            &vals(out.losses),
            &[0.668_459_648_013, LN2, 0.718_459_648_013],
            1e-11,
        );
    }

    #[test]
    fn cdpo_known_values() {
        // loss = (1-eps) sp(-t) + eps sp(t), t = beta h; with sp(t) = t + sp(-t) this is
        // sp(-t) + eps t.
        let cases: [(f64, f64, [f64; 3]); 6] = [
            // beta 0.1, t = 0.4, 0, -0.4
            (0.1, 0.0, [SP_M04, LN2, SP_P04]), // eps 0 is DPO
            // eps 0.1: 0.5130152524 + 0.04 ; ln 2 ; 0.9130152524 - 0.04
            (0.1, 0.1, [0.553_015_252_400, LN2, 0.873_015_252_400]),
            // eps 0.3: 0.5130152524 + 0.12 ; ln 2 ; 0.9130152524 - 0.12
            (0.1, 0.3, [0.633_015_252_400, LN2, 0.793_015_252_400]),
            // beta 0.5, t = 2, 0, -2
            (0.5, 0.0, [SP_M2, LN2, SP_P2]),
            // eps 0.1: 0.1269280110 + 0.2 ; ln 2 ; 2.1269280110 - 0.2
            (0.5, 0.1, [0.326_928_011_043, LN2, 1.926_928_011_043]),
            // eps 0.3: 0.1269280110 + 0.6 ; ln 2 ; 2.1269280110 - 0.6
            (0.5, 0.3, [0.726_928_011_043, LN2, 1.526_928_011_043]),
        ];
        for (beta, eps, want) in cases {
            let out = ConservativeDpo { beta, eps }.loss(&three_pairs());
            assert_close(&vals(out.losses), &want, 1e-11);
        }
    }

    #[test]
    fn rdpo_known_values() {
        // loss = [(1-eps) sp(-t) - eps sp(t)] / (1 - 2 eps), t = beta h; with sp(t) = t + sp(-t)
        // this is sp(-t) - eps t / (1 - 2 eps). At t = 0: (1 - 2 eps) ln 2 / (1 - 2 eps) = ln 2.
        let cases: [(f64, f64, [f64; 3]); 6] = [
            (0.1, 0.0, [SP_M04, LN2, SP_P04]), // eps 0 is DPO
            // eps 0.1: eps t/(1-2eps) = 0.04/0.8 = 0.05 -> 0.5130152524 - 0.05 ; 0.9130152524 + 0.05
            (0.1, 0.1, [0.463_015_252_400, LN2, 0.963_015_252_400]),
            // eps 0.3: 0.12/0.4 = 0.3 -> 0.5130152524 - 0.3 ; 0.9130152524 + 0.3
            (0.1, 0.3, [0.213_015_252_400, LN2, 1.213_015_252_400]),
            (0.5, 0.0, [SP_M2, LN2, SP_P2]),
            // eps 0.1: 0.2/0.8 = 0.25 -> 0.1269280110 - 0.25 (negative: rDPO is unbiased, not >= 0)
            (0.5, 0.1, [-0.123_071_988_957, LN2, 2.376_928_011_043]),
            // eps 0.3: 0.6/0.4 = 1.5 -> 0.1269280110 - 1.5 ; 2.1269280110 + 1.5
            (0.5, 0.3, [-1.373_071_988_957, LN2, 3.626_928_011_043]),
        ];
        for (beta, eps, want) in cases {
            let out = RobustDpo { beta, eps }.loss(&three_pairs());
            assert_close(&vals(out.losses), &want, 1e-11);
        }
    }

    #[test]
    fn declared_needs() {
        let with_ref: [Objective; 4] = [
            Objective::Dpo(Dpo { beta: 0.1 }),
            Objective::Ipo(Ipo { beta: 0.1 }),
            Objective::ConservativeDpo(ConservativeDpo {
                beta: 0.1,
                eps: 0.1,
            }),
            Objective::RobustDpo(RobustDpo {
                beta: 0.1,
                eps: 0.1,
            }),
        ];
        for o in with_ref {
            assert!(o.needs_reference(), "{o:?}");
            assert_eq!(o.logp_form(), LogpForm::Sum, "{o:?}");
        }
        let simpo = Objective::Simpo(Simpo {
            beta: 2.0,
            gamma: 0.5,
        });
        assert!(!simpo.needs_reference());
        assert_eq!(simpo.logp_form(), LogpForm::MeanPerToken);
    }

    #[test]
    fn from_method_reads_hyper_parameters() {
        let text = r#"
[[methods]]
method = "lpc-dpo"
beta = 0.2
lambda = 0.05
free_bits = 0.3
[[methods]]
method = "simpo"
beta = 2.5
gamma = 0.7
[[methods]]
method = "cdpo"
eps = 0.2
[[methods]]
method = "rdpo"
eps = 0.3
[[methods]]
method = "oracle-ipo"
beta = 0.4
"#;
        let scenario = crate::scenario::Scenario::from_toml_str(text, "t").unwrap();
        let m = scenario.resolved_methods();
        let lpc = Lpc::from_method(&m[0]);
        assert_eq!(lpc.base, Objective::Dpo(Dpo { beta: 0.2 }));
        assert_eq!((lpc.lambda, lpc.free_bits), (0.05, 0.3));
        assert_eq!(
            Objective::from_method(&m[1]),
            Objective::Simpo(Simpo {
                beta: 2.5,
                gamma: 0.7
            })
        );
        // beta defaults to 0.1 for the DPO family (scenario.rs).
        assert_eq!(
            Objective::from_method(&m[2]),
            Objective::ConservativeDpo(ConservativeDpo {
                beta: 0.1,
                eps: 0.2
            })
        );
        assert_eq!(
            Objective::from_method(&m[3]),
            Objective::RobustDpo(RobustDpo {
                beta: 0.1,
                eps: 0.3
            })
        );
        let ipo = Objective::from_method(&m[4]);
        assert_eq!(ipo, Objective::Ipo(Ipo { beta: 0.4 }));
        assert_eq!(ipo.kind(), ObjectiveKind::Ipo);
    }

    fn all_objectives(beta: f64, eps: f64, gamma: f64) -> [Objective; 5] {
        [
            Objective::Dpo(Dpo { beta }),
            Objective::Ipo(Ipo { beta }),
            Objective::Simpo(Simpo { beta, gamma }),
            Objective::ConservativeDpo(ConservativeDpo { beta, eps }),
            Objective::RobustDpo(RobustDpo { beta, eps }),
        ]
    }

    #[test]
    fn finite_for_huge_margins_in_f32() {
        // h = +1e4 and -1e4 (pc - pr = ±1e4 with an equal reference); SimPO sees the same
        // ±1e4 gap between mean log-probs.
        let pc = [0.0f32, -1.0e4];
        let pr = [-1.0e4f32, 0.0];
        let zero = [0.0f32, 0.0];
        for beta in [0.1, 0.5, 2.0] {
            for o in all_objectives(beta, 0.3, 0.5) {
                let logps = PairLogps::with_reference(t32(&pc), t32(&pr), t32(&zero), t32(&zero));
                let losses = vals(o.loss(&logps).losses);
                assert!(losses.iter().all(|l| l.is_finite()), "{o:?}: {losses:?}");
            }
            // Asymptotes: -log sigmoid(t) -> 0 for t -> +inf and -> -t for t -> -inf, so DPO
            // gives [~0, beta * 1e4].
            let logps = PairLogps::with_reference(t32(&pc), t32(&pr), t32(&zero), t32(&zero));
            let dpo = vals(Dpo { beta }.loss(&logps).losses);
            assert!(dpo[0].abs() < 1e-6, "{dpo:?}");
            assert!(
                (dpo[1] - beta * 1.0e4).abs() <= 1e-6 * beta * 1.0e4,
                "{dpo:?}"
            );
        }
    }

    // Inputs for the gradient checks: four pairs with assorted margins (SimPO reads pc, pr as
    // mean log-probs; the values work for both forms).
    const G_PC: [f64; 4] = [-3.1, -7.4, -2.2, -5.0];
    const G_PR: [f64; 4] = [-4.0, -6.1, -2.2, -9.3];
    const G_RC: [f64; 4] = [-3.5, -7.0, -2.0, -6.0];
    const G_RR: [f64; 4] = [-3.9, -6.6, -2.5, -8.8];

    fn total_loss(o: &Objective, pc: &[f64], pr: &[f64]) -> f64 {
        let logps = PairLogps::with_reference(t64(pc), t64(pr), t64(&G_RC), t64(&G_RR));
        vals(o.loss(&logps).losses).iter().sum()
    }

    /// Central difference of `f` in coordinate `i` of `x`, step 1e-6 (error ~1e-10 in f64).
    fn central_difference(x: &[f64], i: usize, f: impl Fn(&[f64]) -> f64) -> f64 {
        let h = 1e-6;
        let (mut up, mut down) = (x.to_vec(), x.to_vec());
        up[i] += h;
        down[i] -= h;
        (f(&up) - f(&down)) / (2.0 * h)
    }

    #[test]
    fn gradients_match_central_differences() {
        for (beta, eps) in [(0.1, 0.1), (0.5, 0.3)] {
            for o in all_objectives(beta, eps, 0.5) {
                let pc = t64(&G_PC).require_grad();
                let pr = t64(&G_PR).require_grad();
                let rc = t64(&G_RC).require_grad();
                let rr = t64(&G_RR).require_grad();
                let logps =
                    PairLogps::with_reference(pc.clone(), pr.clone(), rc.clone(), rr.clone());
                let grads = o.loss(&logps).losses.sum().backward();
                let g_pc = vals(pc.grad(&grads).unwrap());
                let g_pr = vals(pr.grad(&grads).unwrap());
                for i in 0..G_PC.len() {
                    let fd_pc = central_difference(&G_PC, i, |x| total_loss(&o, x, &G_PR));
                    let fd_pr = central_difference(&G_PR, i, |x| total_loss(&o, &G_PC, x));
                    assert!((g_pc[i] - fd_pc).abs() < 1e-7, "{o:?} pc[{i}]");
                    assert!((g_pr[i] - fd_pr).abs() < 1e-7, "{o:?} pr[{i}]");
                }
                // The reference is detached inside the loss: no gradient reaches it.
                for r in [rc, rr] {
                    if let Some(g) = r.grad(&grads) {
                        assert!(vals(g).iter().all(|v| *v == 0.0), "{o:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn categorical_kl_known_value() {
        // q = softmax([0, ln 3]) = [1/4, 3/4], p = softmax([0, 0]) = [1/2, 1/2]:
        // KL = 1/4 ln(1/2) + 3/4 ln(3/2) = -0.1732868 + 0.3040988 = 0.130812035941
        let kl = categorical_kl(m64(&[0.0, 3f64.ln()], 1), m64(&[0.0, 0.0], 1));
        assert_close(&vals(kl), &[0.130_812_035_941_137], 1e-12);
    }

    #[test]
    fn gaussian_kl_known_values() {
        // Row 0: q = N(1, 1), p = N(0, 1): 1/2 (0 - 0 + (1 + 1)/1 - 1) = 0.5
        // Row 1: q = N(0, 4), p = N(0, 1): 1/2 (0 - ln 4 + 4 - 1) = 1/2 (3 - 1.386294) = 0.806853
        // (D = 1 per row.)
        let kl = gaussian_kl(
            m64(&[1.0, 0.0], 2),
            m64(&[0.0, 4f64.ln()], 2),
            m64(&[0.0, 0.0], 2),
            m64(&[0.0, 0.0], 2),
        );
        assert_close(&vals(kl), &[0.5, 0.806_852_819_440_055], 1e-12);
    }

    #[test]
    fn lpc_known_value_and_free_bits() {
        // DPO beta 0.1 on the three pairs: [sp(-0.4), ln 2, sp(0.4)]; every pair has
        // q = [1/4, 3/4], p = [1/2, 1/2], KL = 0.130812035941 (see categorical_kl_known_value).
        let kl = 0.130_812_035_941_137;
        let q = m64(&[0.0, 3f64.ln(), 0.0, 3f64.ln(), 0.0, 3f64.ln()], 3);
        let p = m64(&[0.0; 6], 3);
        let lpc = Lpc {
            base: Dpo { beta: 0.1 },
            lambda: 1.0,
            free_bits: 0.0,
        };
        let out = lpc.loss(&three_pairs(), q.clone(), p.clone(), 0.5);
        let base = [SP_M04, LN2, SP_P04];
        // loss = base + 0.5 * KL
        let want: Vec<f64> = base.iter().map(|b| b + 0.5 * kl).collect();
        assert_close(&vals(out.losses), &want, 1e-11);
        assert_close(&vals(out.base_losses), &base, 1e-11);
        assert_close(&vals(out.kl), &[kl; 3], 1e-11);
        assert_close(&vals(out.posterior_probs), &[0.25, 0.75].repeat(3), 1e-12);
        assert_close(&vals(out.prior_probs), &[0.5; 6], 1e-12);
        // free bits 0.2 > KL: penalty = max(0.1308, 0.2) = 0.2 -> loss = base + 0.5 * 0.2,
        // while the reported KL stays the raw 0.1308; and the logits get no gradient.
        let lpc = Lpc {
            free_bits: 0.2,
            ..lpc
        };
        let (qg, pg) = (q.require_grad(), p.require_grad());
        let out = lpc.loss(&three_pairs(), qg.clone(), pg.clone(), 0.5);
        let want: Vec<f64> = base.iter().map(|b| b + 0.5 * 0.2).collect();
        assert_close(&vals(out.losses.clone()), &want, 1e-11);
        assert_close(&vals(out.kl), &[kl; 3], 1e-11);
        let grads = out.losses.sum().backward();
        for g in [qg.grad(&grads), pg.grad(&grads)].into_iter().flatten() {
            assert!(vals(g).iter().all(|v| *v == 0.0));
        }
    }

    #[test]
    fn lambda_warmup() {
        let lpc = Lpc {
            base: Dpo { beta: 0.1 },
            lambda: 0.8,
            free_bits: 0.0,
        };
        // 0.8 * min(1, progress / 0.5)
        assert_eq!(lpc.lambda_at(0.0, 0.5), 0.0);
        assert_eq!(lpc.lambda_at(0.25, 0.5), 0.4);
        assert_eq!(lpc.lambda_at(0.75, 0.5), 0.8);
        assert_eq!(lpc.lambda_at(0.1, 0.0), 0.8);
    }

    #[test]
    fn lpc_gradients_match_central_differences() {
        // Two pairs, K = 3; categorical KL weighted by 0.7 (free bits off), plus DPO.
        let q0 = [0.3, -1.2, 0.8, 2.0, 0.1, -0.5];
        let p0 = [-0.4, 0.9, 0.0, 0.5, 0.5, -1.5];
        let lpc = Lpc {
            base: Dpo { beta: 0.5 },
            lambda: 0.7,
            free_bits: 0.0,
        };
        let logps = || {
            PairLogps::with_reference(t64(&PC[..2]), t64(&PR[..2]), t64(&RC[..2]), t64(&RR[..2]))
        };
        let total = |q: &[f64], p: &[f64]| -> f64 {
            vals(lpc.loss(&logps(), m64(q, 2), m64(p, 2), 0.7).losses)
                .iter()
                .sum()
        };
        let (q, p) = (m64(&q0, 2).require_grad(), m64(&p0, 2).require_grad());
        let grads = lpc
            .loss(&logps(), q.clone(), p.clone(), 0.7)
            .losses
            .sum()
            .backward();
        let (gq, gp) = (vals(q.grad(&grads).unwrap()), vals(p.grad(&grads).unwrap()));
        for i in 0..q0.len() {
            let fd_q = central_difference(&q0, i, |x| total(x, &p0));
            let fd_p = central_difference(&p0, i, |x| total(&q0, x));
            assert!((gq[i] - fd_q).abs() < 1e-7, "q[{i}]: {} vs {fd_q}", gq[i]);
            assert!((gp[i] - fd_p).abs() < 1e-7, "p[{i}]: {} vs {fd_p}", gp[i]);
        }
    }

    #[test]
    fn gaussian_lpc_gradients_match_central_differences() {
        // Two pairs, D = 2: (mu_q, logvar_q, mu_p, logvar_p) packed in one vector of 16.
        let x0 = [
            0.3, -1.0, 0.5, 0.2, // mu_q
            -0.2, 0.4, 0.0, -1.1, // logvar_q
            0.1, 0.1, -0.7, 0.9, // mu_p
            0.3, -0.5, 0.2, 0.0, // logvar_p
        ];
        let lpc = Lpc {
            base: Ipo { beta: 0.5 },
            lambda: 1.0,
            free_bits: 0.0,
        };
        let logps = || {
            PairLogps::with_reference(t64(&PC[..2]), t64(&PR[..2]), t64(&RC[..2]), t64(&RR[..2]))
        };
        let parts = |x: &[f64]| -> [Tensor<AB, 2>; 4] {
            [0, 4, 8, 12].map(|s| m64(&x[s..s + 4], 2).require_grad())
        };
        let total = |x: &[f64]| -> f64 {
            let [a, b, c, d] = parts(x);
            vals(lpc.loss_gaussian(&logps(), a, b, c, d, 0.9).losses)
                .iter()
                .sum()
        };
        let [a, b, c, d] = parts(&x0);
        let out = lpc.loss_gaussian(&logps(), a.clone(), b.clone(), c.clone(), d.clone(), 0.9);
        let grads = out.losses.sum().backward();
        let g: Vec<f64> = [a, b, c, d]
            .into_iter()
            .flat_map(|t| vals(t.grad(&grads).unwrap()))
            .collect();
        for (i, gi) in g.iter().enumerate() {
            let fd = central_difference(&x0, i, total);
            assert!((gi - fd).abs() < 1e-7, "x[{i}]: {gi} vs {fd}");
        }
    }

    /// One generated pair: (pc, pr, rc, rr, posterior logit, prior logit).
    type Row6 = (f32, f32, f32, f32, f32, f32);

    proptest! {
        /// K = 1 gives q = p = [1] and KL = 0 exactly; with lambda = 0 the LPC loss equals the
        /// base objective's bit for bit, for every base objective (in the default f32).
        #[test]
        fn lpc_with_one_code_and_no_kl_is_the_base(
            beta in 0.01f64..5.0,
            eps in 0.0f64..0.49,
            gamma in -2.0f64..2.0,
            free_bits in 0.0f64..2.0,
            rows in proptest::collection::vec(
                (-50.0f32..0.0, -50.0f32..0.0, -50.0f32..0.0, -50.0f32..0.0, -20.0f32..20.0, -20.0f32..20.0),
                1..8,
            ),
        ) {
            let col = |f: fn(&Row6) -> f32| -> Vec<f32> {
                rows.iter().map(f).collect()
            };
            let logps = PairLogps::with_reference(
                t32(&col(|r| r.0)), t32(&col(|r| r.1)), t32(&col(|r| r.2)), t32(&col(|r| r.3)),
            );
            let n = rows.len();
            for base in all_objectives(beta, eps, gamma) {
                let lpc = Lpc { base, lambda: 1.0, free_bits };
                let out = lpc.loss(&logps, m32(&col(|r| r.4), n), m32(&col(|r| r.5), n), 0.0);
                let plain = base.loss(&logps);
                prop_assert!(vals(out.kl).iter().all(|k| *k == 0.0));
                prop_assert_eq!(vals(out.losses), vals(plain.losses));
                prop_assert_eq!(vals(out.chosen_rewards), vals(plain.chosen_rewards));
                prop_assert_eq!(vals(out.rejected_rewards), vals(plain.rejected_rewards));
            }
        }

        /// KL(q||p) >= 0 with Pinsker's bound KL >= 1/2 ||q - p||_1^2, so KL = 0 forces q = p;
        /// and KL = 0 (to rounding) when q = p, including logits that differ by a constant.
        #[test]
        fn categorical_kl_is_nonnegative_and_zero_iff_equal(
            k in 1usize..10,
            seed_q in proptest::collection::vec(-8.0f64..8.0, 10),
            seed_p in proptest::collection::vec(-8.0f64..8.0, 10),
            shift in -5.0f64..5.0,
        ) {
            let (ql, pl) = (&seed_q[..k], &seed_p[..k]);
            let kl = vals(categorical_kl(m64(ql, 1), m64(pl, 1)))[0];
            let softmax = |l: &[f64]| -> Vec<f64> {
                let m = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = l.iter().map(|x| (x - m).exp()).collect();
                let s: f64 = e.iter().sum();
                e.iter().map(|x| x / s).collect()
            };
            let l1: f64 = softmax(ql).iter().zip(softmax(pl)).map(|(a, b)| (a - b).abs()).sum();
            prop_assert!(kl >= 0.5 * l1 * l1 - 1e-12, "kl {} < pinsker {}", kl, 0.5 * l1 * l1);
            let shifted: Vec<f64> = ql.iter().map(|x| x + shift).collect();
            let same = vals(categorical_kl(m64(ql, 1), m64(&shifted, 1)))[0];
            prop_assert!(same.abs() < 1e-12, "KL(q||q) = {}", same);
        }

        /// Gaussian KL >= 0; 0 when q = p; with equal variances it is the closed form
        /// 1/2 sum_d (mu_q - mu_p)^2 / var; and it is > 0 when any parameter differs.
        #[test]
        fn gaussian_kl_is_nonnegative_and_zero_iff_equal(
            params in proptest::collection::vec((-3.0f64..3.0, -2.0f64..2.0, -3.0f64..3.0, -2.0f64..2.0), 1..6),
            which in 0usize..6,
            delta in 0.01f64..1.0,
        ) {
            let d = params.len();
            let col = |f: fn(&(f64, f64, f64, f64)) -> f64| -> Vec<f64> { params.iter().map(f).collect() };
            let (mq, lq, mp, lp) = (col(|r| r.0), col(|r| r.1), col(|r| r.2), col(|r| r.3));
            let kl = vals(gaussian_kl(m64(&mq, 1), m64(&lq, 1), m64(&mp, 1), m64(&lp, 1)))[0];
            prop_assert!(kl >= -1e-12);
            let same = vals(gaussian_kl(m64(&mq, 1), m64(&lq, 1), m64(&mq, 1), m64(&lq, 1)))[0];
            prop_assert!(same.abs() < 1e-12);
            let equal_var = vals(gaussian_kl(m64(&mq, 1), m64(&lq, 1), m64(&mp, 1), m64(&lq, 1)))[0];
            let mahalanobis: f64 = (0..d).map(|i| (mq[i] - mp[i]).powi(2) / lq[i].exp()).sum();
            prop_assert!((equal_var - 0.5 * mahalanobis).abs() < 1e-9 * mahalanobis.max(1.0));
            // Perturb one coordinate of the mean or the log-variance of p away from q.
            let (mut mp2, mut lp2) = (mq.clone(), lq.clone());
            if which % 2 == 0 { mp2[which / 2 % d] += delta } else { lp2[which / 2 % d] += delta }
            let apart = vals(gaussian_kl(m64(&mq, 1), m64(&lq, 1), m64(&mp2, 1), m64(&lp2, 1)))[0];
            prop_assert!(apart > 0.0);
        }
    }
}
