//! Sweep grids, shards, resume bookkeeping, merging and summaries (the parts that need no
//! training: running a cell is replaced by a closure writing a fixture `metrics.csv`).

use lpc_bench::scenario::{LatentKind, MethodName};
use lpc_bench::sweep::{
    self, Cell, CellRun, ColumnStat, Shard, SweepError, cell_dir, expand, is_finished, merge,
    run_cell_atomically, shard, summarise, write_merged,
};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn table(text: &str) -> toml::Table {
    toml::from_str(text).unwrap()
}

fn cells(text: &str) -> Vec<Cell> {
    expand(&table(text), "t").unwrap()
}

fn error(text: &str) -> String {
    expand(&table(text), "t").unwrap_err().to_string()
}

// ---------------------------------------------------------------------------------------------
// Expansion

#[test]
fn the_issue_grid_has_the_documented_count_and_ids() {
    let c = cells(
        "[sweep]\nworld.distance = [0.0, 0.25, 0.5, 0.75, 1.0]\nnoise.flip_rate = [0.1, 0.5, 0.9]\n\
         methods.codebook = [8, 16, 32, 64, 128, 256]\nseed = [0, 1, 2]\n\
         [[methods]]\nmethod = \"dpo\"\n[[methods]]\nmethod = \"lpc-dpo\"\n",
    );
    // Π global |a| · Σ_m Π accepted |a| = (5·3·3) · (1 + 6): dpo takes no codebook.
    assert_eq!(c.len(), 5 * 3 * 3 * (1 + 6));
    let ids: BTreeSet<&str> = c.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids.len(), c.len());
    // Keys sorted by canonical path: data.seed, methods.codebook, noise.flip_rate, world.distance.
    assert!(ids.contains("seed=2,codebook=16,flip_rate=0.1,distance=0.25/lpc-dpo"));
    assert!(ids.contains("seed=2,flip_rate=0.1,distance=0.25/dpo"));
    // The first cell: every axis at index 0, first method.
    assert_eq!(c[0].id, "seed=0,flip_rate=0.1,distance=0.0/dpo");
    let lpc = c
        .iter()
        .find(|c| c.id == "seed=1,codebook=64,flip_rate=0.9,distance=1.0/lpc-dpo")
        .unwrap();
    assert_eq!(lpc.scenario.data.seed, 1);
    assert_eq!(lpc.scenario.noise.flip_rate, 0.9);
    assert_eq!(lpc.scenario.world().distance, 1.0);
    assert_eq!(lpc.scenario.methods.len(), 1);
    assert_eq!(lpc.scenario.methods[0].codebook, Some(64));
    assert_eq!(lpc.scenario.sweep, None);
    assert_eq!(lpc.method, "lpc-dpo");
}

#[test]
fn a_scenario_without_sweep_has_one_cell_per_method() {
    let c = cells(
        "[[methods]]\nmethod = \"dpo\"\n[[methods]]\nmethod = \"lpc-ipo\"\nlabel = \"mine\"\n",
    );
    let ids: Vec<&str> = c.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["base/dpo", "base/mine"]);
    // Default methods (dpo, lpc-dpo) when the file lists none.
    assert_eq!(cells("").len(), 2);
}

#[test]
fn method_fields_apply_only_to_methods_that_accept_them() {
    let c = cells(
        "[sweep]\nmethods.gamma = [0.5, 1.0]\n\
         [[methods]]\nmethod = \"dpo\"\n[[methods]]\nmethod = \"simpo\"\n[[methods]]\nmethod = \"lpc-simpo\"\n",
    );
    // dpo: 1 cell; simpo and lpc-simpo: 2 each.
    assert_eq!(c.len(), 1 + 2 + 2);
    for cell in &c {
        let gets_gamma = cell.method.contains("simpo");
        assert_eq!(
            cell.scenario.methods[0].gamma.is_some(),
            gets_gamma,
            "{}",
            cell.id
        );
    }
    // A method's own value is overridden.
    let c = cells(
        "[sweep]\nmethods.codebook = [4]\n[[methods]]\nmethod = \"lpc-dpo\"\ncodebook = 32\n",
    );
    assert_eq!(c[0].scenario.methods[0].codebook, Some(4));
}

#[test]
fn train_and_method_fields_with_one_name_get_full_paths() {
    let c =
        cells("[sweep]\ntrain.lr = [0.001]\nmethods.lr = [0.01]\n[[methods]]\nmethod = \"dpo\"\n");
    assert_eq!(c[0].id, "methods.lr=0.01,train.lr=0.001/dpo");
}

