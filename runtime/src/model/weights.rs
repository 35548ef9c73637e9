//! A loaded model: the verified file bytes (owned, never copied into f32 shadows), where each
//! weight lies in them, and the tokenizer built from the file.
//!
//! Adapters (spec/adapters.md) never modify the file bytes: an applied plan installs an
//! *overlay* of assembled tensors (base payload offset → new payload bytes of the same length),
//! and [`Model::mat`] / [`Model::payload`] read a tensor from the overlay when it has one.
//! The overlay travels with the receipt of the plan that made it, so whoever holds the model
//! (a session made from it, too) knows what it computes with. Removing the overlay restores the
//! base exactly.

use crate::adapter::binding::{self, BaseBinding};
use crate::adapter::Receipt;
use crate::error::{Error, ErrorCode, Result};
use crate::format::digest::KnownDigests;
use crate::format::{llama, Config, DType, Slm, TensorEntry};
use crate::generate::tokenizer::Tokenizer;
use crate::limits;
use crate::model::interleave;
use crate::model::kernels::MatRef;
use alloc::borrow::Cow;
use alloc::{collections::BTreeMap, string::String, vec::Vec};

/// Where one tensor's payload lies in the file, and its matrix shape (a vector is `[1, n]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorLoc {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub offset: usize,
    pub len: usize,
    /// No f16 in the payload, as the file holds it, is an infinity or a NaN: for an f16 tensor
    /// its elements, for a q8_0/q4_0 tensor its block scales. The wasm simd128 matrix-vector
    /// kernels, batched prefill's f16 widening and its q8_0/q4_0 kernels then widen them without
    /// handling exponent 31.
    /// Set by [`Model::load`] on the model's layer, embedding and classifier locations, in the
    /// simd128 module only (elsewhere nothing reads it); never on the copies in
    /// [`Model::tensors`]. `false` is always correct.
    pub f16_finite: bool,
    /// The payload's whole groups of four rows are held interleaved in memory
    /// ([`crate::model::interleave`]): a q8_0 or q4_0 layer or classifier matrix in the simd128
    /// module (set by [`Model::load`] on every location of that payload, the copies in
    /// [`Model::tensors`] included). Never set elsewhere. Unlike `f16_finite` it is not a hint:
    /// it says where the payload's bytes lie, and must be read with them.
    pub interleaved: bool,
}

impl TensorLoc {
    fn from_entry(e: &TensorEntry<'_>) -> TensorLoc {
        let shape = e.shape();
        let (rows, cols) = match shape {
            [n] => (1, *n as usize),
            [r, c] => (*r as usize, *c as usize),
            // The llama table has only rank 1 and 2 tensors (checked by the reader).
            _ => (1, e.elements() as usize),
        };
        TensorLoc {
            dtype: e.dtype,
            rows,
            cols,
            offset: e.offset as usize,
            len: e.length as usize,
            f16_finite: false,
            interleaved: false,
        }
    }

    /// Sets [`TensorLoc::f16_finite`] from the payload in `file` (an f16, q8_0 or q4_0 tensor).
    fn mark_f16_finite(&mut self, file: &[u8]) {
        let Some(payload) = file.get(self.offset..self.offset.saturating_add(self.len)) else {
            return;
        };
        self.f16_finite = match self.dtype {
            DType::F16 => f16_all_finite(payload),
            DType::Q8_0 | DType::Q4_0 => scales_all_finite(payload, self.dtype.block_bytes()),
            _ => false,
        };
    }
}

/// Whether no f16 in `payload` (little-endian) is an infinity or a NaN (exponent 31): the
/// largest magnitude (bits without the sign) is below 0x7c00. The simd128 module takes the
/// largest of the whole 16-byte chunks eight at a time.
pub fn f16_all_finite(payload: &[u8]) -> bool {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let (done, max) = crate::model::simd128::f16_max_magnitude(payload);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    let (done, max) = (0, 0);
    payload
        .get(done..)
        .unwrap_or(&[])
        .chunks_exact(2)
        .fold(max, |m, c| m.max(u16::from_le_bytes([c[0], c[1]]) & 0x7fff))
        < 0x7c00
}

