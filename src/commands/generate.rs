//! `lpc-bench generate`: write a synthetic world's pairs, parameters and statistics.

use crate::cli::GenerateArgs;
use crate::{Error, Result};

pub fn run(_args: &GenerateArgs) -> Result<()> {
    Err(Error::msg("generate: not built yet"))
}
