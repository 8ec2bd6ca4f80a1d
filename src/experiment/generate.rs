//! What `lpc-bench generate` does: write a synthetic world's pairs, parameters and statistics.
//!
//! Output folder layout (every file written to a temporary file in the same folder and renamed
//! into place only after all four are complete, so a failed run leaves no partial outputs):
//!
//! - `train.jsonl`, `eval.jsonl`: one [`PairRecord`] per line, streamed as drawn;
//! - `world.json`: the scenario name, the seed and the [`World`]'s parameters;
//! - `summary.csv`: one [`WorldStats`] row, computed on the held-out (eval) pairs.
//!
//! The pairs are the same as [`crate::synth::synthetic_data`] gives training (same named
//! streams), so a method trained in memory sees exactly these files.

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use tempfile::NamedTempFile;

use crate::data::PreferencePair;
use crate::rng::{SeededRng, stream};
use crate::scenario::{CheckedScenario, Scenario};
use crate::synth::{EVAL_STREAM, StatsAccumulator, TRAIN_STREAM, World, WorldStats};
use crate::{Error, Result};

/// The files `generate` writes, in write order.
pub const OUTPUTS: [&str; 4] = ["train.jsonl", "eval.jsonl", "world.json", "summary.csv"];

/// One line of `train.jsonl` / `eval.jsonl`: a pair in the prompt/chosen/rejected layout other
/// preference tools read, with its ground truth.
#[derive(Debug, Serialize)]
pub struct PairRecord<'a> {
    /// Prompt token ids.
    pub prompt: &'a [u32],
    /// Observed chosen response (after any flip).
    pub chosen: &'a [u32],
    /// Observed rejected response.
    pub rejected: &'a [u32],
    /// Space-joined text form, `t3 t7 t1`.
    pub prompt_text: &'a str,
    /// Space-joined text form of the chosen response.
    pub chosen_text: &'a str,
    /// Space-joined text form of the rejected response.
    pub rejected_text: &'a str,
    /// Prompt source.
    pub source: usize,
    /// True latent type.
    #[serde(rename = "type")]
    pub type_: usize,
    /// Annotator id (0 without annotators).
    pub annotator: usize,
    /// r_type(x, chosen) and r_type(x, rejected).
    pub reward_chosen: f64,
    /// r_type(x, rejected).
    pub reward_rejected: f64,
    /// P(chosen > rejected) under the pair's type, before any flip.
    pub label_prob: f64,
    /// Whether label noise flipped the Bradley–Terry label.
    pub flipped: bool,
}

/// `world.json`: what produced the pairs.
#[derive(Serialize)]
struct WorldFile<'a> {
    scenario: &'a str,
    seed: u64,
    world: &'a World,
}

/// Write the four outputs of `scenario` into `out` (created if missing) and return the
/// held-out statistics. Without `force`, any existing output is an error and nothing is
/// written.
pub fn write_dataset(scenario: &CheckedScenario, out: &Path, force: bool) -> Result<WorldStats> {
    if scenario.is_real_data() {
        return Err(Error::msg(format!(
            "generate needs a synthetic [world]; scenario '{}' reads real data",
            scenario.name
        )));
    }
    // The pairs are streamed to disk; only the world's tables are held in memory.
    let estimate = crate::plan::estimate(scenario).only(&["world"]);
    crate::plan::check_fits(&scenario.name, &estimate, &crate::plan::memory_budget()?)?;
    let paths: Vec<PathBuf> = OUTPUTS.iter().map(|f| out.join(f)).collect();
    crate::results::prepare_out_dir(out, force, &OUTPUTS)?;

    let seed = scenario.data.seed;
    let world = crate::synth::world_of(scenario);

    let train = write_pairs(
        &world,
        &mut stream(seed, TRAIN_STREAM),
        scenario.data.train_pairs,
        out,
        &paths[0],
        |_| {},
    )?;
    let mut acc = StatsAccumulator::new(&world);
    let eval = write_pairs(
        &world,
        &mut stream(seed, EVAL_STREAM),
        scenario.data.eval_pairs,
        out,
        &paths[1],
        |p| acc.add(p),
    )?;
    let stats = acc.finish();

    let world_json = temp_file(out, &paths[2], |w| {
        let file = WorldFile {
            scenario: &scenario.name,
            seed,
            world: &world,
        };
        serde_json::to_writer(&mut *w, &file)?;
        w.write_all(b"\n")
    })?;
    let summary = temp_file(out, &paths[3], |w| {
        let mut csv = csv::Writer::from_writer(w);
        csv.serialize(&stats)?;
        csv.flush()
    })?;

    for (tmp, path) in [train, eval, world_json, summary].into_iter().zip(&paths) {
        tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    }
    Ok(stats)
}

