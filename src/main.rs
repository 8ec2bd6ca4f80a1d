//! The `lpc-bench` binary: parse arguments, run the command, report errors, exit non-zero on failure.

fn main() -> std::process::ExitCode {
    lpc_bench::cli::main()
}
