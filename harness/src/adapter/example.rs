//! `tinyrustlm adapter example`: a small ASP1 adapter whose effect a reader sees in the generated
//! text — the stories260K conversion's heroine "Lily" becomes "Tim".
//!
//! In the 512-token stories260K vocabulary the name has two spellings: the piece `" Lily"` inside
//! a sentence, and `"L"` + `"ily"` where no space precedes it (at the start of a line, after a
//! quote). "Tim" has the same two: `" Tim"`, and `"T"` + `"im"`. The adapter exchanges the rows of
//! the three pairs ([`SWAPS`]) in the token embedding and in the classifier (one tensor when the
//! classifier is tied, as in stories260K). The model then reads each piece exactly as it used to
//! read its partner and scores it where it scored its partner: the network computes what it
//! computed before (up to rounding, below), only the labels of six tokens are exchanged. A greedy story keeps its plot and
//! wording with every "Lily" written "Tim" — and, the swap being symmetric, anything the base
//! would have written with the other three pieces changes too ("him" would read "hily", a
//! line-initial "The" would read "Lhe"; the stories260K greedy stories use none of them).
//!
//! Each swapped row receives `partner row − own row` (decoded base values, f32 subtraction);
//! elements where the two rows agree get no entry. On f32 storage `own + (partner − own)` may
//! round to a neighbour of `partner` (an f32 delta cannot always land exactly), so the exchange
//! is exact up to that one rounding; on q8_0 the re-quantized blocks of stories260K come out
//! identical to the partner's.

use anyhow::{anyhow, bail, Context, Result};
use runtime::adapter::format::file_digest;
use runtime::adapter::write::{self, Delta, RecordData};
use runtime::adapter::{AdapterKind, Plan, PlanModule};
use runtime::model::weights::TensorLoc;
use runtime::model::{quant, Model};

/// The token pieces whose rows are exchanged: "Lily" and "Tim" with and without a leading space.
pub const SWAPS: [(&str, &str); 3] = [(" Lily", " Tim"), ("L", "T"), ("ily", "im")];
/// File name of the adapter, next to the plan (the plan refers to it by this name).
pub const ADAPTER_FILE: &str = "lily-to-tim.asp1";
/// File name of the plan.
pub const PLAN_FILE: &str = "lily-to-tim.plan";

/// One tensor the adapter touches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Touched {
    pub name: String,
    /// Its row width (the embedding dimension).
    pub cols: u32,
    /// Sparse entries written for it (at most 2 × cols per pair).
    pub entries: usize,
}

/// The example adapter and its plan, built for one base model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    /// The ASP1 file, to be saved as [`ADAPTER_FILE`].
    pub adapter: Vec<u8>,
    /// The plan naming the base and the adapter, to be saved as [`PLAN_FILE`].
    pub plan: Vec<u8>,
    /// The token ids of each [`SWAPS`] pair, in that order.
    pub swaps: Vec<(u32, u32)>,
    /// The tensors the swap touches, in adapter (name) order.
    pub touched: Vec<Touched>,
}

fn token_id(model: &Model, piece: &str) -> Result<u32> {
    let tok = &model.tokenizer;
    (0..tok.vocab_size())
        .find(|&id| tok.piece(id).is_ok_and(|p| p == piece.as_bytes()))
        .ok_or_else(|| anyhow!("the base vocabulary has no single piece {piece:?}"))
}

/// The sparse delta exchanging the rows of each pair in `swaps` (disjoint pairs) of the row-major
/// `cols`-wide `w`, in ascending index order.
fn swap_rows(w: &[f32], cols: usize, swaps: &[(u32, u32)]) -> (Vec<u32>, Vec<f32>) {
    let mut rows: Vec<(usize, usize)> = swaps
        .iter()
        .flat_map(|&(a, b)| [(a as usize, b as usize), (b as usize, a as usize)])
        .collect();
    rows.sort_unstable();
    let mut indices = Vec::new();
    let mut deltas = Vec::new();
    for (row, other) in rows {
        for j in 0..cols {
            let d = w[other * cols + j] - w[row * cols + j];
            if d != 0.0 {
                indices.push((row * cols + j) as u32);
                deltas.push(d);
            }
        }
    }
    (indices, deltas)
}