#[test]
fn errors_name_the_sweep_key_and_index() {
    assert_eq!(
        error("[sweep]\nworld.distance = [0.0, 0.5, 1.5]\n"),
        "sweep.world.distance[2] must be in [0, 1]"
    );
    assert_eq!(
        error("[sweep]\nmethods.codebook = [8, 0]\n[[methods]]\nmethod = \"lpc-dpo\"\n"),
        "sweep.methods.codebook[1] must be >= 1"
    );
    let e = error("[sweep]\nworld.distnace = [0.5]\n");
    assert!(
        e.starts_with("sweep.world.distnace is not a scenario field (unknown field `distnace`"),
        "{e}"
    );
    let e = error("[sweep]\nfoo.bar = [1]\n");
    assert!(
        e.starts_with("sweep.foo.bar is not a scenario field"),
        "{e}"
    );
    let e = error("[sweep]\nworld.distance = [0.5, \"far\"]\n");
    assert!(
        e.starts_with("sweep.world.distance[1] has the wrong type"),
        "{e}"
    );
    let e = error("[sweep]\nseed = [1, -1]\n");
    assert!(e.starts_with("sweep.seed[1] has the wrong type"), "{e}");
    let e = error("[sweep]\nmethods.codebook = [8]\n[[methods]]\nmethod = \"dpo\"\n");
    assert!(
        e.starts_with("sweep.methods.codebook applies to none"),
        "{e}"
    );
    let e = error("[sweep]\nmethods.codebuk = [8]\n[[methods]]\nmethod = \"lpc-dpo\"\n");
    assert!(
        e.starts_with("sweep.methods.codebuk is not a scenario field"),
        "{e}"
    );
    assert_eq!(
        error("[sweep]\nnoise.flip_rate = []\n"),
        "sweep.noise.flip_rate must list at least one value"
    );
    let e = error("[sweep]\nnoise.flip_rate = 0.1\n");
    assert!(e.starts_with("sweep.noise.flip_rate must be a list"), "{e}");
    let e = error("[sweep]\nnoise.flip_rate = [0.1, 0.2, 0.1]\n");
    assert!(
        e.starts_with("sweep.noise.flip_rate[2] repeats sweep.noise.flip_rate[0]"),
        "{e}"
    );
    let e = error("[sweep]\nmethods.method = [\"dpo\"]\n");
    assert!(e.starts_with("sweep.methods.method cannot be swept"), "{e}");
    let e = error("[sweep]\nname = [\"a\"]\n");
    assert!(e.starts_with("sweep.name cannot be swept"), "{e}");
    // A rule broken by a combination names the cell and the field.
    let e = error("[sweep]\nworld.types = [2, 16]\n[[methods]]\nmethod = \"dpo\"\n");
    assert!(
        e.starts_with("sweep cell types=16/dpo: world.feature_dim must be >= world.types = 16"),
        "{e}"
    );
    // A method's own rule keeps its index in the file.
    let e = error(
        "[sweep]\nseed = [0]\n[[methods]]\nmethod = \"dpo\"\n[[methods]]\nmethod = \"lpc-dpo\"\nlambda = -1.0\n",
    );
    assert_eq!(
        e,
        "sweep cell seed=0/lpc-dpo: methods[1].lambda must be >= 0"
    );
}

#[test]
fn load_keeps_line_numbers_outside_the_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grid.toml");
    std::fs::write(&path, "[world]\nvocabb = 3\n[sweep]\nseed = [1]\n").unwrap();
    let e = sweep::load(&path).unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("vocabb"), "{e}");
    std::fs::write(&path, "[sweep]\nseed = [1, 2]\n").unwrap();
    let c = sweep::load(&path).unwrap();
    assert_eq!(c.len(), 2 * 2);
    assert_eq!(c[0].scenario.name, "grid");
}

/// Global axes a grid may draw from, each with valid values.
fn global_axis() -> impl Strategy<Value = (&'static str, Vec<String>)> {
    let distinct = |xs: Vec<u32>, f: fn(u32) -> String| {
        xs.into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(f)
            .collect::<Vec<_>>()
    };
    prop_oneof![
        prop::collection::vec(0u32..=100, 1..4).prop_map(move |v| (
            "world.distance",
            distinct(v, |x| format!("{:?}", x as f64 / 100.0))
        )),
        prop::collection::vec(0u32..=10, 1..4).prop_map(move |v| (
            "noise.flip_rate",
            distinct(v, |x| format!("{:?}", x as f64 / 10.0))
        )),
        prop::collection::vec(0u32..1000, 1..4)
            .prop_map(move |v| ("seed", distinct(v, |x| x.to_string()))),
        prop::collection::vec(1u32..50, 1..3)
            .prop_map(move |v| ("train.steps", distinct(v, |x| x.to_string()))),
    ]
}

