//! Tests of the synthetic world: property tests of the issue-2 invariants, closed-form cases,
//! and brute-force reference computations on worlds small enough to enumerate.

use super::reference::ReferenceParams;
use super::stats::StatsAccumulator;
use super::*;
use crate::rng::stream;
use crate::scenario::{ReferenceKind, RewardFamily, WorldSpec};
use proptest::prelude::*;

/// The default world with the given overrides applied by `f`.
fn spec_with(f: impl FnOnce(&mut WorldSpec)) -> WorldSpec {
    let mut s = WorldSpec::default();
    f(&mut s);
    s.validate().expect("test spec is valid");
    s
}

fn draw(world: &World, seed: u64, n: usize) -> Vec<PreferencePair> {
    let mut rng = stream(seed, "pairs/test");
    world.pairs(&mut rng).take(n).collect()
}

/// Every response of length `lo..=hi` over `vocab` tokens.
fn all_responses(vocab: u32, lo: usize, hi: usize) -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    for len in lo..=hi {
        let mut y = vec![0u32; len];
        loop {
            out.push(y.clone());
            let mut i = 0;
            while i < len && y[i] + 1 == vocab {
                y[i] = 0;
                i += 1;
            }
            if i == len {
                break;
            }
            y[i] += 1;
        }
    }
    out
}

/// pi_ref(y | s) straight from the stored probabilities (not the log tables).
fn brute_reference_prob(world: &World, s: usize, y: &[u32]) -> f64 {
    let (lo, hi) = world.response_lengths();
    if !(lo..=hi).contains(&y.len()) {
        return 0.0;
    }
    let p_len = 1.0 / (hi - lo + 1) as f64;
    match &world.reference.params {
        ReferenceParams::Uniform => p_len * (world.vocab() as f64).powi(-(y.len() as i32)),
        ReferenceParams::Markov {
            initial,
            transition,
        } => {
            let mut p = p_len * initial[s][y[0] as usize];
            for w in y.windows(2) {
                p *= transition[s][w[0] as usize][w[1] as usize];
            }
            p
        }
    }
}

