use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use harness::{fixtures, inspect, malformed};
use std::path::PathBuf;
use std::process::ExitCode;

/// TinyRustLM: verify, inspect, convert and run .slm models.
#[derive(Parser)]
#[command(name = "tinyrustlm", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify a .slm file completely (structure, shapes, tokenizer, every SHA-256).
    /// Exit 0 when valid; otherwise print the error code, name, byte offset and message.
    Verify { file: PathBuf },
    /// Show a verified file: header, metadata, tokenizer, tensors, budget headroom.
    Inspect {
        /// The model (default: the built-in fixture).
        file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Regenerate the corpus fixtures from corpus/recipes.json and the malformed-file matrix in
    /// corpus/malformed/ (or, with --check, require the committed files to be byte-identical to
    /// a fresh build).
    Fixtures {
        #[arg(long)]
        check: bool,
        /// The corpus directory.
        #[arg(long, default_value_os_t = fixtures::corpus_dir())]
        dir: PathBuf,
    },
}

fn read_model(file: &Option<PathBuf>) -> Result<Vec<u8>> {
    match file {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display())),
        None => Ok(fixtures::DEFAULT_MODEL.to_vec()),
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Verify { file } => {
            let bytes = read_model(&Some(file.clone()))?;
            match inspect::verify(&bytes) {
                Ok(slm) => {
                    println!(
                        "ok: {} ({} bytes, {} tensors, sha256 {})",
                        file.display(),
                        bytes.len(),
                        slm.tensors.len(),
                        runtime::sha256::to_hex(&slm.digest())
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{}: {}", file.display(), inspect::describe_error(&e));
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Inspect { file, json } => {
            let bytes = read_model(&file)?;
            let slm = match inspect::verify(&bytes) {
                Ok(slm) => slm,
                Err(e) => bail!("{}", inspect::describe_error(&e)),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&inspect::report(&slm))?);
            } else {
                print!("{}", inspect::report_text(&slm));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Fixtures { check, dir } => {
            let mut touched = fixtures::generate(&dir, check)?;
            touched.extend(malformed::generate(&dir.join("malformed"), check)?);
            if check {
                if !touched.is_empty() {
                    bail!("fixtures differ from their recipes: {}", touched.join(", "));
                }
                println!("all fixtures in {} match their recipes", dir.display());
            } else {
                println!("wrote {} fixture(s) in {}", touched.len(), dir.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tinyrustlm: {e:#}");
            ExitCode::from(2)
        }
    }
}
