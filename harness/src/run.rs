//! `tinyrustlm run`: stream a generation to stdout exactly as llama2.c's run.c prints it.

use crate::adapter::PlanFiles;
use crate::inspect::describe_error;
use anyhow::{anyhow, Result};
use runtime::generate::sampler::SamplerSettings;
use runtime::generate::tokenizer::is_run_c_printable;
use runtime::generate::{Finish, Session, Step};
use runtime::model::Model;
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

fn rt(e: runtime::Error) -> anyhow::Error {
    anyhow!("{}", describe_error(&e))
}

/// Writes a piece as run.c's `safe_printf` does: a one-byte piece that is neither printable nor
/// whitespace is dropped.
fn print_piece(out: &mut impl Write, piece: &[u8]) -> std::io::Result<()> {
    if is_run_c_printable(piece) {
        out.write_all(piece)?;
    }
    Ok(())
}

/// Loads `bytes`, applies `plan` (its receipt goes to stderr), generates, and prints prompt pieces
/// then generated pieces to stdout, a final newline, and statistics to stderr. A model the
/// runtime rejects (read from `model_path`, when there is one) or a plan it rejects is a
/// [`crate::Rejected`] naming that file.
pub fn run_to_stdout(
    bytes: Vec<u8>,
    model_path: Option<&std::path::Path>,
    prompt: &[u8],
    settings: SamplerSettings,
    context: u32,
    plan: Option<&PlanFiles>,
) -> Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let stats = run_adapted(bytes, model_path, prompt, settings, context, plan, &mut out)?;
    crate::errln!("{stats}");
    Ok(ExitCode::SUCCESS)
}

/// Loads `bytes`, generates, and writes what llama2.c's run.c prints (prompt pieces, generated
/// pieces, a final newline) to `out`, flushing after every piece. Returns a statistics line.
pub fn run_c_output(
    bytes: Vec<u8>,
    prompt: &[u8],
    settings: SamplerSettings,
    context: u32,
    out: &mut impl Write,
) -> Result<String> {
    run_adapted(bytes, None, prompt, settings, context, None, out)
}

/// [`run_c_output`] on the model with `plan` applied first (the receipt is printed to stderr). A
/// model the runtime rejects is a [`crate::Rejected`] naming `model_path` when there is one, a
/// plan it rejects one naming the plan.
pub fn run_adapted(
    bytes: Vec<u8>,
    model_path: Option<&std::path::Path>,
    prompt: &[u8],
    settings: SamplerSettings,
    context: u32,
    plan: Option<&PlanFiles>,
    out: &mut impl Write,
) -> Result<String> {
    let t0 = Instant::now();
    let model = Model::load(bytes).map_err(|error| match model_path {
        Some(path) => crate::Rejected {
            path: path.to_path_buf(),
            error,
        }
        .into(),
        None => rt(error),
    })?;
    let mut session = Session::new(model, context).map_err(rt)?;
    if let Some(p) = plan {
        let receipt = session
            .apply_plan(&p.plan, &p.module_refs())
            .map_err(|error| crate::Rejected {
                path: p.path.clone(),
                error,
            })?;
        crate::err!("{}", String::from_utf8_lossy(&receipt.to_bytes()));
    }
    let load_s = t0.elapsed().as_secs_f64();

    let t1 = Instant::now();
    session.start(prompt, settings).map_err(rt)?;
    // run.c prints each prompt token's piece as it feeds the next one, all but the BOS that
    // starts the prompt when the vocabulary adds one; without it the first token is a piece.
    let prompt_tokens = session.prompt_tokens().to_vec();
    let tokenizer = &session.model().tokenizer;
    let skip = usize::from(tokenizer.add_bos());
    for (i, &token) in prompt_tokens.iter().enumerate().skip(skip) {
        let prev = i.checked_sub(1).map(|p| prompt_tokens[p]);
        print_piece(out, tokenizer.decode(prev, token).map_err(rt)?)?;
    }
    out.flush()?;
    let t2 = Instant::now();
    let finish = loop {
        match session.step() {
            Ok(Step::Token { text, .. }) => {
                print_piece(out, &session.text()[text])?;
                out.flush()?;
            }
            Ok(Step::Finished(f)) => break f,
            Err(e) => {
                writeln!(out)?;
                return Err(rt(e));
            }
        }
    };
    writeln!(out)?;
    let d = session.diagnostics();
    let gen_s = t2.elapsed().as_secs_f64();
    Ok(format!(
        "model {} | load+verify {:.1} ms | prompt {} tokens in {:.1} ms | generated {} tokens in {:.1} ms ({:.1} tok/s) | finish: {}{}",
        &runtime::sha256::to_hex(&d.model_digest)[..16],
        load_s * 1e3,
        d.prompt_tokens,
        (t2 - t1).as_secs_f64() * 1e3,
        d.generated_tokens,
        gen_s * 1e3,
        d.generated_tokens as f64 / gen_s.max(1e-9),
        finish.name(),
        match finish {
            Finish::Stop(id) => format!(" (token {id})"),
            _ => String::new(),
        }
    ))
}
