use clap::{Parser, Subcommand};

/// TinyRustLM: verify, inspect, convert and run .slm models.
#[derive(Parser)]
#[command(name = "tinyrustlm", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {}
}
