use clap::{Parser, Subcommand};

/// TinyRustLM: verify, inspect, convert and run .slm models.
#[derive(Parser)]
#[command(name = "tinyrustlm", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure throughput (medians with spread, against a baseline in the same run).
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

#[derive(Subcommand)]
enum BenchWhat {
    /// The runtime's SHA-256 against the `sha2` crate.
    Sha256 {
        /// MiB of data to hash per run.
        #[arg(long, default_value_t = 32)]
        mib: usize,
        /// Timed runs per implementation (after one warm-up run).
        #[arg(long, default_value_t = 7)]
        runs: usize,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Bench { what } => match what {
            BenchWhat::Sha256 { mib, runs, json } => harness::bench::sha256::run(mib, runs, json),
        },
    }
}
