//! The tensors of architecture 1 (Llama-family decoder): names, shapes and allowed dtypes
//! (spec/slm.md, Architecture 1). Names are GGUF's, so GGUF files map one to one.

use super::directory::TensorEntry;
use super::header::Config;
use super::DType;
use crate::error::{Error, ErrorCode, Result};
use alloc::{format, string::String, vec, vec::Vec};

/// What a tensor of the architecture is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A norm weight vector: f32 only.
    Norm,
    /// A matrix (or the embedding table): any dtype.
    Matrix,
}

/// One required tensor: name, shape (outermost first) and role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub name: String,
    pub shape: Vec<u32>,
    pub role: Role,
}

/// Per-layer tensor names, in canonical order, with GGUF's names.
pub const LAYER_TENSORS: [&str; 9] = [
    "attn_norm",
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_norm",
    "ffn_gate",
    "ffn_down",
    "ffn_up",
];

/// The name of a per-layer tensor.
pub fn layer_tensor(layer: u32, what: &str) -> String {
    format!("blk.{layer}.{what}.weight")
}

/// Every tensor the config requires, in canonical file order.
pub fn slots(c: &Config) -> Vec<Slot> {
    let (dim, q, kv, ffn) = (c.dim, c.q_dim(), c.kv_dim(), c.ffn_dim);
    let mut out = vec![Slot {
        name: "token_embd.weight".into(),
        shape: vec![c.vocab_size, dim],
        role: Role::Matrix,
    }];
    for l in 0..c.n_layers {
        let shapes: [(&str, Vec<u32>, Role); 9] = [
            ("attn_norm", vec![dim], Role::Norm),
            ("attn_q", vec![q, dim], Role::Matrix),
            ("attn_k", vec![kv, dim], Role::Matrix),
            ("attn_v", vec![kv, dim], Role::Matrix),
            ("attn_output", vec![dim, q], Role::Matrix),
            ("ffn_norm", vec![dim], Role::Norm),
            ("ffn_gate", vec![ffn, dim], Role::Matrix),
            ("ffn_down", vec![dim, ffn], Role::Matrix),
            ("ffn_up", vec![ffn, dim], Role::Matrix),
        ];
        for (what, shape, role) in shapes {
            out.push(Slot {
                name: layer_tensor(l, what),
                shape,
                role,
            });
        }
    }
    out.push(Slot {
        name: "output_norm.weight".into(),
        shape: vec![dim],
        role: Role::Norm,
    });
    if !c.tied_classifier {
        out.push(Slot {
            name: "output.weight".into(),
            shape: vec![c.vocab_size, dim],
            role: Role::Matrix,
        });
    }
    out
}

/// Checks that the directory holds exactly the architecture's tensors with the right shapes and
/// dtypes (the order is free).
pub fn check(c: &Config, entries: &[TensorEntry<'_>]) -> Result<()> {
    let slots = slots(c);
    for slot in &slots {
        let e = entries
            .iter()
            .find(|e| e.name == slot.name)
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::MissingTensor,
                    format!("the llama architecture needs tensor {:?}", slot.name),
                )
            })?;
        if e.shape() != slot.shape.as_slice() {
            return Err(Error::at(
                ErrorCode::ShapeMismatch,
                e.entry_offset,
                format!(
                    "tensor {:?} has shape {:?}; the header implies {:?}",
                    slot.name,
                    e.shape(),
                    slot.shape
                ),
            ));
        }
        if slot.role == Role::Norm && e.dtype != DType::F32 {
            return Err(Error::at(
                ErrorCode::UnsupportedDType,
                e.entry_offset,
                format!(
                    "norm tensor {:?} is {}; norm weights must be f32",
                    slot.name,
                    e.dtype.name()
                ),
            ));
        }
    }
    if let Some(extra) = entries
        .iter()
        .find(|e| !slots.iter().any(|s| s.name == e.name))
    {
        let why = if extra.name == "output.weight" {
            " (the header's tied-classifier flag says there is none)"
        } else {
            ""
        };
        return Err(Error::at(
            ErrorCode::InvalidTensorDirectory,
            extra.entry_offset,
            format!(
                "tensor {:?} is not part of the llama architecture{why}",
                extra.name
            ),
        ));
    }
    Ok(())
}
