//! One test row per validation rule of a scenario file.
//!
//! Every place the validators make a `RuleError` (a `return Err(..)` in `Scenario::validate`,
//! `validate_real_data`, `validate_method`, `DataFile::validate`, `validate_pairwise`,
//! `WorldSpec::validate`, `ModelSpec::validate`, `TrainSpec::validate` and `plan::check_bounds`,
//! or a call of one of their rule helpers `only`, `positive`, `non_empty` and `bound`) has one
//! row in [`RULES`]: a scenario that breaks that rule and no earlier one, the field the error
//! must name, and a piece of the rule text.
//!
//! Oracle, per row: the scenario text is loaded through the public loader
//! (`Scenario::from_toml_str`), which must fail naming exactly that field with a rule containing
//! that text; and the same scenario with the offending line repaired must load. A line ending in
//! `#! <replacement>` is the offending line: the violating scenario keeps what stands before the
//! `#!`, the repaired one puts the replacement in its place (nothing after `#!` deletes the line).
//! The repair shows the row tests that rule alone, not some other rule its text also breaks.
//!
//! Oracle for coverage ([`every_rule_site_has_a_row`]): the rule sites are counted in the
//! validators' source text (read with `include_str!`), and the count must equal the number of
//! rows. A new rule adds a site, so the test fails until a row is added for it. A site inside a
//! loop over several fields counts once; its row tests one field and [`LOOP_FIELDS`] the others.

use lpc_bench::scenario::{Scenario, ScenarioError};

/// A real-data scenario with one `hh-rlhf` file; the argument continues the file's table.
macro_rules! hh {
    ($($rest:tt)*) => {
        concat!(
            "[[data.files]]\npath = \"x.jsonl\"\nformat = \"hh-rlhf\"\n",
            $($rest)*
        )
    };
}

/// One `ultrafeedback` file (its groups are its aspects).
macro_rules! uf {
    ($($rest:tt)*) => {
        concat!(
            "[[data.files]]\npath = \"x.jsonl\"\nformat = \"ultrafeedback\"\n",
            $($rest)*
        )
    };
}

/// One `pairwise` file with a fixed group.
macro_rules! pw {
    ($($rest:tt)*) => {
        concat!(
            "[[data.files]]\npath = \"x.jsonl\"\nformat = \"pairwise\"\ngroup = \"g\"\n",
            $($rest)*
        )
    };
}

/// One `pairwise` file whose winner comes from a label; the argument names the responses.
macro_rules! pwl {
    ($($rest:tt)*) => {
        pw!(concat!(
            "label_field = \"l\"\nlabel_map = { \"0\" = \"first\", \"1\" = \"second\" }\n",
            $($rest)*
        ))
    };
}

/// One `pairwise` file with per-annotator votes and responses by field (no group yet).
macro_rules! votes {
    ($($rest:tt)*) => {
        concat!(
            "[[data.files]]\npath = \"x.jsonl\"\nformat = \"pairwise\"\nvote_fields = [\"v1\", \
             \"v2\"]\nfirst_field = \"a\"\nsecond_field = \"b\"\nlabel_map = { \"0\" = \"first\", \
             \"1\" = \"second\" }\n",
            $($rest)*
        )
    };
}