/// Write `body` into a new temporary file in `dir` (to be renamed to `path`), buffered.
fn temp_file(
    dir: &Path,
    path: &Path,
    body: impl FnOnce(&mut BufWriter<&std::fs::File>) -> std::io::Result<()>,
) -> Result<NamedTempFile> {
    let tmp = NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    let mut w = BufWriter::with_capacity(1 << 16, tmp.as_file());
    body(&mut w)
        .and_then(|()| w.flush())
        .map_err(|e| Error::io(path, e))?;
    drop(w);
    // NamedTempFile is created private (0600); outputs are ordinary files.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io(path, e))?;
    }
    Ok(tmp)
}

/// Stream `n` pairs of `world` as JSON Lines into a temporary file, calling `each` on every
/// pair (for statistics).
fn write_pairs(
    world: &World,
    rng: &mut SeededRng,
    n: usize,
    dir: &Path,
    path: &Path,
    each: impl FnMut(&PreferencePair),
) -> Result<NamedTempFile> {
    temp_file(dir, path, |w| write_jsonl(world, rng, n, w, each))
}

/// Draw `n` pairs of `world` from `rng` and write each as one [`PairRecord`] line, calling
/// `each` on every pair after it is written. Holds one pair at a time; the text buffers are
/// reused across pairs.
pub fn write_jsonl<W: Write>(
    world: &World,
    rng: &mut SeededRng,
    n: usize,
    mut w: W,
    mut each: impl FnMut(&PreferencePair),
) -> std::io::Result<()> {
    let mut texts = [String::new(), String::new(), String::new()];
    for pair in world.pairs(rng).take(n) {
        for (text, tokens) in texts
            .iter_mut()
            .zip([&pair.prompt, &pair.chosen, &pair.rejected])
        {
            token_text(tokens, text);
        }
        let truth = pair.truth.expect("synthetic pairs carry their truth");
        let record = PairRecord {
            prompt: &pair.prompt,
            chosen: &pair.chosen,
            rejected: &pair.rejected,
            prompt_text: &texts[0],
            chosen_text: &texts[1],
            rejected_text: &texts[2],
            source: pair.source,
            type_: pair.group,
            annotator: pair.annotator,
            reward_chosen: truth.reward_chosen,
            reward_rejected: truth.reward_rejected,
            label_prob: truth.label_prob,
            flipped: truth.flipped,
        };
        serde_json::to_writer(&mut w, &record)?;
        w.write_all(b"\n")?;
        each(&pair);
    }
    Ok(())
}

/// The space-joined text form of token ids, `t3 t7 t1`, written into `out` (cleared first).
pub fn token_text(tokens: &[u32], out: &mut String) {
    out.clear();
    for (i, t) in tokens.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "t{t}");
    }
}