const METHODS: [&str; 5] = ["dpo", "lpc-dpo", "simpo", "lpc-ipo-gaussian", "oracle-dpo"];

#[derive(Debug, Clone)]
struct Grid {
    axes: BTreeMap<&'static str, Vec<String>>,
    codebook: Vec<u32>,
    methods: Vec<&'static str>,
}

fn grid() -> impl Strategy<Value = Grid> {
    (
        prop::collection::vec(global_axis(), 0..4),
        prop::collection::btree_set(1u32..300, 0..4),
        prop::sample::subsequence(METHODS.to_vec(), 1..=METHODS.len()),
    )
        .prop_map(|(axes, codebook, methods)| Grid {
            axes: axes.into_iter().collect(),
            codebook: codebook.into_iter().collect(),
            methods,
        })
        // methods.codebook needs a discrete LPC method to apply to.
        .prop_filter("codebook axis needs an lpc method", |g| {
            g.codebook.is_empty() || g.methods.contains(&"lpc-dpo")
        })
}

impl Grid {
    /// TOML text; `nested` writes `a.b = [..]` under [sweep], else one quoted key per axis;
    /// `reverse` lists every axis' values backwards.
    fn text(&self, nested: bool, reverse: bool) -> String {
        let mut t = String::from("[sweep]\n");
        let list = |v: &[String]| {
            let mut v = v.to_vec();
            if reverse {
                v.reverse();
            }
            format!("[{}]", v.join(", "))
        };
        let mut lines: Vec<(String, String)> = self
            .axes
            .iter()
            .map(|(k, v)| (k.to_string(), list(v)))
            .collect();
        if !self.codebook.is_empty() {
            let v: Vec<String> = self.codebook.iter().map(|x| x.to_string()).collect();
            lines.push(("methods.codebook".to_string(), list(&v)));
        }
        if reverse {
            lines.reverse();
        }
        for (k, v) in lines {
            if nested {
                t.push_str(&format!("{k} = {v}\n"));
            } else {
                t.push_str(&format!("\"{k}\" = {v}\n"));
            }
        }
        for m in &self.methods {
            t.push_str(&format!("[[methods]]\nmethod = \"{m}\"\n"));
        }
        t
    }