/// (scenario with a `#!` line, field the error names, piece of the rule text).
type Row = (&'static str, &'static str, &'static str);

/// One row per rule site, in source order.
const RULES: &[Row] = &[
    // plan::check_bounds
    (
        "[data]\ntrain_pairs = 10000001 #!",
        "data.train_pairs",
        "sanity bound",
    ),
    (
        "[train]\nsteps = 10000001 #!",
        "train.steps",
        "sanity bound",
    ),
    (
        "[train]\nbatch_size = 1000001 #!",
        "train.batch_size",
        "sanity bound",
    ),
    (
        "[train]\nlr_warmup_steps = 10000001 #!",
        "train.lr_warmup_steps",
        "sanity bound",
    ),
    (
        "[train]\nthreads = 4097 #!",
        "train.threads",
        "sanity bound",
    ),
    (
        "[train]\nepochs = 1000001 #!",
        "train.epochs",
        "sanity bound",
    ),
    (
        "[data]\ntrain_pairs = 1000\n[train]\nbatch_size = 1\nepochs = 100000 #! epochs = 1",
        "train.epochs",
        "gives 100000000 steps",
    ),
    (
        "[model]\nd_model = 16385 #!",
        "model.d_model",
        "sanity bound",
    ),
    ("[model]\nlayers = 257 #!", "model.layers", "sanity bound"),
    ("[model]\nheads = 16385 #!", "model.heads", "sanity bound"),
    ("[model]\nd_ff = 262145 #!", "model.d_ff", "sanity bound"),
    (
        "[model]\nwarmup_steps = 10000001 #!",
        "model.warmup_steps",
        "sanity bound",
    ),
    ("[world]\nvocab = 1000001 #!", "world.vocab", "sanity bound"),
    (
        "[world]\nprompt_len = 65537 #!",
        "world.prompt_len",
        "sanity bound",
    ),
    (
        "[world]\nresponse_len = 65537 #!",
        "world.response_len",
        "sanity bound",
    ),
    (
        "[world]\nsources = 65537 #!",
        "world.sources",
        "sanity bound",
    ),
    ("[world]\ntypes = 1025 #!", "world.types", "sanity bound"),
    (
        "[world]\nfeature_dim = 65537 #!",
        "world.feature_dim",
        "sanity bound",
    ),
    (
        "[world]\nannotators = 10000001 #!",
        "world.annotators",
        "sanity bound",
    ),
    (
        "[data]\nmax_prompt_tokens = 65537 #!",
        "data.max_prompt_tokens",
        "sanity bound",
    ),
    (
        "[data]\nmax_response_tokens = 65537 #!",
        "data.max_response_tokens",
        "sanity bound",
    ),
    // The `methods` count bound: the row is built in `too_many_methods` and checked there; this
    // entry stands for it in the count (its text is replaced when the rows are run).
    ("", "methods", "sanity bound"),
    (
        "[[methods]]\nmethod = \"lpc-dpo\"\ncodebook = 65537 #!",
        "methods[0].codebook",
        "sanity bound",
    ),
    (
        "[[methods]]\nmethod = \"lpc-dpo\"\ncontext = 1025 #!",
        "methods[0].context",
        "sanity bound",
    ),
    (
        "[[methods]]\nmethod = \"lpc-dpo-gaussian\"\nlatent_dim = 16385 #!",
        "methods[0].latent_dim",
        "sanity bound",
    ),
    (
        "[[methods]]\nmethod = \"dpo\"\nsteps = 10000001 #!",
        "methods[0].steps",
        "sanity bound",
    ),
    // Scenario::validate
    ("name = \"a/b\" #! name = \"ab\"", "name", "path separators"),
    (
        "[noise]\nflip_rate = 1.5 #!",
        "noise.flip_rate",
        "must be in [0, 1]",
    ),
    (
        "[data]\ntrain_pairs = 0 #!",
        "data.train_pairs",
        "must be >= 1",
    ),
    (
        "[data]\neval_pairs = 0 #!",
        "data.eval_pairs",
        "must be >= 1",
    ),
    ("[data]\nval_pairs = 0 #!", "data.val_pairs", "must be >= 1"),
    (
        "[world]\nannotators = 10\n[data]\nheldout_annotators = 1.0 #!",
        "data.heldout_annotators",
        "must be in [0, 1)",
    ),
    (
        "[data]\nheldout_annotators = 0.2 #!",
        "data.heldout_annotators",
        "annotators >= 2",
    ),
    ("methods = [] #!", "methods", "at least one method"),
    (
        "[[methods]]\nmethod = \"dpo\"\n[[methods]]\nmethod = \"dpo\"\nlabel = \"dpo\" #! label = \"dpo2\"",
        "methods[1].label",
        "must be unique",
    ),
    // Scenario::validate_real_data
    (
        "[data]\neval_fraction = 0.5 #!",
        "data.eval_fraction",
        "applies only to real data",
    ),
    (
        "[model]\npretrained = \"m.gguf\" #!",
        "model.pretrained",
        "needs real data",
    ),
    (
        concat!(
            "[model]\npretrained = \"m.gguf\"\n[data]\ntokenizer = \"byte\" #!\n",
            hh!("group = \"g\"")
        ),
        "data.tokenizer",
        "must be left unset with model.pretrained",
    ),
    (
        concat!(
            "[model]\npretrained = \"m.gguf\"\n[train]\nprecision = \"bf16\" #!\n",
            hh!("group = \"g\"")
        ),
        "train.precision",
        "must be \"f32\" with model.pretrained",
    ),
    (hh!("group = \"g\"\n[world] #!"), "world", "must be absent"),
    (
        concat!(
            "[data]\neval_fraction = 1.0 #! eval_fraction = 0.5\n",
            hh!("group = \"g\"")
        ),
        "data.eval_fraction",
        "must be in (0, 1)",
    ),
    (
        concat!("[data]\nmax_prompt_tokens = 0 #!\n", hh!("group = \"g\"")),
        "data.max_prompt_tokens",
        "must be >= 1",
    ),
    (
        concat!("[data]\nmax_response_tokens = 0 #!\n", hh!("group = \"g\"")),
        "data.max_response_tokens",
        "must be >= 1",
    ),
    (
        concat!("[data]\nmax_drop_fraction = 1.5 #!\n", hh!("group = \"g\"")),
        "data.max_drop_fraction",
        "must be in [0, 1]",
    ),
    (
        concat!("[data]\ntokenizer = \"\" #!\n", hh!("group = \"g\"")),
        "data.tokenizer",
        "must be \"byte\" or the path",
    ),
    // DataFile::validate
    (
        "[[data.files]]\npath = \"\" #! path = \"x.jsonl\"\nformat = \"hh-rlhf\"\ngroup = \"g\"",
        "data.files[0].path",
        "must not be empty",
    ),
    (
        hh!("group = \"g\"\nlimit = 0 #!"),
        "data.files[0].limit",
        "must be >= 1",
    ),
    (
        hh!("group = \"\" #! group = \"g\""),
        "data.files[0].group",
        "must not be empty",
    ),
    (
        hh!("group_field = \"\" #! group_field = \"g\""),
        "data.files[0].group_field",
        "must not be empty",
    ),
    (
        uf!("group = \"g\" #!"),
        "data.files[0].group",
        "does not apply to format = \"ultrafeedback\"",
    ),
    (
        votes!("annotator_as = \"group\"\ngroup = \"g\" #!"),
        "data.files[0].group",
        "cannot be combined with annotator_as = \"group\"",
    ),
    (
        hh!("#! group = \"g\""),
        "data.files[0].group",
        "must be set for format = \"hh-rlhf\"",
    ),
    (
        hh!("group = \"g\"\ngroup_field = \"h\" #!"),
        "data.files[0].group_field",
        "cannot be combined with group",
    ),
    (
        hh!("group = \"g\"\naspects = [\"helpfulness\"] #!"),
        "data.files[0].aspects",
        "applies only to format = \"ultrafeedback\" or \"pku-saferlhf\"",
    ),
    (
        hh!("group = \"g\"\nprompt_field = \"p\" #!"),
        "data.files[0].prompt_field",
        "applies only to format = \"jsonl\" or \"pairwise\"",
    ),
    (
        "[[data.files]]\npath = \"x.jsonl\"\nformat = \"jsonl\"\ngroup = \"g\"\nprompt_field = \"\" #!",
        "data.files[0].prompt_field",
        "must not be empty",
    ),
    (
        uf!("aspects = [] #!"),
        "data.files[0].aspects",
        "must name at least one aspect",
    ),
    (
        uf!("aspects = [\"kindness\"] #!"),
        "data.files[0].aspects",
        "must be among helpfulness",
    ),
    (
        uf!("aspects = [\"honesty\", \"honesty\"] #! aspects = [\"honesty\"]"),
        "data.files[0].aspects",
        "names 'honesty' twice",
    ),
    // DataFile::validate_pairwise
    (
        hh!("group = \"g\"\nfirst_field = \"a\" #!"),
        "data.files[0].first_field",
        "applies only to format = \"pairwise\"",
    ),
    (
        pwl!("first_field = \"\" #! first_field = \"a\"\nsecond_field = \"b\""),
        "data.files[0].first_field",
        "must not be empty",
    ),
    (
        pw!("prompt_fields = [] #!"),
        "data.files[0].prompt_fields",
        "must name at least one field",
    ),
    (
        pw!("prompt_fields = [\"a\", \"\"] #! prompt_fields = [\"a\"]"),
        "data.files[0].prompt_fields",
        "entry 1 must not be empty",
    ),
    (
        pw!("prompt_fields = [\"a\", \"a\"] #! prompt_fields = [\"a\"]"),
        "data.files[0].prompt_fields",
        "names 'a' twice",
    ),
    (
        pw!("prompt_fields = [\"a\"]\nprompt_field = \"p\" #!"),
        "data.files[0].prompt_fields",
        "cannot be combined with prompt_field",
    ),
    (
        pw!("prompt_separator = \" \" #!"),
        "data.files[0].prompt_separator",
        "applies only with prompt_fields",
    ),
    (
        pwl!("first_field = \"a\"\nsecond_field = \"b\"\nvote_fields = [\"v\"] #!"),
        "data.files[0].vote_fields",
        "cannot be combined with label_field",
    ),
    (
        pwl!("first_field = \"a\"\nsecond_field = \"b\"\nannotator_as = \"annotator\" #!"),
        "data.files[0].annotator_as",
        "applies only with vote_fields",
    ),
    (
        pw!("first_field = \"a\" #!"),
        "data.files[0].first_field",
        "applies only with label_field or vote_fields",
    ),
    (
        pwl!("first_field = \"a\"\nsecond_field = \"b\"\nchosen_field = \"c\" #!"),
        "data.files[0].chosen_field",
        "cannot be combined with label_field or vote_fields",
    ),
    (
        pwl!("first_field = \"a\"\nsecond_field = \"a\" #! second_field = \"b\""),
        "data.files[0].second_field",
        "must differ from first_field",
    ),
    (
        pwl!("first_field = \"a\" #!\nresponses_field = \"r\""),
        "data.files[0].responses_field",
        "cannot be combined with first_field / second_field",
    ),
    (
        pwl!("#! first_field = \"a\"\nsecond_field = \"b\""),
        "data.files[0].first_field",
        "must be set with label_field or vote_fields",
    ),
    (
        pwl!("first_field = \"a\"\nsecond_field = \"b\"\nresponse_indices = [0, 2] #!"),
        "data.files[0].response_indices",
        "applies only with responses_field",
    ),
    (
        pwl!("responses_field = \"r\"\nresponse_indices = [1, 1] #! response_indices = [1, 0]"),
        "data.files[0].response_indices",
        "must name two different indices",
    ),
    (
        pw!(
            "label_field = \"l\"\nfirst_field = \"a\"\nsecond_field = \"b\"\n\
             #! label_map = { \"0\" = \"first\", \"1\" = \"second\" }"
        ),
        "data.files[0].label_map",
        "must be set with label_field or vote_fields",
    ),
    (
        pw!(
            "label_field = \"l\"\nfirst_field = \"a\"\nsecond_field = \"b\"\n\
             label_map = {} #! label_map = { \"0\" = \"first\", \"1\" = \"second\" }"
        ),
        "data.files[0].label_map",
        "must map at least one value",
    ),
    (
        pw!(
            "label_field = \"l\"\nfirst_field = \"a\"\nsecond_field = \"b\"\n\
             label_map = { \"0\" = \"first\", \"2\" = \"tie\" } #! label_map = { \"0\" = \"first\", \"1\" = \"second\" }"
        ),
        "data.files[0].label_map",
        "must map some value to \"first\" and some value to \"second\"",
    ),
    // Scenario::validate_method
    (
        "[[methods]]\nmethod = \"xpo\" #! method = \"dpo\"",
        "methods[0].method",
        "must be [lpc-|oracle-]",
    ),
    (
        "[[methods]]\nmethod = \"dpo\"\nlabel = \"a/b\" #! label = \"ab\"",
        "methods[0].label",
        "must be non-empty without",
    ),
    (
        "[[methods]]\nmethod = \"dpo\"\ngamma = 1.0 #!",
        "methods[0].gamma",
        "applies only to simpo methods",
    ),
    (
        "[[methods]]\nmethod = \"dpo\"\neps = 0.1 #!",
        "methods[0].eps",
        "applies only to cdpo/rdpo methods",
    ),
    (
        "[[methods]]\nmethod = \"oracle-dpo\"\nlambda = 0.1 #!",
        "methods[0].lambda",
        "applies only to lpc methods",
    ),
    (
        "[[methods]]\nmethod = \"dpo\"\ncodebook = 4 #!",
        "methods[0].codebook",
        "applies only to discrete lpc methods",
    ),
    (
        "[[methods]]\nmethod = \"dpo\"\ntau = 1.0 #!",
        "methods[0].tau",
        "applies only to discrete lpc methods",
    ),
    (
        "[[methods]]\nmethod = \"dpo\"\ntau_end = 0.5 #!",
        "methods[0].tau_end",
        "applies only to discrete lpc methods",
    ),
    (
        "[[methods]]\nmethod = \"lpc-dpo-gaussian\"\nhard = true #!",
        "methods[0].hard",
        "applies only to discrete lpc methods",
    ),
    (
        "[[methods]]\nmethod = \"dpo\"\ninference = \"argmax\" #!",
        "methods[0].inference",
        "applies only to discrete lpc methods",
    ),
    (
        "[[methods]]\nmethod = \"dpo\"\nprior_schedule = \"off\" #!",
        "methods[0].prior_schedule",
        "applies only to lpc methods",
    ),
    (
        "[[methods]]\nmethod = \"dpo\"\nlambda_warmup = 0.1 #!",
        "methods[0].lambda_warmup",
        "applies only to lpc methods",
    ),
    (
        "[[methods]]\nmethod = \"dpo\"\nfree_bits = 0.1 #!",
        "methods[0].free_bits",
        "applies only to lpc methods",
    ),
    (
        "[[methods]]\nmethod = \"dpo\"\ndiversity = 0.1 #!",
        "methods[0].diversity",
        "applies only to discrete lpc methods",
    ),
    (
        "[[methods]]\nmethod = \"lpc-dpo-gaussian\"\ndiversity_until = 0.5 #!",
        "methods[0].diversity_until",
        "applies only to discrete lpc methods",
    ),
    (
        "[[methods]]\nmethod = \"dpo\"\ncontext = 1 #!",
        "methods[0].context",
        "applies only to discrete lpc methods",
    ),
    (
        "[[methods]]\nmethod = \"lpc-dpo\"\ncontext_batches = \"fresh\" #!",
        "methods[0].context_batches",
        "needs context >= 1",
    ),
    (
        "[[methods]]\nmethod = \"dpo\"\nposterior_pool = \"mean\" #!",
        "methods[0].posterior_pool",
        "applies only to lpc methods",
    ),
    (
        "[[methods]]\nmethod = \"lpc-dpo\"\nlatent_dim = 8 #!",
        "methods[0].latent_dim",
        "applies only to gaussian methods",
    ),
    (
        "[[methods]]\nmethod = \"dpo\"\nbeta = 0.0 #! beta = 0.1",
        "methods[0].beta",
        "must be > 0",
    ),
    (
        "[[methods]]\nmethod = \"lpc-dpo\"\ntau = 0.0 #! tau = 1.0",
        "methods[0].tau",
        "must be > 0",
    ),
    (
        "[[methods]]\nmethod = \"lpc-dpo\"\ntau_end = nan #! tau_end = 0.5",
        "methods[0].tau_end",
        "must be > 0",
    ),
    (
        "[[methods]]\nmethod = \"dpo\"\nlr = inf #! lr = 0.001",
        "methods[0].lr",
        "must be > 0",
    ),
    (
        "[[methods]]\nmethod = \"simpo\"\ngamma = inf #! gamma = 1.0",
        "methods[0].gamma",
        "must be finite",
    ),
    (
        "[[methods]]\nmethod = \"cdpo\"\neps = 0.5 #! eps = 0.1",
        "methods[0].eps",
        "must be in [0, 0.5)",
    ),
    (
        "[[methods]]\nmethod = \"lpc-dpo\"\nlambda = -1.0 #! lambda = 0.0",
        "methods[0].lambda",
        "must be >= 0",
    ),
    (
        "[[methods]]\nmethod = \"lpc-dpo\"\ncodebook = 0 #! codebook = 1",
        "methods[0].codebook",
        "must be >= 1",
    ),
    (
        "[[methods]]\nmethod = \"lpc-dpo\"\nlambda_warmup = 1.5 #! lambda_warmup = 1.0",
        "methods[0].lambda_warmup",
        "must be in [0, 1]",
    ),
    (
        "[[methods]]\nmethod = \"lpc-dpo\"\nfree_bits = -1.0 #! free_bits = 0.0",
        "methods[0].free_bits",
        "must be >= 0",
    ),
    (
        "[[methods]]\nmethod = \"lpc-dpo\"\ndiversity = -0.5 #! diversity = 0.0",
        "methods[0].diversity",
        "must be >= 0",
    ),
    (
        "[[methods]]\nmethod = \"lpc-dpo\"\ndiversity_until = 0.0 #! diversity_until = 1.0",
        "methods[0].diversity_until",
        "must be in (0, 1]",
    ),
    (
        "[[methods]]\nmethod = \"lpc-dpo\"\ncontext = 2 #! context = 0",
        "methods[0].context",
        "needs world.annotators > 0",
    ),
    (
        "[[methods]]\nmethod = \"dpo\"\nsteps = 0 #! steps = 1",
        "methods[0].steps",
        "must be >= 1",
    ),
    (
        "[[methods]]\nmethod = \"lpc-dpo-gaussian\"\nlatent_dim = 0 #! latent_dim = 1",
        "methods[0].latent_dim",
        "must be >= 1",
    ),
    (
        hh!("group = \"g\"\n[[methods]]\nmethod = \"oracle-dpo\" #! method = \"dpo\""),
        "methods[0].method",
        "oracle methods need a synthetic world",
    ),
    // WorldSpec::validate
    ("[world]\nvocab = 1 #!", "world.vocab", "must be >= 2"),
    (
        "[world]\nprompt_len = 0 #!",
        "world.prompt_len",
        "must be >= 1",
    ),
    (
        "[world]\nresponse_len = 0 #!",
        "world.response_len",
        "must be >= 1",
    ),
    (
        "[world]\nresponse_len_min = 7 #! response_len_min = 6",
        "world.response_len_min",
        "must be in [1, world.response_len]",
    ),
    ("[world]\nsources = 0 #!", "world.sources", "must be >= 1"),
    ("[world]\ntypes = 0 #!", "world.types", "must be >= 1"),
    (
        "[world]\ntype_weights = [1.0] #!",
        "world.type_weights",
        "must have world.types = 2 entries, got 1",
    ),
    (
        "[world]\ntype_weights = [0.0, 0.0] #!",
        "world.type_weights",
        "not all 0",
    ),
    (
        "[world]\nsource_weights = [1.0] #!",
        "world.source_weights",
        "must have world.sources = 2 entries",
    ),
    (
        "[world]\nsource_weights = [-1.0, 1.0] #!",
        "world.source_weights",
        "must be finite, >= 0",
    ),
    (
        "[world]\ncoupling = 1.5 #!",
        "world.coupling",
        "must be in [0, 1]",
    ),
    (
        "[world]\nfeature_dim = 1 #!",
        "world.feature_dim",
        "must be >= world.types = 2",
    ),
    (
        "[world]\nreward_scale = -1.0 #!",
        "world.reward_scale",
        "must be finite and >= 0",
    ),
    (
        "[world]\ndistance = 2.0 #!",
        "world.distance",
        "must be in [0, 1]",
    ),
    (
        "[world]\nlength_weight = [1.0, 1.0, 1.0] #!",
        "world.length_weight",
        "must have 1 or world.types = 2 entries",
    ),
    (
        "[world]\nlength_weight = [nan] #! length_weight = [0.5]",
        "world.length_weight",
        "must be finite",
    ),
    (
        "[world]\nbt_temperature = 0.0 #!",
        "world.bt_temperature",
        "must be > 0",
    ),
    (
        "[world]\nprompt_concentration = 0.0 #!",
        "world.prompt_concentration",
        "must be finite and >= 0.001",
    ),
    (
        "[world]\nmarkov_concentration = inf #!",
        "world.markov_concentration",
        "must be finite and >= 0.001",
    ),
    // ModelSpec::validate
    ("[model]\nd_model = 0 #!", "model.d_model", "must be >= 1"),
    ("[model]\nlayers = 0 #!", "model.layers", "must be >= 1"),
    (
        "[model]\nheads = 3 #!",
        "model.heads",
        "must be >= 1 and divide model.d_model = 64",
    ),
    ("[model]\nd_ff = 0 #!", "model.d_ff", "must be >= 1"),
    (
        "[model]\ndropout = 1.0 #! dropout = 0.5",
        "model.dropout",
        "must be in [0, 1)",
    ),
    (
        "[model]\nwarmup_lr = 0.0 #!",
        "model.warmup_lr",
        "must be > 0",
    ),
    (
        "[model]\ntrainable = \"all\" #!",
        "model.trainable",
        "applies only with model.pretrained",
    ),
    (
        concat!(
            "[model]\npretrained = \"m.gguf\"\ntrainable = \"last:0\" #! trainable = \"last:2\"\n",
            hh!("group = \"g\"")
        ),
        "model.trainable",
        "is not \"all\" or \"last:K\"",
    ),
    (
        "[model]\ntrain_head = true #!",
        "model.train_head",
        "applies only with model.pretrained",
    ),
    (
        concat!(
            "[model]\npretrained = \"m.gguf\"\ntrain_head = false #! trainable = \"last:2\"\n",
            hh!("group = \"g\"")
        ),
        "model.train_head",
        "false needs model.trainable = \"last:K\"",
    ),
    // TrainSpec::validate
    ("[train]\nsteps = 0 #!", "train.steps", "must be >= 1"),
    ("[train]\nepochs = 0 #!", "train.epochs", "must be >= 1"),
    (
        "[train]\nbatch_size = 0 #!",
        "train.batch_size",
        "must be >= 1",
    ),
    ("[train]\nlr = 0.0 #!", "train.lr", "must be > 0"),
    (
        "[train]\ngrad_clip = -1.0 #!",
        "train.grad_clip",
        "must be >= 0 (0 = off)",
    ),
    (
        "[train]\neval_every = 0 #!",
        "train.eval_every",
        "must be >= 1",
    ),
    (
        "[train]\ndevice = \"tpu\" #! device = \"cuda:1\"",
        "train.device",
        "must be cpu, cuda or cuda:N, got 'tpu'",
    ),
    (
        "[train]\nprecision = \"bf16\" #!",
        "train.precision",
        "needs a GPU",
    ),
];

/// The other fields of rule sites that loop over several fields (the row in [`RULES`] tests the
/// first); same format.
const LOOP_FIELDS: &[Row] = &[
    (
        "[data]\nval_pairs = 10000001 #!",
        "data.val_pairs",
        "sanity bound",
    ),
    (
        "[data]\neval_pairs = 10000001 #!",
        "data.eval_pairs",
        "sanity bound",
    ),
    (
        "[data]\nmax_prompt_tokens = 8 #!",
        "data.max_prompt_tokens",
        "applies only to real data",
    ),
    (
        "[data]\nmax_response_tokens = 8 #!",
        "data.max_response_tokens",
        "applies only to real data",
    ),
    (
        "[data]\ntokenizer = \"byte\" #!",
        "data.tokenizer",
        "applies only to real data",
    ),
    (
        "[data]\nmax_drop_fraction = 0.1 #!",
        "data.max_drop_fraction",
        "applies only to real data",
    ),
    (
        uf!("group_field = \"g\" #!"),
        "data.files[0].group_field",
        "does not apply to format",
    ),
    (
        votes!("annotator_as = \"group\"\ngroup_field = \"g\" #!"),
        "data.files[0].group_field",
        "cannot be combined with annotator_as",
    ),
    (
        hh!("group = \"g\"\nchosen_field = \"c\" #!"),
        "data.files[0].chosen_field",
        "applies only to format = \"jsonl\"",
    ),
    (
        hh!("group = \"g\"\nrejected_field = \"r\" #!"),
        "data.files[0].rejected_field",
        "applies only to format = \"jsonl\"",
    ),
    (
        "[[data.files]]\npath = \"x.jsonl\"\nformat = \"jsonl\"\ngroup = \"g\"\nchosen_field = \"\" #!",
        "data.files[0].chosen_field",
        "must not be empty",
    ),
    (
        "[[data.files]]\npath = \"x.jsonl\"\nformat = \"jsonl\"\ngroup = \"g\"\nrejected_field = \"\" #!",
        "data.files[0].rejected_field",
        "must not be empty",
    ),
    (
        hh!("group = \"g\"\nprompt_fields = [\"a\"] #!"),
        "data.files[0].prompt_fields",
        "applies only to format = \"pairwise\"",
    ),
    (
        hh!("group = \"g\"\nprompt_separator = \" \" #!"),
        "data.files[0].prompt_separator",
        "applies only to format = \"pairwise\"",
    ),
    (
        hh!("group = \"g\"\nsecond_field = \"b\" #!"),
        "data.files[0].second_field",
        "applies only to format = \"pairwise\"",
    ),
    (
        hh!("group = \"g\"\nresponses_field = \"r\" #!"),
        "data.files[0].responses_field",
        "applies only to format = \"pairwise\"",
    ),
    (
        hh!("group = \"g\"\nresponse_indices = [0, 1] #!"),
        "data.files[0].response_indices",
        "applies only to format = \"pairwise\"",
    ),
    (
        hh!("group = \"g\"\nlabel_field = \"l\" #!"),
        "data.files[0].label_field",
        "applies only to format = \"pairwise\"",
    ),
    (
        hh!("group = \"g\"\nvote_fields = [\"v\"] #!"),
        "data.files[0].vote_fields",
        "applies only to format = \"pairwise\"",
    ),
    (
        hh!("group = \"g\"\nlabel_map = { \"0\" = \"first\" } #!"),
        "data.files[0].label_map",
        "applies only to format = \"pairwise\"",
    ),
    (
        hh!("group = \"g\"\nannotator_as = \"group\" #!"),
        "data.files[0].annotator_as",
        "applies only to format = \"pairwise\"",
    ),
    (
        pwl!("first_field = \"a\"\nsecond_field = \"\" #! second_field = \"b\""),
        "data.files[0].second_field",
        "must not be empty",
    ),
    (
        pwl!("responses_field = \"\" #! responses_field = \"r\""),
        "data.files[0].responses_field",
        "must not be empty",
    ),
    (
        pw!(
            "label_field = \"\" #! label_field = \"l\"\nfirst_field = \"a\"\nsecond_field = \"b\"\n\
             label_map = { \"0\" = \"first\", \"1\" = \"second\" }"
        ),
        "data.files[0].label_field",
        "must not be empty",
    ),
    (
        pw!("vote_fields = [] #!"),
        "data.files[0].vote_fields",
        "must name at least one field",
    ),
    (
        pw!("second_field = \"b\" #!"),
        "data.files[0].second_field",
        "applies only with label_field or vote_fields",
    ),
    (
        pw!("label_map = { \"0\" = \"first\" } #!"),
        "data.files[0].label_map",
        "applies only with label_field or vote_fields",
    ),
    (
        pwl!("first_field = \"a\"\nsecond_field = \"b\"\nrejected_field = \"r\" #!"),
        "data.files[0].rejected_field",
        "cannot be combined with label_field or vote_fields",
    ),
];

/// The violating and the repaired text of a row (see the module docs for the `#!` marker).
fn split(text: &str) -> (String, String) {
    let mut bad = String::new();
    let mut good = String::new();
    for line in text.lines() {
        match line.split_once("#!") {
            Some((before, after)) => {
                bad.push_str(before);
                bad.push('\n');
                if !after.trim().is_empty() {
                    good.push_str(after.trim());
                    good.push('\n');
                }
            }
            None => {
                for s in [&mut bad, &mut good] {
                    s.push_str(line);
                    s.push('\n');
                }
            }
        }
    }
    (bad, good)
}

/// Check one row; `Err` says what went wrong.
fn check(i: usize, &(text, field, rule): &Row) -> Result<(), String> {
    if !text.contains("#!") {
        return Err(format!("row {i} ({field}): no `#!` line marks the offence"));
    }
    let (bad, good) = split(text);
    match Scenario::from_toml_str(&bad, "t") {
        Err(ScenarioError::Invalid {
            field: got_field,
            rule: got_rule,
            ..
        }) => {
            if got_field != field || !got_rule.contains(rule) {
                return Err(format!(
                    "row {i}: expected `{field}` ... `{rule}`, got `{got_field} {got_rule}`\n{bad}"
                ));
            }
        }
        other => {
            return Err(format!(
                "row {i} ({field}): expected a rule error, got {other:?}\n{bad}"
            ));
        }
    }
    if let Err(e) = Scenario::from_toml_str(&good, "t") {
        return Err(format!(
            "row {i} ({field}): the repaired scenario fails: {e}\n{good}"
        ));
    }
    Ok(())
}

fn check_all(rows: &[Row]) {
    let failures: Vec<String> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.0.is_empty())
        .filter_map(|(i, r)| check(i, r).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_rule_names_its_field() {
    check_all(RULES);
}

#[test]
fn every_field_of_a_looping_rule_names_itself() {
    check_all(LOOP_FIELDS);
}

#[test]
fn too_many_methods() {
    // The `methods` entry of RULES (empty text): 1025 methods break the bound of 1024; 1024 load.
    let list = |n: usize| {
        let entries: Vec<String> = (0..n)
            .map(|i| format!("{{ method = \"dpo\", label = \"m{i}\" }}"))
            .collect();
        format!("methods = [{}]", entries.join(", "))
    };
    let text = format!("{} #! {}", list(1025), list(1024));
    let row = RULES
        .iter()
        .find(|r| r.0.is_empty())
        .expect("the methods row");
    assert_eq!(row.1, "methods");
    let leaked: &'static str = Box::leak(text.into_boxed_str());
    check(0, &(leaked, row.1, row.2)).unwrap();
}

#[test]
fn rows_are_distinct() {
    // Two rows with the same field and rule text test one rule twice (and then some rule has none).
    let mut seen = std::collections::BTreeSet::new();
    for (_, field, rule) in RULES {
        assert!(seen.insert((field, rule)), "two rows for {field} {rule}");
    }
}

/// The bodies of the functions whose signature starts with `signature`: the text between the
/// first `{` after it and the brace that closes it (braces inside the validators' string literals
/// come in pairs, so counting every brace finds the end).
fn bodies<'a>(source: &'a str, signature: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    for (start, _) in source.match_indices(signature) {
        let open = start + source[start..].find('{').expect("a body");
        let mut depth = 0usize;
        for (j, c) in source[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        out.push(&source[open..open + j + 1]);
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    out
}

#[test]
fn every_rule_site_has_a_row() {
    // A rule site: a `return Err(` (a rule written out) or a call of a rule helper: `only(`,
    // `positive(`, `non_empty(` (closures in the scenario validators) and `bound(` (plan.rs).
    // The helpers' own `Err(rule(..))` is not preceded by `return`, so it is not counted.
    let count = |body: &str, tokens: &[&str]| -> usize {
        tokens.iter().map(|t| body.matches(t).count()).sum()
    };
    let scenario = include_str!("../src/scenario.rs");
    let validators = bodies(scenario, "fn validate");
    assert_eq!(validators.len(), 8, "the validators of scenario.rs");
    let in_scenario: usize = validators
        .iter()
        .map(|b| count(b, &["return Err(", "only(", "positive(", "non_empty("]))
        .sum();
    let bounds = bodies(include_str!("../src/plan.rs"), "fn check_bounds(");
    assert_eq!(bounds.len(), 1);
    let in_plan = count(bounds[0], &["return Err(", "bound("]);
    assert_eq!(
        RULES.len(),
        in_scenario + in_plan,
        "rule sites in the validators ({in_scenario} in scenario.rs, {in_plan} in plan.rs) and \
         rows in RULES differ: a rule without a row (add one), or a row without a rule"
    );
}
