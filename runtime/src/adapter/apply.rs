//! Assembly (spec/adapters.md, Apply): a stack of verified adapters becomes new payload bytes for
//! every tensor it touches, computed from the base bytes, without changing the model. Every check
//! (binding, names, shapes, the finiteness of every assembled value) happens here, so a caller
//! installs the result all at once or not at all.

use super::format::{f32_at, u32_at, Adapter, Body, Record};
use crate::error::{Error, ErrorCode, Result};
use crate::format::DType;
use crate::model::quant::{self, f32_to_f16};
use crate::model::weights::{Model, TensorInfo};
use crate::sha256::Sha256;
use alloc::{borrow::Cow, format, vec::Vec};

/// The assembled tensors of a stack of adapters on one base.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assembly {
    /// (index in the model's directory, new payload bytes), in directory order.
    pub tensors: Vec<(usize, Vec<u8>)>,
    /// The assembly digest (spec/adapters.md, Assembly digest).
    pub digest: [u8; 32],
}

/// Checks that `adapter` is bound to `model` (layout, then tokenizer digest) and that every
/// record names a tensor of the model with the same shape. Returns each record's directory index.
/// `module` numbers the adapter in its stack, for messages.
pub fn check_binding(model: &Model, adapter: &Adapter<'_>, module: usize) -> Result<Vec<usize>> {
    if adapter.binding.layout != model.binding.layout {
        return Err(Error::at(
            ErrorCode::AdapterBaseMismatch,
            24,
            format!("module {module}: the adapter's layout digest is not the model's"),
        ));
    }
    if adapter.binding.tokenizer != model.binding.tokenizer {
        return Err(Error::at(
            ErrorCode::AdapterBaseMismatch,
            56,
            format!("module {module}: the adapter's tokenizer digest is not the model's"),
        ));
    }
    let mut out = Vec::with_capacity(adapter.records.len());
    for r in &adapter.records {
        let i = model
            .tensors
            .iter()
            .position(|t| t.name == r.name)
            .ok_or_else(|| {
                Error::at(
                    ErrorCode::MissingTensor,
                    r.offset,
                    format!("module {module}: the base has no tensor {:?}", r.name),
                )
            })?;
        if model.tensors[i].shape() != r.shape() {
            return Err(Error::at(
                ErrorCode::ShapeMismatch,
                r.offset,
                format!(
                    "module {module}: tensor {:?} has shape {:?} in the base, {:?} in the adapter",
                    r.name,
                    model.tensors[i].shape(),
                    r.shape()
                ),
            ));
        }
        out.push(i);
    }
    Ok(out)
}

fn alloc_f32(n: usize) -> Result<Vec<f32>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        Error::new(
            ErrorCode::OutOfMemory,
            format!("cannot allocate {n} floats"),
        )
    })?;
    v.resize(n, 0.0);
    Ok(v)
}

/// Adds one record's delta to `w` (the tensor's values, row-major) and marks the storage blocks
/// it touches in `covered` (block = `be` elements).
fn add_record(w: &mut [f32], covered: &mut [bool], be: usize, r: &Record<'_>) {
    match r.body {
        Body::Dense { deltas } => {
            for (i, x) in w.iter_mut().enumerate() {
                *x += f32_at(deltas, i);
            }
            covered.fill(true);
        }
        Body::Sparse { indices, deltas } => {
            for k in 0..indices.len() / 4 {
                let i = u32_at(indices, k) as usize;
                w[i] += f32_at(deltas, k);
                covered[i / be] = true;
            }
        }
        Body::LowRank { rank, scale, a, b } => {
            let (rows, cols) = r.matrix();
            let (rows, cols, rank) = (rows as usize, cols as usize, rank as usize);
            for o in 0..rows {
                for i in 0..cols {
                    // s = Σ_k B[o,k] · A[k,i], k ascending, from +0.0; no fused multiply-add.
                    let mut s = 0.0f32;
                    for k in 0..rank {
                        s += f32_at(b, o * rank + k) * f32_at(a, k * cols + i);
                    }
                    w[o * cols + i] += scale * s;
                }
            }
            covered.fill(true);
        }
    }
}

fn non_finite(t: &TensorInfo, element: usize, what: &str) -> Error {
    Error::new(
        ErrorCode::NonFiniteValue,
        format!("tensor {:?}: assembled element {element} {what}", t.name),
    )
}

