//! Checkpoints: `OUT/checkpoints/<label>.mpk`, burn's named MessagePack record of a module
//! (`NamedMpkBytesRecorder`, full precision), written atomically and read back with a clear
//! error when a file is incomplete.
//!
//! Owns: how a checkpoint reaches the disk (encoded in memory, then [`results::write_atomic`]:
//! a temporary file in the same folder, fsync, rename; so the final name always holds the old
//! complete file or the new complete one), how one is loaded, and which checkpoint files of a
//! result folder a run owns ([`existing`], [`stale`]).
//!
//! The bytes are those burn's `NamedMpkFileRecorder` writes, so older checkpoints load too.
//! They are not reproducible byte for byte: burn stores each parameter's `ParamId`, a random
//! 64-bit id drawn when the parameter is created, as a 13-character base-32 string in the record,
//! so two identical runs write files of the same length with the same weights (same tensor bytes,
//! same metadata) that differ only in those id strings (see README, "Result files").

use crate::results;
use crate::{Error, Result};
use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::backend::Backend;
use std::path::{Path, PathBuf};

/// Sub-folder of a run's output folder holding its checkpoints.
pub const DIR: &str = "checkpoints";
/// File extension of a checkpoint.
pub const EXT: &str = "mpk";
/// Stem of the frozen reference policy's checkpoint.
pub const REFERENCE: &str = "reference";

fn recorder() -> NamedMpkBytesRecorder<FullPrecisionSettings> {
    NamedMpkBytesRecorder::default()
}

/// The file of checkpoint `stem` (`path` with `.mpk`).
pub fn file(path: &Path) -> PathBuf {
    path.with_extension(EXT)
}

/// The encoded bytes of `module`'s checkpoint.
pub fn encode<B: Backend, M: Module<B>>(module: M) -> Result<Vec<u8>> {
    Recorder::<B>::record(&recorder(), module.into_record(), ())
        .map_err(|e| Error::msg(format!("cannot encode checkpoint: {e}")))
}

/// Save `module` to `<path>.mpk` atomically (see the module docs).
pub fn save<B: Backend, M: Module<B>>(module: M, path: &Path) -> Result<()> {
    let target = file(path);
    let bytes = encode(module).map_err(|e| Error::msg(format!("{}: {e}", target.display())))?;
    results::write_atomic(&target, &bytes)
}

/// Load `<path>.mpk` into `skeleton` (a module of the same shape). A file that cannot be decoded
/// (a torn write by an older version, a truncated copy, a foreign file) is an error naming it and
/// saying it is incomplete or corrupt, not burn's generic decoding message alone.
pub fn load<B: Backend, M: Module<B>>(skeleton: M, path: &Path, device: &B::Device) -> Result<M> {
    let target = file(path);
    let bytes = std::fs::read(&target).map_err(|e| Error::io(&target, e))?;
    let size = bytes.len();
    let broken = |why: &str| {
        Error::msg(format!(
            "{}: checkpoint is incomplete or corrupt ({size} bytes that do not decode as a whole \
             burn record: {why}); it was not written completely (or is not a checkpoint of this \
             scenario); rerun `lpc-bench run --force` to write it again",
            target.display(),
        ))
    };
    // burn panics on some malformed records (a bad parameter id, a shape that does not fit the
    // module): such a panic is the same error, without the panic hook's message.
    let loaded = quietly(move || {
        Recorder::<B>::load(&recorder(), bytes, device).map(|record| skeleton.load_record(record))
    });
    match loaded {
        Ok(Ok(module)) => Ok(module),
        Ok(Err(e)) => Err(broken(first_line(&e.to_string()))),
        Err(panic) => Err(broken(&panic)),
    }
}

/// Run `f`, turning a panic into its message, with the panic hook silenced meanwhile.
fn quietly<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(previous);
    out.map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic while decoding".to_string())
    })
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Checkpoint files in `out/checkpoints/`, as paths relative to `out`, sorted
/// (`checkpoints/dpo.mpk`, ...). Temporary files of an interrupted write are not included.
pub fn existing(out: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(out.join(DIR)) else {
        return Vec::new();
    };
    let mut found: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && n.ends_with(&format!(".{EXT}")))
        .map(|n| format!("{DIR}/{n}"))
        .collect();
    found.sort();
    found
}

/// The checkpoint files in `out` (relative paths) that belong to none of `keep` (stems: method
/// labels and `reference`).
pub fn stale(out: &Path, keep: &[String]) -> Vec<String> {
    existing(out)
        .into_iter()
        .filter(|rel| {
            let stem = rel
                .strip_prefix(&format!("{DIR}/"))
                .and_then(|n| n.strip_suffix(&format!(".{EXT}")))
                .unwrap_or("");
            !keep.iter().any(|k| k == stem)
        })
        .collect()
}