/// Whether no block scale of the `block`-byte blocks in `payload` (an f16 at the start of each
/// block, little-endian) is an infinity or a NaN. A partial block at the end (none in a checked
/// tensor) answers `false`.
pub fn scales_all_finite(payload: &[u8], block: usize) -> bool {
    block >= 2
        && payload.len().is_multiple_of(block)
        && payload
            .chunks_exact(block)
            .all(|b| u16::from_le_bytes([b[0], b[1]]) & 0x7fff < 0x7c00)
}

/// Interleaves in place ([`interleave`]) each q8_0 or q4_0 payload of `mats` with at least one
/// whole group of four rows no longer than [`limits::INTERLEAVE_MAX_GROUP_BYTES`], through one
/// scratch buffer; returns their offsets, ascending (a payload met twice is rearranged once).
/// `OutOfMemory` when the scratch or the offsets cannot be had (nothing is then changed).
fn interleave_quantized(
    bytes: &mut [u8],
    mats: impl Iterator<Item = TensorLoc> + Clone,
) -> Result<Vec<usize>> {
    // (block bytes, row bytes) of a payload to interleave.
    let plan = |t: &TensorLoc| -> Option<(usize, usize)> {
        let bb = interleave::block_bytes(t.dtype)?;
        let rb = (t.cols / t.dtype.block_elems()).checked_mul(bb)?;
        let group = rb.checked_mul(interleave::GROUP_ROWS)?;
        let fits = t.rows >= interleave::GROUP_ROWS
            && group > 0
            && group <= limits::INTERLEAVE_MAX_GROUP_BYTES
            && t.rows.checked_mul(rb) == Some(t.len);
        fits.then_some((bb, rb))
    };
    let (count, scratch) = mats
        .clone()
        .filter_map(|t| plan(&t))
        .fold((0usize, 0usize), |(n, most), (_, rb)| {
            (n + 1, most.max(rb * interleave::GROUP_ROWS))
        });
    let mut tmp = Vec::new();
    let mut offsets = Vec::new();
    if tmp.try_reserve_exact(scratch).is_err() || offsets.try_reserve_exact(count).is_err() {
        return Err(Error::new(
            ErrorCode::OutOfMemory,
            "cannot allocate the scratch that interleaves quantized rows",
        ));
    }
    tmp.resize(scratch, 0u8);
    for t in mats {
        let Some((bb, rb)) = plan(&t) else { continue };
        if offsets.contains(&t.offset) {
            continue;
        }
        if let Some(payload) = bytes.get_mut(t.offset..t.offset.saturating_add(t.len)) {
            if interleave::interleave(payload, rb, bb, &mut tmp) {
                offsets.push(t.offset);
            }
        }
    }
    offsets.sort_unstable();
    Ok(offsets)
}

/// One tensor of the file's directory: name, shape and where its payload lies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub rank: u8,
    /// Outermost first; entries past `rank` are 1.
    pub dims: [u32; limits::MAX_RANK],
    pub loc: TensorLoc,
}

impl TensorInfo {
    /// The shape, outermost first.
    pub fn shape(&self) -> &[u32] {
        &self.dims[..self.rank as usize]
    }
}

/// The tensors of one decoder layer.
#[derive(Clone, Copy, Debug)]
pub struct LayerLocs {
    pub attn_norm: TensorLoc,
    pub wq: TensorLoc,
    pub wk: TensorLoc,
    pub wv: TensorLoc,
    pub wo: TensorLoc,
    pub ffn_norm: TensorLoc,
    /// SwiGLU gate (llama2.c w1).
    pub w1: TensorLoc,
    /// Down projection (llama2.c w2).
    pub w2: TensorLoc,
    /// Up projection (llama2.c w3).
    pub w3: TensorLoc,
}