/// Builds the example adapter and plan for `base` (a .slm file, verified here), deterministically:
/// the same base gives the same bytes. Errors: the file does not load, or its vocabulary lacks
/// one of the [`SWAPS`] pieces as a token.
pub fn build(base: &[u8]) -> Result<Example> {
    let model = Model::load(base.to_vec())
        .map_err(|e| anyhow!("{}", crate::inspect::describe_error(&e)))?;
    let swaps = SWAPS
        .iter()
        .map(|&(a, b)| Ok((token_id(&model, a)?, token_id(&model, b)?)))
        .collect::<Result<Vec<_>>>()?;
    let last = swaps.iter().map(|&(a, b)| a.max(b)).max().unwrap_or(0) as usize;
    let mut locs: Vec<&TensorLoc> = vec![&model.embedding];
    if model.classifier.offset != model.embedding.offset {
        locs.push(&model.classifier);
    }
    let mut records = Vec::new();
    let mut touched = Vec::new();
    for loc in locs {
        let info = model
            .tensors
            .iter()
            .find(|t| t.loc.offset == loc.offset)
            .context("a weight without a directory entry")?;
        if last >= loc.rows {
            bail!("tensor {:?} has only {} rows", info.name, loc.rows);
        }
        let mut w = vec![0.0f32; loc.rows * loc.cols];
        let base = model
            .base_payload(loc)
            .map_err(|e| anyhow!("{}", crate::inspect::describe_error(&e)))?;
        quant::dequantize(loc.dtype, &base, &mut w)
            .map_err(|e| anyhow!("{}", crate::inspect::describe_error(&e)))?;
        let (indices, deltas) = swap_rows(&w, loc.cols, &swaps);
        touched.push(Touched {
            name: info.name.clone(),
            cols: loc.cols as u32,
            entries: indices.len(),
        });
        records.push(RecordData {
            name: info.name.clone(),
            shape: info.shape().to_vec(),
            delta: Delta::Sparse { indices, deltas },
        });
    }
    records.sort_by(|x, y| x.name.as_bytes().cmp(y.name.as_bytes()));
    touched.sort_by(|x, y| x.name.as_bytes().cmp(y.name.as_bytes()));
    let adapter = write::write(AdapterKind::Sparse, &model.binding, &records)
        .map_err(|e| anyhow!("{}", crate::inspect::describe_error(&e)))?;
    let plan = Plan::to_bytes(
        &model.digest,
        &[PlanModule {
            digest: file_digest(&adapter),
            bytes: adapter.len() as u64,
            name: ADAPTER_FILE.into(),
        }],
    );
    Ok(Example {
        adapter,
        plan,
        swaps,
        touched,
    })
}

impl Example {
    /// The token the adapted model writes where the base wrote `token`.
    pub fn relabel(&self, token: u32) -> u32 {
        for &(a, b) in &self.swaps {
            if token == a {
                return b;
            }
            if token == b {
                return a;
            }
        }
        token
    }

    /// What the adapter changes, for a person: the swapped pieces, then one line per tensor.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "ASP1 adapter, {} bytes, sha256 {}; exchanges the rows of token pairs:\n",
            self.adapter.len(),
            runtime::sha256::to_hex(&file_digest(&self.adapter))
        );
        for ((a, b), (ia, ib)) in SWAPS.iter().zip(&self.swaps) {
            s += &format!("  {ia:>3} {a:<8?} <-> {ib:>3} {b:?}\n");
        }
        for t in &self.touched {
            s += &format!(
                "{}: {} of the {} elements of those rows change\n",
                t.name,
                t.entries,
                2 * self.swaps.len() * t.cols as usize
            );
        }
        s
    }
}