/// Remove these files (paths relative to `out`); returns them.
pub fn remove(out: &Path, rel: &[String]) -> Result<Vec<String>> {
    for r in rel {
        let p = out.join(r);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&p, e)),
        }
    }
    Ok(rel.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CpuBackend;
    use burn::nn::{Linear, LinearConfig};

    fn weights(l: &Linear<CpuBackend>) -> Vec<f32> {
        l.weight
            .val()
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap()
    }

    fn linear(seed: u64) -> Linear<CpuBackend> {
        let device = Default::default();
        CpuBackend::seed(&device, seed);
        crate::model::backbone::materialise(LinearConfig::new(8, 4).init(&device))
    }

    #[test]
    fn round_trip_and_file_recorder_compatibility() {
        let _rng = crate::rng::backend_rng_lock();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m");
        let a = linear(1);
        save(a.clone(), &path).unwrap();
        let back = load(linear(2), &path, &Default::default()).unwrap();
        assert_eq!(weights(&back), weights(&a));
        // A file written by burn's own file recorder loads too.
        let old = dir.path().join("old");
        a.clone()
            .save_file(
                old.clone(),
                &burn::record::NamedMpkFileRecorder::<FullPrecisionSettings>::new(),
            )
            .unwrap();
        let back = load(linear(3), &old, &Default::default()).unwrap();
        assert_eq!(weights(&back), weights(&a));
    }

    #[test]
    fn a_failed_write_leaves_the_old_checkpoint_intact() {
        let _rng = crate::rng::backend_rng_lock();
        // Oracle: the file under the final name is byte-identical to the old complete one after
        // a write that dies half-way (injected), and a later complete write replaces it whole.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dpo");
        let old = linear(1);
        save(old.clone(), &path).unwrap();
        let old_bytes = std::fs::read(file(&path)).unwrap();
        let new_bytes = encode(linear(2)).unwrap();
        let err = results::write_atomic_interrupted(&file(&path), &new_bytes, new_bytes.len() / 2)
            .unwrap_err();
        assert!(err.to_string().contains("dpo.mpk"), "{err}");
        assert_eq!(std::fs::read(file(&path)).unwrap(), old_bytes);
        let back = load(linear(9), &path, &Default::default()).unwrap();
        assert_eq!(weights(&back), weights(&old));
        // No temporary file is left behind.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["dpo.mpk".to_string()]);
        // The next complete write gives the new checkpoint, whole.
        save(linear(2), &path).unwrap();
        assert_eq!(std::fs::read(file(&path)).unwrap().len(), new_bytes.len());
    }

    #[test]
    fn a_truncated_checkpoint_is_named_and_called_incomplete() {
        let _rng = crate::rng::backend_rng_lock();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lpc-dpo");
        save(linear(1), &path).unwrap();
        let bytes = std::fs::read(file(&path)).unwrap();
        for cut in [0, 1, bytes.len() / 3, bytes.len() - 1] {
            std::fs::write(file(&path), &bytes[..cut]).unwrap();
            let err = load(linear(2), &path, &Default::default())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("lpc-dpo.mpk") && err.contains("incomplete"),
                "cut {cut}: {err}"
            );
        }
    }

    #[test]
    fn a_corrupted_checkpoint_never_panics() {
        let _rng = crate::rng::backend_rng_lock();
        // Every byte flipped in turn: the load gives a module or an error naming the file.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m");
        save(linear(1), &path).unwrap();
        let bytes = std::fs::read(file(&path)).unwrap();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x5a;
            std::fs::write(file(&path), &b).unwrap();
            if let Err(e) = load(linear(2), &path, &Default::default()) {
                assert!(e.to_string().contains("m.mpk"), "{e}");
            }
        }
    }

    #[test]
    fn stale_lists_checkpoints_of_unlisted_methods() {
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path().join(DIR);
        std::fs::create_dir_all(&ck).unwrap();
        for n in [
            "reference.mpk",
            "dpo.mpk",
            "ipo.mpk",
            ".lpc-bench-x.tmp",
            "notes.txt",
        ] {
            std::fs::write(ck.join(n), b"x").unwrap();
        }
        assert_eq!(
            existing(dir.path()),
            vec![
                "checkpoints/dpo.mpk",
                "checkpoints/ipo.mpk",
                "checkpoints/reference.mpk"
            ]
        );
        let keep = vec!["reference".to_string(), "dpo".to_string()];
        assert_eq!(stale(dir.path(), &keep), vec!["checkpoints/ipo.mpk"]);
    }
}
