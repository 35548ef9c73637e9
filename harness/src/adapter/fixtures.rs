//! Adapter fixtures (corpus/adapters.json → corpus/adapters/): small seeded ADP1, ASP1 and ALR1
//! adapters on corpus fixtures, each with a one-module plan, made by our own writer. The same
//! recipe always gives the same bytes; `tinyrustlm fixtures [--check]` writes or checks them.
//!
//! Values for record k (0-based, in the recipe's tensor order, which must be ascending) come from
//! SplitMix64 (`fixtures::SplitMix64`) seeded `seed × 10 + k`, as `amplitude × next_signed()`:
//! - adp1: one delta per element, amplitude 0.2;
//! - asp1: the elements 0, 37, 74, … (every [`SPARSE_STRIDE`]-th), amplitude 0.5;
//! - alr1: rank 2, scale 0.5, A then (from seed `seed × 10 + k + 5`) B, amplitude 0.6.

use crate::fixtures::{load_recipes, SplitMix64};
use anyhow::{bail, Context, Result};
use runtime::adapter::format::file_digest;
use runtime::adapter::write::{write, Delta, RecordData};
use runtime::adapter::{AdapterKind, Plan, PlanModule};
use runtime::model::Model;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Distance between the element indices of an ASP1 fixture record.
pub const SPARSE_STRIDE: usize = 37;

/// One adapter fixture.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterRecipe {
    /// File stem: corpus/adapters/NAME.adapter and NAME.plan.
    pub name: String,
    /// The corpus fixture it is bound to (corpus/BASE.slm).
    pub base: String,
    /// adp1, asp1 or alr1.
    pub kind: String,
    pub seed: u64,
    /// Tensors the adapter touches, in ascending name order.
    pub tensors: Vec<String>,
}

/// corpus/adapters.json.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterRecipeFile {
    pub adapters: Vec<AdapterRecipe>,
}

/// Where the adapter fixtures live, under a corpus directory.
pub fn adapters_dir(corpus: &Path) -> PathBuf {
    corpus.join("adapters")
}

/// Reads `corpus/adapters.json`; every base must be a fixture of corpus/recipes.json.
pub fn load_adapter_recipes(corpus: &Path) -> Result<AdapterRecipeFile> {
    let path = corpus.join("adapters.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let file: AdapterRecipeFile =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let models = load_recipes(corpus)?;
    for a in &file.adapters {
        if !models.fixtures.iter().any(|m| m.name == a.base) {
            bail!(
                "adapters.json: {}: base {:?} is not a fixture",
                a.name,
                a.base
            );
        }
    }
    Ok(file)
}

fn values(seed: u64, n: usize, amplitude: f32) -> Vec<f32> {
    let mut r = SplitMix64(seed);
    (0..n).map(|_| amplitude * r.next_signed()).collect()
}

/// The adapter a recipe describes, bound to `base` (its corpus fixture's bytes).
pub fn build_adapter(recipe: &AdapterRecipe, base: &[u8]) -> Result<Vec<u8>> {
    let kind = AdapterKind::from_name(&recipe.kind)
        .with_context(|| format!("{}: unknown kind {:?}", recipe.name, recipe.kind))?;
    let model = Model::load(base.to_vec()).map_err(|e| anyhow::anyhow!("{}: {e}", recipe.base))?;
    let mut records = Vec::new();
    for (k, name) in recipe.tensors.iter().enumerate() {
        let t = model
            .tensors
            .iter()
            .find(|t| t.name == *name)
            .with_context(|| format!("{}: the base has no tensor {name}", recipe.name))?;
        let shape = t.shape().to_vec();
        let n: usize = shape.iter().map(|&d| d as usize).product();
        let cols = *shape.last().context("rank 0")? as usize;
        let rows = n / cols;
        let s = recipe.seed * 10 + k as u64;
        let delta = match kind {
            AdapterKind::Dense => Delta::Dense(values(s, n, 0.2)),
            AdapterKind::Sparse => Delta::Sparse {
                indices: (0..n as u32).step_by(SPARSE_STRIDE).collect(),
                deltas: values(s, n.div_ceil(SPARSE_STRIDE), 0.5),
            },
            AdapterKind::LowRank => Delta::LowRank {
                rank: 2,
                scale: 0.5,
                a: values(s, 2 * cols, 0.6),
                b: values(s + 5, 2 * rows, 0.6),
            },
        };
        records.push(RecordData {
            name: name.clone(),
            shape,
            delta,
        });
    }
    write(kind, &model.binding, &records).map_err(|e| anyhow::anyhow!("{}: {e}", recipe.name))
}

/// The one-module plan of an adapter fixture (module name `NAME.adapter`).
pub fn build_plan(recipe: &AdapterRecipe, base: &[u8], adapter: &[u8]) -> Result<Vec<u8>> {
    let model = Model::load(base.to_vec()).map_err(|e| anyhow::anyhow!("{}: {e}", recipe.base))?;
    let module = PlanModule {
        digest: file_digest(adapter),
        bytes: adapter.len() as u64,
        name: format!("{}.adapter", recipe.name),
    };
    Ok(Plan::to_bytes(&model.digest, &[module]))
}

/// An adapter fixture as its files hold it.
pub struct AdapterFixture {
    pub recipe: AdapterRecipe,
    /// The base fixture's bytes.
    pub base: Vec<u8>,
    pub adapter: Vec<u8>,
    pub plan: Vec<u8>,
}

/// Reads every adapter fixture (base, adapter and plan files) from `corpus`.
pub fn read_all(corpus: &Path) -> Result<Vec<AdapterFixture>> {
    let dir = adapters_dir(corpus);
    let read = |p: PathBuf| std::fs::read(&p).with_context(|| format!("reading {}", p.display()));
    load_adapter_recipes(corpus)?
        .adapters
        .into_iter()
        .map(|r| {
            Ok(AdapterFixture {
                base: read(corpus.join(format!("{}.slm", r.base)))?,
                adapter: read(dir.join(format!("{}.adapter", r.name)))?,
                plan: read(dir.join(format!("{}.plan", r.name)))?,
                recipe: r,
            })
        })
        .collect()
}

/// Writes every adapter fixture and its plan into `corpus/adapters/` (or, with `check`, compares
/// with what is there). Returns the files that differ (check) or were written.
pub fn generate(corpus: &Path, check: bool) -> Result<Vec<String>> {
    let dir = adapters_dir(corpus);
    if !check {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut touched = Vec::new();
    for r in load_adapter_recipes(corpus)?.adapters {
        let base_path = corpus.join(format!("{}.slm", r.base));
        let base = std::fs::read(&base_path)
            .with_context(|| format!("reading {}", base_path.display()))?;
        let adapter = build_adapter(&r, &base)?;
        let plan = build_plan(&r, &base, &adapter)?;
        for (file, bytes) in [
            (format!("{}.adapter", r.name), adapter),
            (format!("{}.plan", r.name), plan),
        ] {
            let path = dir.join(&file);
            if std::fs::read(&path).is_ok_and(|old| old == bytes) {
                continue;
            }
            touched.push(format!("adapters/{file}"));
            if !check {
                std::fs::write(&path, &bytes)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
    }
    Ok(touched)
}