/// Stores the covered blocks of `w` into `out` (the base payload bytes) in `t`'s dtype.
fn store(t: &TensorInfo, w: &[f32], covered: &[bool], out: &mut [u8]) -> Result<()> {
    let dtype = t.loc.dtype;
    let (be, bb) = (dtype.block_elems(), dtype.block_bytes());
    for (blk, _) in covered.iter().enumerate().filter(|(_, &c)| c) {
        let vals = &w[blk * be..(blk + 1) * be];
        let dst = &mut out[blk * bb..(blk + 1) * bb];
        if let Some(j) = vals.iter().position(|v| !v.is_finite()) {
            return Err(non_finite(t, blk * be + j, "is NaN or infinite"));
        }
        match dtype {
            DType::F32 => dst.copy_from_slice(&vals[0].to_le_bytes()),
            DType::F16 => {
                let h = f32_to_f16(vals[0]);
                if h & 0x7fff == 0x7c00 {
                    return Err(non_finite(t, blk, "overflows f16"));
                }
                dst.copy_from_slice(&h.to_le_bytes());
            }
            DType::Q8_0 | DType::Q4_0 => {
                let r = if dtype == DType::Q8_0 {
                    quant::quantize_q8_0(vals, dst)
                } else {
                    quant::quantize_q4_0(vals, dst)
                };
                r.map_err(|_| non_finite(t, blk * be, "starts a block whose scale overflows f16"))?;
            }
        }
    }
    Ok(())
}

/// SHA-256 of `u32 count`, then per assembled tensor in directory order `u16 name_len, name,
/// u8 dtype, u64 byte length, bytes`.
pub fn assembly_digest(model: &Model, tensors: &[(usize, Vec<u8>)]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(&(tensors.len() as u32).to_le_bytes());
    for (i, bytes) in tensors {
        let t = &model.tensors[*i];
        h.update(&(t.name.len() as u16).to_le_bytes());
        h.update(t.name.as_bytes());
        h.update(&[t.loc.dtype.code()]);
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    h.finalize()
}

/// Assembles `adapters`, applied in order, on the base bytes of `model` (any installed overlay is
/// ignored: a stack is always assembled from the base). Each touched tensor is decoded to f32
/// once, receives every delta in stack order (f32 additions), and only the storage blocks some
/// record covers are encoded back (spec/adapters.md, Apply).
///
/// Errors: `AdapterBaseMismatch`, `MissingTensor`, `ShapeMismatch` (binding), `NonFiniteValue`
/// (an assembled value is not finite or does not fit the dtype), `OutOfMemory`.
pub fn assemble(model: &Model, adapters: &[Adapter<'_>]) -> Result<Assembly> {
    let mut targets: Vec<Vec<usize>> = Vec::with_capacity(adapters.len());
    for (m, a) in adapters.iter().enumerate() {
        targets.push(check_binding(model, a, m)?);
    }
    let mut touched: Vec<usize> = targets.iter().flatten().copied().collect();
    touched.sort_unstable();
    touched.dedup();
    let mut tensors = Vec::with_capacity(touched.len());
    for &ti in &touched {
        let t = &model.tensors[ti];
        let base = model.base_payload(&t.loc)?;
        let n = t.loc.rows * t.loc.cols;
        let mut w = alloc_f32(n)?;
        quant::dequantize(t.loc.dtype, &base, &mut w)?;
        let be = t.loc.dtype.block_elems();
        let mut covered = alloc_covered(n / be)?;
        for (a, tgt) in adapters.iter().zip(&targets) {
            for (r, _) in a.records.iter().zip(tgt).filter(|(_, &i)| i == ti) {
                add_record(&mut w, &mut covered, be, r);
            }
        }
        // The base payload in the file's order, as a new payload: the copy base_payload made of
        // an interleaved one (simd128), else a copy of the file's bytes.
        let mut out = match base {
            Cow::Owned(file_order) => file_order,
            Cow::Borrowed(bytes) => {
                let mut out = Vec::new();
                out.try_reserve_exact(bytes.len())
                    .map_err(|_| Error::new(ErrorCode::OutOfMemory, "cannot allocate a tensor"))?;
                out.extend_from_slice(bytes);
                out
            }
        };
        store(t, &w, &covered, &mut out)?;
        tensors.push((ti, out));
    }
    let digest = assembly_digest(model, &tensors);
    Ok(Assembly { tensors, digest })
}

fn alloc_covered(n: usize) -> Result<Vec<bool>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| Error::new(ErrorCode::OutOfMemory, "cannot allocate a block map"))?;
    v.resize(n, false);
    Ok(v)
}