/// A verified model ready to run.
pub struct Model {
    bytes: Vec<u8>,
    pub config: Config,
    /// The file digest (spec/slm.md, Digests): the model's identity.
    pub digest: [u8; 32],
    pub tokenizer: Tokenizer,
    pub name: String,
    pub embedding: TensorLoc,
    pub layers: Vec<LayerLocs>,
    pub final_norm: TensorLoc,
    /// The classifier: `output.weight`, or the embedding when tied.
    pub classifier: TensorLoc,
    /// Every tensor, in directory order.
    pub tensors: Vec<TensorInfo>,
    /// The layout and tokenizer digests adapters are bound to (spec/adapters.md, Base binding).
    pub binding: BaseBinding,
    /// Assembled tensors replacing base payloads, keyed by the base payload offset.
    overlay: BTreeMap<usize, Vec<u8>>,
    /// The receipt of the plan whose assembly `overlay` is, and the receipt's SHA-256.
    applied: Option<(Receipt, [u8; 32])>,
}

impl Model {
    /// Whether a matrix-vector product of this model may take an f16 matrix the load found free
    /// of infinities and NaNs ([`TensorLoc::f16_finite`]: the simd128 module only), the one
    /// kernel that reads a scaled input ([`crate::model::kernels::ActScratch`]).
    pub fn has_finite_f16_matrix(&self) -> bool {
        let finite_f16 = |t: &TensorLoc| t.dtype == DType::F16 && t.f16_finite;
        finite_f16(&self.classifier)
            || self.layers.iter().any(|l| {
                [&l.wq, &l.wk, &l.wv, &l.wo, &l.w1, &l.w2, &l.w3]
                    .into_iter()
                    .any(finite_f16)
            })
    }

    /// Whether a layer matrix of this model is f32 or f16: batched prefill then widens rows to
    /// f32 ([`crate::model::batch::MatmulScratch`]; adapters keep every tensor's dtype).
    pub fn has_float_layer_matrix(&self) -> bool {
        self.layers.iter().any(|l| {
            [&l.wq, &l.wk, &l.wv, &l.wo, &l.w1, &l.w2, &l.w3]
                .into_iter()
                .any(|t| matches!(t.dtype, DType::F32 | DType::F16))
        })
    }

    /// Verifies `bytes` completely (spec/slm.md, every rule; then the tokenizer) and takes them.
    pub fn load(bytes: Vec<u8>) -> Result<Model> {
        Model::load_known(bytes, &KnownDigests::default())
    }

