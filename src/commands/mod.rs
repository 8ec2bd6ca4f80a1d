//! One module per subcommand: each turns parsed arguments into calls on the library.

pub mod eval;
pub mod generate;
pub mod inspect;
pub mod report;
pub mod run;
pub mod score;
pub mod sweep;
pub mod validate;