    /// The documented count: Π global |a| · Σ_m Π accepted |a|, where only discrete LPC
    /// methods accept `codebook`.
    fn expected_count(&self) -> usize {
        let global: usize = self.axes.values().map(Vec::len).product();
        let per_method: usize = self
            .methods
            .iter()
            .map(|m| {
                let lpc = MethodName::parse(m).unwrap().latent == LatentKind::Lpc;
                if lpc && !self.codebook.is_empty() {
                    self.codebook.len()
                } else {
                    1
                }
            })
            .sum();
        global * per_method
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn expansion_count_ids_and_determinism(g in grid()) {
        let text = g.text(true, false);
        let a = cells(&text);
        prop_assert_eq!(a.len(), g.expected_count());
        // When every axis applies to every method: product of list lengths × methods.
        if g.codebook.is_empty() {
            let product: usize = g.axes.values().map(Vec::len).product();
            prop_assert_eq!(a.len(), product * g.methods.len());
        }
        let ids: BTreeSet<&str> = a.iter().map(|c| c.id.as_str()).collect();
        prop_assert_eq!(ids.len(), a.len());
        for c in &a {
            prop_assert!(c.id.split('/').count() == 2);
            prop_assert!(c.id.chars().all(|ch| ch.is_ascii_alphanumeric() || "._+-=,/~".contains(ch)), "{}", c.id);
            prop_assert_eq!(c.scenario.methods.len(), 1);
            prop_assert!(c.scenario.sweep.is_none());
        }
        // Deterministic: the same text gives the same cells in the same order.
        prop_assert_eq!(&a, &cells(&text));
        // Reordering the file (quoted keys, reversed lists and keys) keeps every id and its
        // scenario; only the list positions in `overrides` change.
        let b = cells(&g.text(false, true));
        let by_id = |cs: &[Cell]| cs.iter().map(|c| (c.id.clone(), c.scenario.clone())).collect::<BTreeMap<_, _>>();
        prop_assert_eq!(by_id(&a), by_id(&b));
    }

    #[test]
    fn ids_survive_adding_values(g in grid(), drop in 0usize..4) {
        // Drop one value from one axis (when it has more than one): the smaller grid's cells
        // are a subset of the larger one's, with the same ids and scenarios.
        let mut small = g.clone();
        if let Some((_, v)) = small.axes.iter_mut().filter(|(_, v)| v.len() > 1).nth(drop % 4) {
            v.remove(0);
        }
        let big: BTreeMap<String, Cell> = cells(&g.text(true, false)).into_iter().map(|c| (c.id.clone(), c)).collect();
        for c in cells(&small.text(true, false)) {
            let b = big.get(&c.id);
            prop_assert!(b.is_some(), "{} missing", c.id);
            prop_assert_eq!(&b.unwrap().scenario, &c.scenario);
        }
    }

    #[test]
    fn shards_are_disjoint_and_cover(len in 0usize..200) {
        let items: Vec<usize> = (0..len).collect();
        for n in 1..10 {
            let mut seen = vec![0usize; len];
            for i in 0..n {
                let part = shard(&items, Shard::new(i, n).unwrap());
                // Round robin: sizes differ by at most one, order is kept.
                prop_assert!(part.len() == len / n || part.len() == len.div_ceil(n));
                prop_assert!(part.windows(2).all(|w| w[0] < w[1]));
                for &&k in &part {
                    prop_assert_eq!(k % n, i);
                    seen[k] += 1;
                }
            }
            prop_assert!(seen.iter().all(|&s| s == 1));
        }
    }
}

#[test]
fn shard_arguments_parse_zero_based() {
    let s: Shard = "2/4".parse().unwrap();
    assert_eq!((s.index(), s.count()), (2, 4));
    assert_eq!(s.to_string(), "2/4");
    assert_eq!(" 0 / 1 ".parse::<Shard>().unwrap(), Shard::ALL);
    for bad in ["4/4", "1/0", "a/b", "3", "-1/4", "1/4/2", ""] {
        let e = bad.parse::<Shard>().unwrap_err();
        assert!(matches!(e, SweepError::Shard(_)), "{bad}");
        assert!(e.to_string().contains("0 <= I < N"), "{e}");
    }
}

// ---------------------------------------------------------------------------------------------
// Resume and merge

const GRID: &str = "[sweep]\nseed = [0, 1, 2]\nworld.distance = [0.0, 0.5]\n\
    [[methods]]\nmethod = \"dpo\"\n[[methods]]\nmethod = \"lpc-dpo\"\n";

/// A fixture standing in for the run pipeline: a one-row metrics.csv for the cell.
fn fake_metrics(cell: &Cell, accuracy: &str, nmi: &str) -> String {
    format!("method,accuracy,nmi\n{},{accuracy},{nmi}\n", cell.method)
}

fn finish(out: &Path, cell: &Cell, body: String) -> CellRun {
    run_cell_atomically(out, cell, |dir| {
        std::fs::write(dir.join("metrics.csv"), body).map_err(|e| lpc_bench::Error::io(dir, e))
    })
    .unwrap()
}

#[test]
fn finished_cells_are_skipped_and_stale_ones_rerun() {
    let out = tempfile::tempdir().unwrap();
    let c = cells(GRID);
    let cell = &c[0];
    assert_eq!(
        finish(out.path(), cell, fake_metrics(cell, "0.5", "")),
        CellRun::Ran
    );
    let dir = cell_dir(out.path(), cell);
    assert!(is_finished(&dir));
    // A finished cell is never run again.
    let ran = run_cell_atomically(out.path(), cell, |_| panic!("must not run")).unwrap();
    assert_eq!(ran, CellRun::Skipped);

    // A stale folder (killed run: files but no DONE) is rerun and moved aside, not deleted.
    let stale = &c[1];
    let stale_dir = cell_dir(out.path(), stale);
    std::fs::create_dir_all(&stale_dir).unwrap();
    std::fs::write(stale_dir.join("metrics.csv"), "method,accuracy\nhalf,").unwrap();
    assert!(!is_finished(&stale_dir));
    assert_eq!(merge(out.path()).unwrap().rows.len(), 1);
    assert_eq!(
        finish(out.path(), stale, fake_metrics(stale, "0.6", "")),
        CellRun::Ran
    );
    assert!(is_finished(&stale_dir));
    let siblings: Vec<String> = std::fs::read_dir(stale_dir.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        siblings
            .iter()
            .any(|n| n.starts_with(&format!("{}.stale-", stale.method))),
        "{siblings:?}"
    );
    assert_eq!(merge(out.path()).unwrap().rows.len(), 2);

    // A failing run leaves no finished cell.
    let failing = &c[2];
    let e = run_cell_atomically(out.path(), failing, |_| Err(lpc_bench::Error::msg("boom")));
    assert!(e.is_err());
    assert!(!is_finished(&cell_dir(out.path(), failing)));
    assert_eq!(merge(out.path()).unwrap().rows.len(), 2);
}

#[test]
fn temporary_folders_never_count_even_with_done() {
    // A run killed between writing DONE into its temporary folder and the rename.
    let out = tempfile::tempdir().unwrap();
    let c = cells(GRID);
    finish(out.path(), &c[0], fake_metrics(&c[0], "0.5", ""));
    let dir = cell_dir(out.path(), &c[0]);
    let tmp = dir.with_file_name(format!("{}.tmp-1-abc", c[0].method));
    std::fs::create_dir_all(&tmp).unwrap();
    for f in ["metrics.csv", "cell.toml", "DONE"] {
        std::fs::copy(dir.join(f), tmp.join(f)).unwrap();
    }
    assert_eq!(merge(out.path()).unwrap().rows.len(), 1);
}

#[test]
fn merged_table_has_overrides_in_front_and_sorts_numerically() {
    let out = tempfile::tempdir().unwrap();
    let c = cells(
        "[sweep]\nseed = [2, 10]\n[[methods]]\nmethod = \"dpo\"\n[[methods]]\nmethod = \"lpc-dpo\"\n",
    );
    for (k, cell) in c.iter().enumerate() {
        let nmi = if cell.method == "dpo" {
            String::new()
        } else {
            format!("0.{k}")
        };
        finish(
            out.path(),
            cell,
            fake_metrics(cell, &format!("0.{}", k + 5), &nmi),
        );
    }
    let t = merge(out.path()).unwrap();
    let path = write_merged(out.path(), &t).unwrap();
    // Expected bytes, by hand: seed 2 before 10 (numeric order), dpo before lpc-dpo, dpo's nmi
    // blank; cells in expansion order are seed=2/dpo (k=0), seed=2/lpc-dpo (1), seed=10/dpo
    // (2), seed=10/lpc-dpo (3).
    assert_eq!(
        std::fs::read_to_string(path).unwrap(),
        "cell,data.seed,method,accuracy,nmi\n\
         seed=2/dpo,2,dpo,0.5,\n\
         seed=2/lpc-dpo,2,lpc-dpo,0.6,0.1\n\
         seed=10/dpo,10,dpo,0.7,\n\
         seed=10/lpc-dpo,10,lpc-dpo,0.8,0.3\n"
    );
}

#[test]
fn summary_is_mean_and_sample_std_over_seeds() {
    let out = tempfile::tempdir().unwrap();
    let c = cells(GRID);
    // accuracy = 0.5 + 0.2·seed + distance; nmi blank for dpo, 0.1·seed for lpc-dpo.
    for cell in &c {
        let seed = cell.scenario.data.seed as f64;
        let acc = 0.5 + 0.2 * seed + cell.scenario.world().distance;
        let nmi = if cell.method == "dpo" {
            String::new()
        } else {
            format!("{}", 0.1 * seed)
        };
        finish(out.path(), cell, fake_metrics(cell, &acc.to_string(), &nmi));
    }
    let s = summarise(&merge(out.path()).unwrap());
    assert_eq!(s.group_columns, ["world.distance"]);
    assert_eq!(s.columns, ["method", "accuracy", "nmi"]);
    assert_eq!(s.numeric, [false, true, true]);
    assert_eq!(s.rows.len(), 2 * 2);
    let row = |d: &str, m: &str| {
        s.rows
            .iter()
            .find(|r| r.group == [d] && r.method == m)
            .unwrap()
    };
    let close = |x: Option<f64>, y: f64| (x.unwrap() - y).abs() < 1e-12;
    // Seeds 0, 1, 2: accuracy 0.5+d, 0.7+d, 0.9+d → mean 0.7+d; deviations ±0.2, 0 →
    // sample std sqrt(0.08 / 2) = 0.2.
    for (d, dv) in [("0.0", 0.0), ("0.5", 0.5)] {
        let r = row(d, "dpo");
        assert_eq!(r.n, 3);
        assert_eq!(r.stats[0], ColumnStat::Text("dpo".to_string()));
        let ColumnStat::Numeric { mean, std, k } = r.stats[1] else {
            panic!()
        };
        assert!(close(mean, 0.7 + dv) && close(std, 0.2) && k == 3);
        // Blanks stay blank.
        assert_eq!(
            r.stats[2],
            ColumnStat::Numeric {
                mean: None,
                std: None,
                k: 0
            }
        );
        // nmi 0, 0.1, 0.2 → mean 0.1, std sqrt(0.02 / 2) = 0.1.
        let ColumnStat::Numeric { mean, std, .. } = row(d, "lpc-dpo").stats[2] else {
            panic!()
        };
        assert!(close(mean, 0.1) && close(std, 0.1));
    }
    let csv = String::from_utf8(s.to_csv().unwrap()).unwrap();
    assert_eq!(row("0.5", "lpc-dpo").label, "distance=0.5/lpc-dpo");
    assert!(
        csv.starts_with(
            "group,world.distance,n_seeds,method,accuracy_mean,accuracy_std,nmi_mean,nmi_std\n\
             distance=0.0/dpo,0.0,3,dpo,"
        ),
        "{csv}"
    );
    // One seed: the mean is the value and the standard deviation undefined (NaN, a blank cell).
    let one = lpc_bench::metrics::mean_std(&[1.0]);
    assert!(one.mean == 1.0 && one.std.is_nan());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn merging_is_idempotent_and_independent_of_run_order(
        values in prop::collection::vec((0u32..1000, prop::bool::ANY), 12),
        order in Just((0..12).collect::<Vec<usize>>()).prop_shuffle(),
        finished in prop::collection::vec(prop::bool::ANY, 12),
    ) {
        let c = cells(GRID);
        prop_assert_eq!(c.len(), 12);
        let body = |k: usize| {
            let (v, blank) = values[k];
            let nmi = if blank { String::new() } else { format!("{}", v as f64 / 7.0) };
            fake_metrics(&c[k], &format!("{}", v as f64 / 1000.0), &nmi)
        };
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for k in 0..12 {
            if finished[k] {
                finish(a.path(), &c[k], body(k));
            } else {
                // An unfinished, stale folder: never merged.
                let d = cell_dir(a.path(), &c[k]);
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(d.join("metrics.csv"), body(k)).unwrap();
            }
        }
        for &k in &order {
            if finished[k] {
                finish(b.path(), &c[k], body(k));
            }
        }
        let t1 = merge(a.path()).unwrap();
        prop_assert_eq!(t1.rows.len(), finished.iter().filter(|f| **f).count());
        let p = write_merged(a.path(), &t1).unwrap();
        let first = std::fs::read(&p).unwrap();
        let t2 = merge(a.path()).unwrap();
        write_merged(a.path(), &t2).unwrap();
        prop_assert_eq!(&first, &std::fs::read(&p).unwrap());
        let other = write_merged(b.path(), &merge(b.path()).unwrap()).unwrap();
        prop_assert_eq!(&first, &std::fs::read(other).unwrap());
    }
}

// ---------------------------------------------------------------------------------------------
// Cost

#[test]
fn cost_follows_the_documented_formula() {
    let base = "[world]\nvocab = 3\nprompt_len = 2\nresponse_len = 1\ntypes = 2\nfeature_dim = 2\n\
        [model]\nd_model = 4\nlayers = 1\nheads = 1\nd_ff = 8\nwarmup_steps = 5\n\
        [train]\nsteps = 10\nbatch_size = 2\neval_every = 5\n[data]\neval_pairs = 3\n";
    let one = |m: &str| {
        let c = cells(&format!("{base}[[methods]]\nmethod = \"{m}\"\n"));
        sweep::relative_cost(&c[0].scenario)
    };
    // L = 2 + 1 + 1 = 4, V = 4: F = 4·(1·(4·16 + 2·4·8 + 2·4·4) + 4·4) = 704.
    // warmup = 5·2·3·704 = 21120; evals = ⌊10/5⌋ + 1 = 3.
    // dpo (r = 1): train = 10·2·(6 + 2)·704 = 112640, eval = 3·3·4·704 = 25344.
    assert_eq!(one("dpo"), 21120.0 + 112640.0 + 25344.0);
    // simpo (r = 0): train = 10·2·6·704 = 84480, eval = 3·3·2·704 = 12672.
    assert_eq!(one("simpo"), 21120.0 + 84480.0 + 12672.0);
}