    /// [`Model::load`], taking the digests of `known` (computed from these bytes as they
    /// arrived: the chunked loader) instead of hashing their bytes again.
    pub(crate) fn load_known(bytes: Vec<u8>, known: &KnownDigests) -> Result<Model> {
        let slm = Slm::parse_known(&bytes, known)?;
        let binding = binding::of_slm(&slm);
        let tokenizer = Tokenizer::with_source_digest(&slm.vocab, &binding.tokenizer)?;
        let find = |name: &str| -> Result<TensorLoc> {
            slm.tensor(name).map(TensorLoc::from_entry).ok_or_else(|| {
                Error::new(
                    ErrorCode::MissingTensor,
                    alloc::format!("tensor {name:?} is missing"),
                )
            })
        };
        let config = slm.header.config;
        let mut layers = Vec::with_capacity(config.n_layers as usize);
        for l in 0..config.n_layers {
            let t = |what: &str| find(&llama::layer_tensor(l, what));
            layers.push(LayerLocs {
                attn_norm: t("attn_norm")?,
                wq: t("attn_q")?,
                wk: t("attn_k")?,
                wv: t("attn_v")?,
                wo: t("attn_output")?,
                ffn_norm: t("ffn_norm")?,
                w1: t("ffn_gate")?,
                w2: t("ffn_down")?,
                w3: t("ffn_up")?,
            });
        }
        let mut embedding = find("token_embd.weight")?;
        let final_norm = find("output_norm.weight")?;
        let mut classifier = if config.tied_classifier {
            embedding
        } else {
            find("output.weight")?
        };
        if cfg!(all(target_arch = "wasm32", target_feature = "simd128")) {
            let file = &bytes[..];
            for l in &mut layers {
                for t in [
                    &mut l.wq, &mut l.wk, &mut l.wv, &mut l.wo, &mut l.w1, &mut l.w2, &mut l.w3,
                ] {
                    t.mark_f16_finite(file);
                }
            }
            embedding.mark_f16_finite(file);
            classifier.mark_f16_finite(file);
        }
        let mut tensors: Vec<TensorInfo> = slm
            .tensors
            .iter()
            .map(|e| TensorInfo {
                name: String::from(e.name),
                rank: e.rank,
                dims: e.dims,
                loc: TensorLoc::from_entry(e),
            })
            .collect();
        let name = String::from(slm.metadata("name").unwrap_or(""));
        let digest = slm.digest();
        drop(slm);
        let mut bytes = bytes;
        if cfg!(all(target_arch = "wasm32", target_feature = "simd128")) {
            // The payloads the products read (every layer matrix and the classifier), then
            // every location of them (a tied embedding, the directory's copies).
            let products = layers
                .iter()
                .flat_map(|l| [l.wq, l.wk, l.wv, l.wo, l.w1, l.w2, l.w3])
                .chain([classifier]);
            let done = interleave_quantized(&mut bytes, products)?;
            let locs = layers
                .iter_mut()
                .flat_map(|l| {
                    [
                        &mut l.wq, &mut l.wk, &mut l.wv, &mut l.wo, &mut l.w1, &mut l.w2, &mut l.w3,
                    ]
                })
                .chain([&mut embedding, &mut classifier])
                .chain(tensors.iter_mut().map(|t| &mut t.loc));
            for t in locs {
                // By offset: the payload's own (a payload of no bytes may share its offset).
                t.interleaved = t.len > 0
                    && interleave::block_bytes(t.dtype).is_some()
                    && done.binary_search(&t.offset).is_ok();
            }
        }
        Ok(Model {
            bytes,
            config,
            digest,
            tokenizer,
            name,
            embedding,
            layers,
            final_norm,
            classifier,
            tensors,
            binding,
            overlay: BTreeMap::new(),
            applied: None,
        })
    }

