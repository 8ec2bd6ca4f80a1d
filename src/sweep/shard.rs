//! Sharding: the disjoint slices of a grid that separate machines (or array jobs) run.

use super::SweepError;

/// The I-th of N disjoint slices of a grid, 0-based (`0 <= index < count`), matching
/// `SLURM_ARRAY_TASK_ID` for `--array=0-(N-1)`. Cell `k` (in expansion order) belongs to shard
/// `k mod N` (round robin), so every shard gets every method and `⌊len/N⌋` or `⌈len/N⌉` cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: usize,
    count: usize,
}

impl Shard {
    /// The whole grid as one shard.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Shard `index` of `count`; requires `count >= 1` and `index < count`.
    pub fn new(index: usize, count: usize) -> Result<Shard, SweepError> {
        if count == 0 || index >= count {
            return Err(SweepError::Shard(format!(
                "--shard {index}/{count}: needs I/N with N >= 1 and 0 <= I < N (0-based, as \
                 SLURM_ARRAY_TASK_ID for --array=0-(N-1))"
            )));
        }
        Ok(Shard { index, count })
    }
    /// This shard's 0-based index.
    pub fn index(self) -> usize {
        self.index
    }
    /// Number of shards.
    pub fn count(self) -> usize {
        self.count
    }
    /// Whether position `k` of the expansion order belongs to this shard.
    pub fn contains(self, k: usize) -> bool {
        k % self.count == self.index
    }
}

impl std::str::FromStr for Shard {
    type Err = SweepError;
    /// Parse `I/N`, e.g. `0/4` .. `3/4`.
    fn from_str(s: &str) -> Result<Shard, SweepError> {
        let bad = || {
            SweepError::Shard(format!(
                "--shard must be I/N with 0 <= I < N (0-based, as SLURM_ARRAY_TASK_ID), got '{s}'"
            ))
        };
        let (i, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let i: usize = i.trim().parse().map_err(|_| bad())?;
        let n: usize = n.trim().parse().map_err(|_| bad())?;
        Shard::new(i, n)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The items of one shard, in order: `{ items[k] : k mod N = I }`.
pub fn shard<T>(items: &[T], s: Shard) -> Vec<&T> {
    items
        .iter()
        .enumerate()
        .filter(|(k, _)| s.contains(*k))
        .map(|(_, x)| x)
        .collect()
}
