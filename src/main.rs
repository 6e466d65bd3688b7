//! The `ddpm` command line: inspect, run, benchmark (and later sample and train) U-Nets on the
//! GPU through the same WGSL kernels as the browser demo.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