    /// The file bytes the model was loaded from, as held in memory: in the simd128 module the
    /// payloads flagged [`TensorLoc::interleaved`] have their rows rearranged (the same bytes
    /// elsewhere, but for the top bit of q4_0's odd code bytes, `interleave::held_code`;
    /// [`Model::base_payload`] gives a payload in the file's order).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// A weight as a matrix view over its current bytes (assembled when an adapter touched it).
    pub fn mat(&self, t: &TensorLoc) -> MatRef<'_> {
        MatRef {
            dtype: t.dtype,
            rows: t.rows,
            cols: t.cols,
            bytes: self.payload(t),
            // An adapter's assembled payload is not the one the flags describe (it is in the
            // file's order).
            f16_finite: t.f16_finite && !self.overlay.contains_key(&t.offset),
            interleaved: t.interleaved && !self.overlay.contains_key(&t.offset),
        }
    }

    /// The current payload bytes of a tensor as held in memory: the overlay's when it has one
    /// (in the file's order), else the loaded file's (interleaved when
    /// [`TensorLoc::interleaved`]).
    pub fn payload(&self, t: &TensorLoc) -> &[u8] {
        if !self.overlay.is_empty() {
            if let Some(bytes) = self.overlay.get(&t.offset) {
                return bytes;
            }
        }
        &self.bytes[t.offset..t.offset + t.len]
    }

    /// The payload bytes of a tensor as the file holds them (ignoring any overlay): borrowed, or
    /// for an interleaved payload ([`TensorLoc::interleaved`]) a copy put back in the file's
    /// order (`OutOfMemory` when it cannot be allocated).
    pub fn base_payload(&self, t: &TensorLoc) -> Result<Cow<'_, [u8]>> {
        let held = &self.bytes[t.offset..t.offset + t.len];
        let Some(bb) = interleave::block_bytes(t.dtype).filter(|_| t.interleaved) else {
            return Ok(Cow::Borrowed(held));
        };
        let mut file = Vec::new();
        file.try_reserve_exact(held.len()).map_err(|_| {
            Error::new(
                ErrorCode::OutOfMemory,
                "cannot allocate a tensor in the file's order",
            )
        })?;
        file.resize(held.len(), 0);
        let rb = t.cols / t.dtype.block_elems() * bb;
        if !interleave::deinterleave_into(held, rb, bb, &mut file) {
            return Err(Error::new(
                ErrorCode::InvalidLength,
                "an interleaved payload does not match its shape",
            ));
        }
        Ok(Cow::Owned(file))
    }

    /// Replaces the overlay and the receipt of the plan that made it (an empty map and `None`
    /// restore the base). Every value must be as long as the payload at its key;
    /// `adapter::Prepared::install` builds them so.
    pub(crate) fn set_overlay(
        &mut self,
        overlay: BTreeMap<usize, Vec<u8>>,
        applied: Option<(Receipt, [u8; 32])>,
    ) {
        self.overlay = overlay;
        self.applied = applied;
    }

    /// The receipt of the applied plan and its SHA-256 (`None` when the model computes with its
    /// base bytes).
    pub fn applied(&self) -> Option<&(Receipt, [u8; 32])> {
        self.applied.as_ref()
    }

    /// Tensors currently replaced by assembled bytes.
    pub fn overlay_len(&self) -> usize {
        self.overlay.len()
    }

    /// The dtype of the layer matrices (the first layer's query projection), for diagnostics.
    pub fn weight_dtype(&self) -> DType {
        self.layers
            .first()
            .map(|l| l.wq.dtype)
            .unwrap_or(self.embedding.dtype)
    }
}

#[cfg(test)]
mod tests {
    use super::{f16_all_finite, scales_all_finite};
    use crate::format::dtype::{Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES};
    use alloc::vec::Vec;

    #[test]
    fn scales_all_finite_reads_only_the_scales() {
        for bb in [Q8_0_BLOCK_BYTES, Q4_0_BLOCK_BYTES] {
            for h in 0..=u16::MAX {
                let finite = h & 0x7c00 != 0x7c00;
                // Code bytes that read as an infinity are not scales.
                let block = |scale: u16| {
                    let mut b = alloc::vec![0xfc; bb];
                    b[..2].copy_from_slice(&scale.to_le_bytes());
                    b
                };
                let payload: Vec<u8> = [0x3c00, 0xfbff, h, 0x0001]
                    .into_iter()
                    .flat_map(block)
                    .collect();
                assert_eq!(scales_all_finite(&payload, bb), finite, "{bb} {h:#06x}");
            }
            assert!(scales_all_finite(&[], bb));
            // A partial block is not a whole tensor.
            assert!(!scales_all_finite(&[0; 3], bb));
        }
        assert!(!scales_all_finite(&[0; 2], 1));
    }

    #[test]
    fn f16_all_finite_is_no_exponent_31() {
        for h in 0..=u16::MAX {
            let finite = h & 0x7c00 != 0x7c00;
            assert_eq!(f16_all_finite(&h.to_le_bytes()), finite, "{h:#06x}");
            // Among finite values, anywhere in a payload.
            let payload: Vec<u8> = [0x3c00, 0xfbff, h, 0x0001]
                .iter()
                .flat_map(|v: &u16| v.to_le_bytes())
                .collect();
            assert_eq!(f16_all_finite(&payload), finite, "{h:#06x}");
        }
        assert!(f16_all_finite(&[]));
    }
}
