//! One module per subcommand: each turns parsed arguments into calls on the library.

pub mod generate;
pub mod score;
pub mod validate;
