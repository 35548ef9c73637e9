//! `tinyrustlm adapter diff`: the task delta between two checkpoints of one layout, as an ADP1,
//! ASP1 or ALR1 adapter bound to the first (spec/adapters.md, Making adapters).
//!
//! Per tensor (directory order), both payloads are decoded to f32 and delta = tuned − base (f32
//! subtraction); tensors whose delta is all zero get no record. ALR1 factors each delta matrix
//! with [`factor`]: a deterministic truncated power iteration with deflation, in f64.

use anyhow::{bail, Result};
use runtime::adapter::write::{self, Delta, RecordData};
use runtime::adapter::{binding, Adapter, AdapterKind};
use runtime::format::Slm;
use runtime::model::quant;

use crate::fixtures::SplitMix64;

/// Power-iteration steps per component.
pub const POWER_ITERATIONS: usize = 64;
/// A component whose σ is at most this fraction of the first component's ends the
/// factorisation (what is left is rounding noise, below f32 precision).
pub const FACTOR_TOLERANCE: f64 = 1e-7;
/// Seed of component k's start vector: `FACTOR_SEED + k` (SplitMix64, values in [-1, 1)).
pub const FACTOR_SEED: u64 = 0x5eed_a1c0;

fn values(slm: &Slm<'_>, i: usize) -> Result<Vec<f32>> {
    let e = &slm.tensors[i];
    let mut out = vec![0.0f32; e.elements() as usize];
    quant::dequantize(e.dtype, slm.payload(e), &mut out).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(out)
}

fn norm(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |s, x| s + x * x).sqrt()
}

/// A rank-≤`rank` factorisation M ≈ B·A of the row-major `rows × cols` matrix `m`: for each
/// component k, start from SplitMix64(FACTOR_SEED + k), iterate u = M v / |M v|,
/// v = Mᵀ u / |Mᵀ u| POWER_ITERATIONS times, take σ = |M v|, u = M v / σ, then deflate
/// M ← M − σ u vᵀ. Stops early when σ ≤ FACTOR_TOLERANCE × σ₀ (or is zero). All in f64, sums
/// in index order.
/// Returns (rank found, A [rank, cols], B [rows, rank]) in f32 with B = σ u.
pub fn factor(m: &[f32], rows: usize, cols: usize, rank: usize) -> (u32, Vec<f32>, Vec<f32>) {
    let mut m: Vec<f64> = m.iter().map(|&x| x as f64).collect();
    let mut us: Vec<(f64, Vec<f64>, Vec<f64>)> = Vec::new();
    let mv = |m: &[f64], v: &[f64]| -> Vec<f64> {
        (0..rows)
            .map(|o| (0..cols).fold(0.0, |s, i| s + m[o * cols + i] * v[i]))
            .collect()
    };
    let mtu = |m: &[f64], u: &[f64]| -> Vec<f64> {
        (0..cols)
            .map(|i| (0..rows).fold(0.0, |s, o| s + m[o * cols + i] * u[o]))
            .collect()
    };
    for k in 0..rank.min(rows).min(cols) {
        let mut rng = SplitMix64(FACTOR_SEED + k as u64);
        let mut v: Vec<f64> = (0..cols).map(|_| rng.next_signed() as f64).collect();
        for _ in 0..POWER_ITERATIONS {
            let mut u = mv(&m, &v);
            let nu = norm(&u);
            if nu == 0.0 {
                break;
            }
            u.iter_mut().for_each(|x| *x /= nu);
            v = mtu(&m, &u);
            let nv = norm(&v);
            if nv == 0.0 {
                break;
            }
            v.iter_mut().for_each(|x| *x /= nv);
        }
        let mut u = mv(&m, &v);
        let sigma = norm(&u);
        let first = us.first().map_or(sigma, |c| c.0);
        if sigma == 0.0 || !sigma.is_finite() || sigma <= FACTOR_TOLERANCE * first {
            break;
        }
        u.iter_mut().for_each(|x| *x /= sigma);
        for o in 0..rows {
            for i in 0..cols {
                m[o * cols + i] -= sigma * u[o] * v[i];
            }
        }
        us.push((sigma, u, v));
    }
    let r = us.len();
    let mut a = vec![0.0f32; r * cols];
    let mut b = vec![0.0f32; rows * r];
    for (k, (sigma, u, v)) in us.iter().enumerate() {
        for i in 0..cols {
            a[k * cols + i] = v[i] as f32;
        }
        for o in 0..rows {
            b[o * r + k] = (sigma * u[o]) as f32;
        }
    }
    (r as u32, a, b)
}

/// The adapter of `kind` taking `base` to `tuned` (both verified .slm files of one layout and
/// tokenizer). `rank` is the ALR1 rank cap (ignored for the other kinds).
pub fn diff(base: &[u8], tuned: &[u8], kind: AdapterKind, rank: u32) -> Result<Vec<u8>> {
    let b = Slm::parse(base).map_err(|e| anyhow::anyhow!("base: {e}"))?;
    let t = Slm::parse(tuned).map_err(|e| anyhow::anyhow!("tuned: {e}"))?;
    let binding = binding::of_slm(&b);
    if binding != binding::of_slm(&t) {
        bail!("the checkpoints differ in tensor layout or tokenizer: no adapter can join them");
    }
    let max_rank = runtime::limits::MAX_ADAPTER_RANK;
    if kind == AdapterKind::LowRank && !(1..=max_rank).contains(&rank) {
        bail!("--rank must be in 1..={max_rank} (MAX_ADAPTER_RANK)");
    }
    let mut records = Vec::new();
    for (i, e) in b.tensors.iter().enumerate() {
        let (bv, tv) = (values(&b, i)?, values(&t, i)?);
        let delta: Vec<f32> = tv.iter().zip(&bv).map(|(t, b)| t - b).collect();
        if delta.iter().all(|&d| d == 0.0) {
            continue;
        }
        if delta.iter().any(|d| !d.is_finite()) {
            bail!("tensor {:?}: the delta is not finite", e.name);
        }
        let cols = *e.shape().last().unwrap_or(&1) as usize;
        let rows = delta.len() / cols;
        let d = match kind {
            AdapterKind::Dense => Delta::Dense(delta),
            AdapterKind::Sparse => {
                let (indices, deltas) = delta
                    .iter()
                    .enumerate()
                    .filter(|(_, &d)| d != 0.0)
                    .map(|(i, &d)| (i as u32, d))
                    .unzip();
                Delta::Sparse { indices, deltas }
            }
            AdapterKind::LowRank => {
                let (r, a, b) = factor(&delta, rows, cols, rank as usize);
                if r == 0 {
                    continue;
                }
                Delta::LowRank {
                    rank: r,
                    scale: 1.0,
                    a,
                    b,
                }
            }
        };
        records.push(RecordData {
            name: e.name.to_string(),
            shape: e.shape().to_vec(),
            delta: d,
        });
    }
    if records.is_empty() {
        bail!("the checkpoints hold the same values: there is no delta");
    }
    records.sort_by(|x, y| x.name.as_bytes().cmp(y.name.as_bytes()));
    let bytes = write::write(kind, &binding, &records).map_err(|e| anyhow::anyhow!("{e}"))?;
    // The writer encodes what it is given; give out only what the reader takes (the adapter
    // budget above all: a dense delta of a large model can exceed it).
    Adapter::parse(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "the {} adapter would be refused: {}",
            kind.name(),
            crate::inspect::describe_error(&e)
        )
    })?;
    Ok(bytes)
}