prop_compose! {
    /// Any valid world (with tiny to moderate sizes) and a flip rate.
    fn arb_world_spec()(
        vocab in 2usize..=12,
        prompt_len in 1usize..=5,
        len_min in 1usize..=5,
        len_extra in 0usize..=3,
        sources in 1usize..=4,
        types in 1usize..=4,
        extra_dim in 0usize..=3,
        bigram in any::<bool>(),
        markov in any::<bool>(),
        coupling in 0.0..=1.0f64,
        distance in 0.0..=1.0f64,
        raw_type_weights in prop::collection::vec(0.0..3.0f64, 4),
        boosted in 0usize..4,
        source_weights in prop::option::of(prop::collection::vec(0.01..3.0f64, 4)),
        length in prop::option::of(prop::collection::vec(-2.0..2.0f64, 1..=4)),
        reward_scale in 0.0..10.0f64,
        bt_temperature in 0.05..5.0f64,
        log_conc in prop::collection::vec(-3.0..0.7f64, 2),
        annotators in 0usize..=5,
        flip_rate in 0.0..=1.0f64,
    ) -> (WorldSpec, f64) {
        let mut type_weights: Vec<f64> = raw_type_weights[..types].to_vec();
        type_weights[boosted % types] += 0.5;
        let length_weight = length.map(|l| if l.len() >= types { l[..types].to_vec() } else { vec![l[0]] });
        let spec = WorldSpec {
            vocab,
            prompt_len,
            response_len: len_min + len_extra,
            response_len_min: Some(len_min),
            sources,
            types,
            type_weights: Some(type_weights),
            source_weights: source_weights.map(|w| w[..sources].to_vec()),
            coupling,
            reward: if bigram { RewardFamily::Bigram } else { RewardFamily::Linear },
            feature_dim: types + extra_dim,
            reward_scale,
            distance,
            length_weight,
            bt_temperature,
            reference: if markov { ReferenceKind::Markov } else { ReferenceKind::Uniform },
            prompt_concentration: 10f64.powf(log_conc[0]),
            markov_concentration: 10f64.powf(log_conc[1]),
            annotators,
        };
        (spec, flip_rate)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any valid scenario builds a world and draws pairs without panicking, and everything it
    /// draws is in range (bounds from the spec) and every statistic is a finite rate.
    #[test]
    fn any_valid_world_generates((spec, flip) in arb_world_spec(), seed in any::<u64>()) {
        let world = World::new(&spec, flip, &mut stream(seed, "world"));
        for p in world.prompt_probs.iter().chain(world.type_given_source.iter()) {
            prop_assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            prop_assert!(p.iter().all(|x| x.is_finite() && *x >= 0.0));
        }
        let pairs = draw(&world, seed, 60);
        let (lo, hi) = world.response_lengths();
        for pair in &pairs {
            prop_assert_eq!(pair.prompt.len(), spec.prompt_len);
            for y in [&pair.chosen, &pair.rejected] {
                prop_assert!((lo..=hi).contains(&y.len()));
                prop_assert!(y.iter().all(|&t| (t as usize) < spec.vocab));
                prop_assert!(world.reference_log_prob(pair.source, &pair.prompt, y).is_finite());
            }
            prop_assert!(pair.group < spec.types && pair.source < spec.sources);
            prop_assert!(pair.annotator < spec.annotators.max(1) + spec.types);
            let truth = pair.truth.unwrap();
            prop_assert!(truth.reward_chosen.is_finite() && truth.reward_rejected.is_finite());
            prop_assert!((0.0..=1.0).contains(&truth.label_prob));
            let post = world.bayes_type_posterior(pair);
            prop_assert!((post.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        }
        let s = world_stats(&world, &pairs);
        for x in [s.flip_fraction, s.label_agreement, s.type_oracle_acc_observed,
                  s.prompt_oracle_exp_noiseless, s.population_oracle_exp_observed, s.bayes_type_acc] {
            prop_assert!((0.0..=1.0).contains(&x), "{s:?}");
        }
        prop_assert_eq!(s.disagreement_rate.is_some(), spec.types > 1);
    }

    /// The realised cosine between any two types equals 1 - d T/(T-1) to 1e-9 (METHOD.md §2).
    #[test]
    fn realised_cosine_matches_formula(types in 2usize..=8, extra in 0usize..=5,
                                       d in 0.0..=1.0f64, seed in any::<u64>()) {
        let spec = spec_with(|s| { s.types = types; s.feature_dim = types + extra; s.distance = d; });
        let world = World::new(&spec, 0.0, &mut stream(seed, "world"));
        let want = 1.0 - d * types as f64 / (types as f64 - 1.0);
        for i in 0..types {
            prop_assert!((geometry::norm(&world.thetas()[i]) - 1.0).abs() < 1e-12);
            for j in 0..types {
                let got = world.type_cosine()[i][j];
                let expected = if i == j { 1.0 } else { want };
                prop_assert!((got - expected).abs() < 1e-9, "cos[{i}][{j}] = {got}, want {expected}");
            }
        }
    }

    /// At tau -> 0 without flips the label follows the true type's rewards: whenever the
    /// Bradley–Terry probability is saturated (|D|/tau > 40, so sigmoid rounds to 0 or 1 in f64)
    /// the chosen response has the larger true reward.
    #[test]
    fn tiny_temperature_labels_follow_true_rewards((spec, _) in arb_world_spec(), seed in any::<u64>()) {
        let spec = WorldSpec { bt_temperature: 1e-9, ..spec };
        let world = World::new(&spec, 0.0, &mut stream(seed, "world"));
        for pair in draw(&world, seed, 200) {
            let t = pair.truth.unwrap();
            prop_assert!(!t.flipped);
            let margin = (t.reward_chosen - t.reward_rejected) / spec.bt_temperature;
            prop_assert!(margin >= 0.0 || margin > -40.0, "chosen is worse by {margin} tau");
            // The stored rewards are the true type's rewards.
            prop_assert_eq!(t.reward_chosen, world.reward(pair.group, &pair.prompt, &pair.chosen));
        }
    }

    /// The measured disagreement rate is non-decreasing in d on the same pairs (same seed).
    /// A theorem for T = 2 and T = 3 without a length term (see `stats` module docs): pair by
    /// pair, D_k = sqrt(1-d) a + sqrt(d) b_k with sum_k b_k = 0, and the number of
    /// disagreeing type pairs can only grow as d grows.
    #[test]
    fn disagreement_non_decreasing_in_d((spec, flip) in arb_world_spec(), types in 2usize..=3,
                                         mut ds in prop::collection::vec(0.0..=1.0f64, 2..6),
                                         seed in any::<u64>()) {
        ds.push(0.0);
        ds.push(1.0);
        ds.sort_by(f64::total_cmp);
        let base = WorldSpec {
            types,
            feature_dim: spec.feature_dim.max(types),
            type_weights: None,
            length_weight: None,
            ..spec
        };
        let mut last = -1.0;
        let mut prompts = None;
        for d in ds {
            let world = World::new(&WorldSpec { distance: d, ..base.clone() }, flip, &mut stream(seed, "world"));
            let pairs = draw(&world, seed, 150);
            // Same draws whatever d: the same prompts and response sets.
            let key: Vec<_> = pairs.iter().map(|p| (p.prompt.clone(), p.source, p.group)).collect();
            prop_assert!(prompts.get_or_insert_with(|| key.clone()) == &key);
            let rate = world_stats(&world, &pairs).disagreement_rate.unwrap();
            if d == 0.0 {
                prop_assert_eq!(rate, 0.0);
            }
            prop_assert!(rate >= last, "disagreement fell from {last} to {rate} at d = {d}");
            last = rate;
        }
    }

    /// Coupling 1 makes the type a function of the source: t = s mod T.
    #[test]
    fn full_coupling_type_is_source_mod_t((spec, flip) in arb_world_spec(), seed in any::<u64>()) {
        let spec = WorldSpec { coupling: 1.0, ..spec };
        let world = World::new(&spec, flip, &mut stream(seed, "world"));
        for pair in draw(&world, seed, 200) {
            prop_assert_eq!(pair.group, pair.source % spec.types);
        }
    }

    /// The observed flip count F of n pairs is within Bernstein's bound of n eps:
    /// P(|F - n eps| >= t) <= 2 exp(-t^2 / (2 (n eps (1-eps) + t/3))); t solves RHS = 1e-9.
    #[test]
    fn flip_rate_within_binomial_bound((spec, _) in arb_world_spec(), eps in 0.0..=1.0f64,
                                       seed in any::<u64>()) {
        let world = World::new(&spec, eps, &mut stream(seed, "world"));
        let n = 2000;
        let flips = draw(&world, seed, n).iter().filter(|p| p.truth.unwrap().flipped).count() as f64;
        let var = n as f64 * eps * (1.0 - eps);
        let l = (2.0f64 / 1e-9).ln();
        let t = l / 3.0 + (l * l / 9.0 + 2.0 * l * var).sqrt();
        prop_assert!((flips - n as f64 * eps).abs() <= t, "{flips} flips of {n} at eps {eps} (bound {t})");
    }

    /// Ceilings are ordered type >= prompt >= population pair by pair for the exact
    /// expectations (both targets), and type >= prompt, type >= population for the realised
    /// accuracy against the noiseless preference (theorems in the `stats` module docs).
    #[test]
    fn ceilings_are_ordered((spec, flip) in arb_world_spec(), seed in any::<u64>()) {
        let world = World::new(&spec, flip, &mut stream(seed, "world"));
        let mut acc = StatsAccumulator::new(&world);
        let tol = 1e-9;
        for pair in draw(&world, seed, 100) {
            let c = acc.pair_credits(&pair);
            for e in [c.exp_observed, c.exp_noiseless] {
                prop_assert!(e[0] >= e[1] - tol && e[1] >= e[2] - tol, "{c:?}");
            }
            let a = c.acc_noiseless;
            prop_assert!(a[0] >= a[1] && a[0] >= a[2], "{c:?}");
        }
    }

    /// Worlds that differ only in d, c, tau_bt, eps, reward_scale and length_weight draw the same
    /// sources, prompts and response pairs (module docs: a fixed number of draws per pair).
    #[test]
    fn knobs_do_not_shift_the_draws((a, flip_a) in arb_world_spec(), (b, flip_b) in arb_world_spec(),
                                    seed in any::<u64>()) {
        let b = WorldSpec {
            distance: b.distance,
            coupling: b.coupling,
            bt_temperature: b.bt_temperature,
            reward_scale: b.reward_scale,
            length_weight: b.length_weight.filter(|l| l.len() == 1),
            ..a.clone()
        };
        let key = |spec: &WorldSpec, flip: f64| -> Vec<_> {
            let world = World::new(spec, flip, &mut stream(seed, "world"));
            draw(&world, seed, 50)
                .into_iter()
                .map(|p| {
                    let mut ys = [p.chosen, p.rejected];
                    ys.sort();
                    (p.source, p.prompt, ys)
                })
                .collect()
        };
        prop_assert!(key(&a, flip_a) == key(&b, flip_b));
    }

    /// The Bayes posterior equals a brute-force enumeration of the joint
    /// P(s, t, x, y_w, y_l, label) = w_s p_s(x) pi_ref(y_w|s) pi_ref(y_l|s) P(t|s) Q_t, summed over s.
    #[test]
    fn bayes_posterior_matches_enumeration((spec, flip) in arb_world_spec(), seed in any::<u64>()) {
        let world = World::new(&spec, flip, &mut stream(seed, "world"));
        for pair in draw(&world, seed, 30) {
            let mut joint = vec![0.0; spec.types];
            for s in 0..spec.sources {
                let mut p = world.source_weights()[s];
                for &x in &pair.prompt {
                    p *= world.prompt_probs[s][x as usize];
                }
                p *= brute_reference_prob(&world, s, &pair.chosen) * brute_reference_prob(&world, s, &pair.rejected);
                for (t, j) in joint.iter_mut().enumerate() {
                    let q = 1.0 / (1.0 + (-(world.reward(t, &pair.prompt, &pair.chosen)
                        - world.reward(t, &pair.prompt, &pair.rejected)) / spec.bt_temperature).exp());
                    *j += p * world.type_given_source()[s][t] * ((1.0 - flip) * q + flip * (1.0 - q));
                }
            }
            let total: f64 = joint.iter().sum();
            // Only compare where the direct product does not underflow.
            prop_assume!(total > 1e-250);
            let got = world.bayes_type_posterior(&pair);
            for t in 0..spec.types {
                prop_assert!((got[t] - joint[t] / total).abs() < 1e-9, "{got:?} vs {joint:?}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The annotator-context Bayes posterior equals a brute-force enumeration of the joint over
    /// the shared type t and every pair's own source s_j:
    /// P(t, s_1..s_n, pairs) = P(t) prod_j P(s_j | t) p_{s_j}(x_j) pi_ref(y_j1|s_j) pi_ref(y_j2|s_j) Q_t(j),
    /// summed over all S^n source tuples (the code under test instead multiplies per-pair sums).
    #[test]
    fn context_posterior_matches_enumeration((spec, flip) in arb_world_spec(), seed in any::<u64>(),
                                            n in 1usize..=3) {
        let world = World::new(&spec, flip, &mut stream(seed, "world"));
        let pairs = draw(&world, seed, 3 * n);
        for group in pairs.chunks(n) {
            let refs: Vec<&PreferencePair> = group.iter().collect();
            let mut joint = vec![0.0; spec.types];
            let tuples = spec.sources.pow(n as u32);
            for (t, j) in joint.iter_mut().enumerate() {
                let pt = world.type_marginal()[t];
                if pt == 0.0 {
                    continue;
                }
                for code in 0..tuples {
                    let mut p = pt;
                    let mut c = code;
                    for pair in &refs {
                        let s = c % spec.sources;
                        c /= spec.sources;
                        let mut e = world.source_weights()[s] * world.type_given_source()[s][t] / pt;
                        for &x in &pair.prompt {
                            e *= world.prompt_probs[s][x as usize];
                        }
                        e *= brute_reference_prob(&world, s, &pair.chosen)
                            * brute_reference_prob(&world, s, &pair.rejected);
                        let q = 1.0 / (1.0 + (-(world.reward(t, &pair.prompt, &pair.chosen)
                            - world.reward(t, &pair.prompt, &pair.rejected)) / spec.bt_temperature).exp());
                        p *= e * ((1.0 - flip) * q + flip * (1.0 - q));
                    }
                    *j += p;
                }
            }
            let total: f64 = joint.iter().sum();
            prop_assume!(total > 1e-250);
            let got = world.bayes_type_posterior_multi(&refs);
            for t in 0..spec.types {
                prop_assert!((got[t] - joint[t] / total).abs() < 1e-9, "{got:?} vs {joint:?}");
            }
            if n == 1 {
                let single = world.bayes_type_posterior(refs[0]);
                for t in 0..spec.types {
                    prop_assert!((got[t] - single[t]).abs() < 1e-9);
                }
            }
        }
    }
}

/// More evidence from one annotator can only sharpen the bound: on two-hidden-imbalanced's
/// world, the context bound with C = 8 is far above the single-pair bound, and C = 0 reproduces
/// `bayes_argmax_types` exactly.
#[test]
fn context_bound_grows_with_context_and_c0_is_the_single_pair_bound() {
    let scenario = crate::scenario::Scenario::from_toml_str(
        "[world]\ntypes = 2\ntype_weights = [3.0, 1.0]\ncoupling = 0.0\nreward_scale = 64.0\nannotators = 50\n\
         [data]\ntrain_pairs = 2000\neval_pairs = 400\nseed = 3\n",
        "t",
    )
    .unwrap();
    let (world, data) = synthetic_data(&scenario);
    let b0 = context_bound(&world, &data.train, &data.eval, 0, 3, 5);
    let single = bayes_argmax_types(&world, &data.eval);
    let truth: Vec<usize> = data.eval.iter().map(|p| p.group).collect();
    assert_eq!(b0.nmi, crate::metrics::nmi(&single, &truth));
    assert_eq!(b0.nmi_se, 0.0);
    let b8 = context_bound(&world, &data.train, &data.eval, 8, 3, 5);
    assert!(b8.nmi > b0.nmi + 0.1, "{b8:?} vs {b0:?}");
    assert!(b8.nmi_se >= 0.0 && b8.nmi_se < 0.05);
    assert!(b0.nmi_unseen.is_none());
}

/// `data.heldout_annotators`: the held-out annotators label no training or validation pair,
/// do label held-out pairs, and h = 0 leaves every split exactly as before.
#[test]
fn heldout_annotators_never_reach_training_or_validation() {
    let toml = |h: f64| {
        format!(
            "[world]\nannotators = 40\n[data]\ntrain_pairs = 800\nval_pairs = 100\neval_pairs = 400\nseed = 5\nheldout_annotators = {h}\n"
        )
    };
    let s = crate::scenario::Scenario::from_toml_str(&toml(0.25), "t").unwrap();
    let held = heldout_annotators(&s);
    assert_eq!(held.len(), 10);
    let (_, data) = synthetic_data(&s);
    assert_eq!(
        (data.train.len(), data.val.len(), data.eval.len()),
        (800, 100, 400)
    );
    assert!(
        data.train
            .iter()
            .chain(&data.val)
            .all(|p| !held.contains(&p.annotator))
    );
    assert!(data.eval.iter().any(|p| held.contains(&p.annotator)));
    // h = 0: the same pairs as a scenario that never mentions it.
    let zero = crate::scenario::Scenario::from_toml_str(&toml(0.0), "t").unwrap();
    let plain = crate::scenario::Scenario::from_toml_str(
        "[world]\nannotators = 40\n[data]\ntrain_pairs = 800\nval_pairs = 100\neval_pairs = 400\nseed = 5\n",
        "t",
    )
    .unwrap();
    assert!(heldout_annotators(&zero).is_empty());
    assert_eq!(
        synthetic_data(&zero).1.train,
        synthetic_data(&plain).1.train
    );
    // The held-out pairs are the same with or without held-out annotators.
    assert_eq!(synthetic_data(&zero).1.eval, data.eval);
}

/// Balanced opposed types hidden from the prompt (T = 2, d = 1, equal weights, coupling 0, no
/// length term; METHOD.md §3): r_1 = -r_0, so the label marginal
/// P(y_w > y_l | x, y) = (Q_0 + Q_1)/2 = 1/2 exactly, the prompt and population oracles score
/// exactly 1/2 in expectation against observed labels, and the Bayes posterior of type 0 is
/// Q_0 / (Q_0 + Q_1) = Q_0 (it is informative given the true rewards; the data alone, whose
/// labels are fair coins, cannot reveal those rewards).
#[test]
fn balanced_opposed_world_closed_forms() {
    for (flip, reference) in [(0.0, ReferenceKind::Uniform), (0.2, ReferenceKind::Markov)] {
        let spec = spec_with(|s| {
            s.distance = 1.0;
            s.coupling = 0.0;
            s.type_weights = Some(vec![1.0, 1.0]);
            s.reference = reference;
        });
        let world = World::new(&spec, flip, &mut stream(5, "world"));
        let mut acc = StatsAccumulator::new(&world);
        for pair in draw(&world, 5, 300) {
            let r = |t: usize, y: &[u32]| world.reward(t, &pair.prompt, y);
            let d0 = r(0, &pair.chosen) - r(0, &pair.rejected);
            let d1 = r(1, &pair.chosen) - r(1, &pair.rejected);
            assert_eq!(d0, -d1, "opposed rewards negate exactly");
            let q0 = flip + (1.0 - 2.0 * flip) / (1.0 + (-d0).exp());
            let q1 = flip + (1.0 - 2.0 * flip) / (1.0 + d0.exp());
            assert!((0.5 * (q0 + q1) - 0.5).abs() < 1e-15);
            assert_eq!(
                world.type_posterior_given_prompt(&pair.prompt),
                vec![0.5, 0.5]
            );
            let post = world.bayes_type_posterior(&pair);
            assert!((post[0] - q0).abs() < 1e-12, "{post:?} vs Q_0 = {q0}");
            let c = acc.pair_credits(&pair);
            assert_eq!(c.exp_observed[1], 0.5);
            assert_eq!(c.exp_observed[2], 0.5);
        }
    }
}

/// Coupling 1 and prompt distributions with disjoint supports: the prompt names its source and
/// so its type, P(t | x) is one-hot, and so is the Bayes posterior, whatever the label.
#[test]
fn disjoint_sources_with_full_coupling_reveal_the_type() {
    let spec = spec_with(|s| {
        s.vocab = 8;
        s.coupling = 1.0;
    });
    let mut world = World::new(&spec, 0.1, &mut stream(9, "world"));
    // Source 0 uses tokens 0..4 only, source 1 tokens 4..8 only.
    world.prompt_probs = (0..2)
        .map(|s| {
            (0..8)
                .map(|v| if v / 4 == s { 0.25 } else { 0.0 })
                .collect()
        })
        .collect();
    world.samplers.prompt = world.prompt_probs.iter().map(|p| alias(p)).collect();
    world.samplers.prompt_log = world
        .prompt_probs
        .iter()
        .flatten()
        .map(|p| p.ln())
        .collect();
    for pair in draw(&world, 9, 200) {
        let mut onehot = vec![0.0; 2];
        onehot[pair.source] = 1.0;
        assert_eq!(pair.group, pair.source);
        assert_eq!(world.type_posterior_given_prompt(&pair.prompt), onehot);
        assert_eq!(world.bayes_type_posterior(&pair), onehot);
    }
}

/// pi_ref is a distribution (sums to 1 over every response, by enumeration) and its sampler
/// draws from it: each response's frequency in 20000 draws is within Bernstein's bound
/// (delta = 1e-9) of exp(reference_log_prob).
#[test]
fn reference_log_prob_normalises_and_matches_sampler() {
    for kind in [ReferenceKind::Uniform, ReferenceKind::Markov] {
        let spec = spec_with(|s| {
            s.vocab = 3;
            s.response_len = 2;
            s.response_len_min = Some(1);
            s.reference = kind;
            s.markov_concentration = 0.7;
        });
        let world = World::new(&spec, 0.0, &mut stream(2, "world"));
        let ys = all_responses(3, 1, 2);
        for s in 0..2 {
            let total: f64 = ys
                .iter()
                .map(|y| world.reference_log_prob(s, &[], y).exp())
                .sum();
            assert!((total - 1.0).abs() < 1e-12);
            let n = 20000;
            let mut rng = stream(3, "ref");
            let draws: Vec<Vec<u32>> = (0..n)
                .map(|_| world.sample_reference(s, &[], &mut rng))
                .collect();
            for y in &ys {
                let p = world.reference_log_prob(s, &[], y).exp();
                assert!((p - brute_reference_prob(&world, s, y)).abs() < 1e-12);
                let count = draws.iter().filter(|d| *d == y).count() as f64;
                let l = (2.0f64 / 1e-9).ln();
                let t = l / 3.0 + (l * l / 9.0 + 2.0 * l * n as f64 * p * (1.0 - p)).sqrt();
                assert!(
                    (count - n as f64 * p).abs() <= t,
                    "{y:?}: {count} vs {}",
                    n as f64 * p
                );
            }
        }
    }
}

/// The exact optimal policy against brute force over every response of a tiny world (both
/// families, both references, variable lengths, a length term):
/// pi*(y) = pi_ref(y) e^{r(y)/beta} / sum_y' pi_ref(y') e^{r(y')/beta}.
#[test]
fn optimal_policy_matches_enumeration() {
    for family in [RewardFamily::Linear, RewardFamily::Bigram] {
        for kind in [ReferenceKind::Uniform, ReferenceKind::Markov] {
            let spec = spec_with(|s| {
                s.vocab = 3;
                s.feature_dim = 3;
                s.response_len = 3;
                s.response_len_min = Some(1);
                s.reward = family;
                s.reference = kind;
                s.length_weight = Some(vec![0.5, -1.0]);
            });
            let world = World::new(&spec, 0.0, &mut stream(4, "world"));
            let ys = all_responses(3, 1, 3);
            let prompt = [2u32, 1];
            for (t, s, beta) in [(0, 0, 0.1), (1, 1, 1.0), (1, 0, 3.0)] {
                let weights: Vec<f64> = ys
                    .iter()
                    .map(|y| {
                        brute_reference_prob(&world, s, y)
                            * (world.reward(t, &prompt, y) / beta).exp()
                    })
                    .collect();
                let z: f64 = weights.iter().sum();
                let policy = world.optimal_policy(t, s, &prompt, beta).unwrap();
                assert!((policy.log_normaliser() - z.ln()).abs() < 1e-10);
                let mut total = 0.0;
                for (y, w) in ys.iter().zip(&weights) {
                    let lp = world.optimal_log_prob(t, s, &prompt, y, beta).unwrap();
                    assert!(
                        (lp - (w / z).ln()).abs() < 1e-10,
                        "{family:?} {kind:?} {y:?}"
                    );
                    total += lp.exp();
                }
                assert!((total - 1.0).abs() < 1e-10);
                assert_eq!(policy.log_prob(&[0, 0, 0, 0]), f64::NEG_INFINITY);
            }
        }
    }
}

/// With a uniform reference the responses say nothing about the source, so the context
/// posterior is exactly the prompt posterior.
#[test]
fn uniform_reference_context_posterior_is_prompt_posterior() {
    let spec = spec_with(|s| {
        s.sources = 4;
        s.coupling = 0.6;
    });
    let world = World::new(&spec, 0.0, &mut stream(1, "world"));
    for p in draw(&world, 1, 100) {
        assert_eq!(
            world.type_posterior_given_context(&p.prompt, &p.chosen, &p.rejected),
            world.type_posterior_given_prompt(&p.prompt)
        );
    }
}

/// Annotators: the annotator always determines the type, with stand-in ids `annotators + t`
/// for types that drew no annotator.
#[test]
fn annotator_determines_type() {
    let spec = spec_with(|s| {
        s.types = 3;
        s.sources = 3;
        s.annotators = 1;
        s.coupling = 0.5;
    });
    let world = World::new(&spec, 0.0, &mut stream(0, "world"));
    let n = world.annotator_types().len();
    let mut stand_ins = 0;
    for p in draw(&world, 0, 300) {
        if p.annotator < n {
            assert_eq!(world.annotator_types()[p.annotator], p.group);
        } else {
            assert_eq!(p.annotator - n, p.group);
            stand_ins += 1;
        }
    }
    // One annotator, three types each with probability >= 0.5 / 3: some pairs need stand-ins.
    assert!(stand_ins > 0);
}

/// `synthetic_data` uses the documented streams and sizes, and is deterministic.
#[test]
fn synthetic_data_uses_named_streams() {
    let scenario = crate::scenario::Scenario::from_toml_str(
        "[world]\ntypes = 3\nsources = 3\n[data]\ntrain_pairs = 50\neval_pairs = 20\nseed = 7\n",
        "t",
    )
    .unwrap();
    let (world, data) = synthetic_data(&scenario);
    assert_eq!(
        (data.train.len(), data.val.len(), data.eval.len()),
        (50, 1000, 20)
    );
    assert_eq!(data.group_names, vec!["type0", "type1", "type2"]);
    assert_eq!((data.vocab, data.groups), (16, 3));
    let expect = World::new(&scenario.world(), 0.0, &mut stream(7, WORLD_STREAM));
    let mut rng = stream(7, EVAL_STREAM);
    let eval: Vec<_> = expect.pairs(&mut rng).take(20).collect();
    assert_eq!(eval, data.eval);
    let mut rng = stream(7, VAL_STREAM);
    let val: Vec<_> = expect.pairs(&mut rng).take(1000).collect();
    assert_eq!(val, data.val);
    assert_eq!(world.thetas(), expect.thetas());
    assert_eq!(synthetic_data(&scenario).1.train, data.train);
}

/// Bigram rewards work down to length 1 (the prompt interaction alone) and depend on order.
#[test]
fn bigram_reward_is_order_dependent() {
    let spec = spec_with(|s| {
        s.reward = RewardFamily::Bigram;
        s.response_len_min = Some(1);
        s.length_weight = Some(vec![0.0]);
    });
    let world = World::new(&spec, 0.0, &mut stream(0, "world"));
    let x = [3u32];
    let one = world.reward(0, &x, &[5]);
    // Expected from the formula with L = 1: scale <theta_0, psi(3, 5)>.
    let psi = &world.bigram_features.as_ref().unwrap()[3 * 16 + 5];
    assert!((one - 6.0 * geometry::dot(&world.thetas()[0], psi)).abs() < 1e-12);
    assert_ne!(
        world.reward(0, &x, &[1, 2, 4]),
        world.reward(0, &x, &[4, 2, 1])
    );
}

/// Linear rewards of responses with the same multiset of tokens tie exactly.
#[test]
fn linear_reward_ties_permutations_exactly() {
    let world = World::new(&WorldSpec::default(), 0.0, &mut stream(0, "world"));
    for t in 0..2 {
        assert_eq!(
            world.reward(t, &[], &[1, 9, 4, 7, 7, 2]),
            world.reward(t, &[], &[7, 2, 7, 9, 1, 4])
        );
    }
}
