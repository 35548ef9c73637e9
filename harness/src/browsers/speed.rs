//! `tinyrustlm browsers --speed`: the page's throughput next to the native engine's for one
//! model of a real size, a seeded stories15M-shape q8_0 model (`bench::model`), written to a
//! temporary folder and served as an extra model. Every browser runs the standard cases on it
//! (compared with native as usual); the figure is the page's tok/s of the last case, beside the
//! native runtime's for the same case (median of [`NATIVE_RUNS`] runs), and their ratio. Both
//! count as the page does (browser-smoke/worker.js): tokens generated after `start` (the
//! prompt's prefill excluded) over the time of the steps, each step's diagnostics read.
//! The native figure is this binary's: measure with a release build.

use super::launch::TempDir;
use super::{run, Options, Outcome};
use crate::bench::model::{build, SHAPES};
use crate::conformance::standard_cases;
use crate::smoke::SMOKE_MAX_NEW;
use anyhow::{Context, Result};
use runtime::format::DType;
use runtime::generate::{Session, Step};
use runtime::model::Model;
use std::time::Instant;

/// Timed native runs of the case (the median is reported).
pub const NATIVE_RUNS: usize = 5;

/// What one `--speed` run measured.
pub struct Speed {
    /// The model's registry name.
    pub model: String,
    /// The case timed (the page reports the last standard case's tok/s).
    pub case: String,
    /// Native tok/s, counted as the page counts.
    pub native_tok_s: f64,
    /// The parity run, whose `tok_s` holds the page's figures.
    pub outcome: Outcome,
}

impl Speed {
    /// The figures as text: one line per engine that reported tok/s.
    pub fn table(&self) -> String {
        let mut s = format!(
            "speed: {} (q8_0), case {}: native {:.1} tok/s ({} build)\n",
            self.model,
            self.case,
            self.native_tok_s,
            if cfg!(debug_assertions) {
                "dev"
            } else {
                "release"
            }
        );
        for (engine, model, t) in &self.outcome.tok_s {
            if *model == self.model {
                s += &format!(
                    "speed: {engine:<9} {t:.1} tok/s = {:.3} × native\n",
                    t / self.native_tok_s
                );
            }
        }
        s
    }
}

/// Builds the model, runs the page on it in the engines of `opts`, and times native.
pub fn measure(opts: &Options) -> Result<Speed> {
    let shape = &SHAPES[0];
    let model = format!("{}-shape-q8_0", shape.name);
    let bytes = build(shape, DType::Q8_0)?;
    let tmp = TempDir::new("speed")?;
    let path = tmp.0.join(format!("{model}.slm"));
    std::fs::write(&path, &bytes)?;
    let mut opts = opts.clone();
    opts.serve.extra_models.push(path);
    opts.models = Some(vec![model.clone()]);
    opts.modes = "1".into();
    let outcome = run(&opts)?;
    let case = standard_cases(SMOKE_MAX_NEW)
        .pop()
        .context("no standard case")?;
    let mut session = Session::new(Model::load(bytes).map_err(anyhow::Error::msg)?, 0)
        .map_err(anyhow::Error::msg)?;
    let mut rates = Vec::new();
    for _ in 0..NATIVE_RUNS {
        session
            .start(case.prompt.as_bytes(), case.settings())
            .map_err(anyhow::Error::msg)?;
        let mut produced = 0u32;
        let t0 = Instant::now();
        while let Step::Token { .. } = session.step().map_err(anyhow::Error::msg)? {
            produced += 1;
            std::hint::black_box(session.diagnostics());
        }
        rates.push(f64::from(produced) / t0.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    Ok(Speed {
        model,
        case: case.name.into(),
        native_tok_s: rates[NATIVE_RUNS / 2],
        outcome,
    })
}