/// The short table `generate` prints.
pub fn summary_table(scenario: &Scenario, out: &Path, s: &WorldStats) -> String {
    let w = scenario.world();
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.3}"));
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{}: T={} S={} V={} d={} coupling={} flip={} seed={} -> {} ({} train / {} eval pairs)",
        scenario.name,
        w.types,
        w.sources,
        w.vocab,
        w.distance,
        w.coupling,
        scenario.noise.flip_rate,
        scenario.data.seed,
        out.display(),
        scenario.data.train_pairs,
        scenario.data.eval_pairs,
    );
    let _ = writeln!(
        t,
        "  cosine min/mean {} / {} (target {})   disagreement {}   JS {} bits   flips {:.3}   Bayes type acc {:.3}",
        opt(s.cosine_min),
        opt(s.cosine_mean),
        opt(s.cosine_target),
        opt(s.disagreement_rate),
        opt(s.js_bits_mean),
        s.flip_fraction,
        s.bayes_type_acc,
    );
    let _ = writeln!(
        t,
        "  {:<18} {:>9} {:>10} {:>14} {:>15}",
        "ceiling (eval)", "observed", "noiseless", "exp. observed", "exp. noiseless"
    );
    for (name, a, b, c, d) in [
        (
            "type oracle",
            s.type_oracle_acc_observed,
            s.type_oracle_acc_noiseless,
            s.type_oracle_exp_observed,
            s.type_oracle_exp_noiseless,
        ),
        (
            "prompt oracle",
            s.prompt_oracle_acc_observed,
            s.prompt_oracle_acc_noiseless,
            s.prompt_oracle_exp_observed,
            s.prompt_oracle_exp_noiseless,
        ),
        (
            "population oracle",
            s.population_oracle_acc_observed,
            s.population_oracle_acc_noiseless,
            s.population_oracle_exp_observed,
            s.population_oracle_exp_noiseless,
        ),
    ] {
        let _ = writeln!(t, "  {name:<18} {a:>9.3} {b:>10.3} {c:>14.3} {d:>15.3}");
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scenario(
        seed: u64,
        bigram: bool,
        markov: bool,
        flip: f64,
        annotators: usize,
    ) -> CheckedScenario {
        let text = format!(
            "[world]\ntypes = 3\nsources = 3\nreward = \"{}\"\nreference = \"{}\"\nannotators = {annotators}\n\
             [noise]\nflip_rate = {flip}\n[data]\ntrain_pairs = 40\neval_pairs = 30\nseed = {seed}\n",
            if bigram { "bigram" } else { "linear" },
            if markov { "markov" } else { "uniform" },
        );
        Scenario::from_toml_str(&text, "prop").unwrap()
    }

    fn read_all(dir: &Path) -> Vec<Vec<u8>> {
        OUTPUTS
            .iter()
            .map(|f| std::fs::read(dir.join(f)).unwrap())
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

        /// The same seed gives byte-identical output files; another seed changes the pairs.
        #[test]
        fn same_seed_gives_identical_bytes(seed in any::<u64>(), bigram in any::<bool>(),
                                            markov in any::<bool>(), flip in 0.0..=1.0f64,
                                            annotators in 0usize..4) {
            let s = scenario(seed, bigram, markov, flip, annotators);
            let (a, b, c) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(),
                             tempfile::tempdir().unwrap());
            write_dataset(&s, a.path(), false).unwrap();
            write_dataset(&s, b.path(), false).unwrap();
            prop_assert!(read_all(a.path()) == read_all(b.path()));
            let other = scenario(seed.wrapping_add(1), bigram, markov, flip, annotators);
            write_dataset(&other, c.path(), false).unwrap();
            prop_assert!(read_all(a.path())[0] != read_all(c.path())[0]);
        }
    }

    #[test]
    fn existing_outputs_need_force() {
        let dir = tempfile::tempdir().unwrap();
        let s = scenario(1, false, false, 0.0, 0);
        write_dataset(&s, dir.path(), false).unwrap();
        let before = read_all(dir.path());
        let err = write_dataset(&scenario(2, false, false, 0.0, 0), dir.path(), false).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        assert!(read_all(dir.path()) == before, "nothing was overwritten");
        write_dataset(&scenario(2, false, false, 0.0, 0), dir.path(), true).unwrap();
        assert!(read_all(dir.path()) != before);
        // Only the four outputs remain: no temporary files left behind.
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            OUTPUTS.len()
        );
    }

    #[test]
    fn token_text_joins_ids() {
        let mut s = String::from("stale");
        token_text(&[3, 7, 1], &mut s);
        assert_eq!(s, "t3 t7 t1");
        token_text(&[], &mut s);
        assert_eq!(s, "");
    }
}
