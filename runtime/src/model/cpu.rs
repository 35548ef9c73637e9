//! Instruction-set levels of the kernels (spec/determinism.md, SIMD paths): which compiled
//! instance of the one kernel source runs. Every level computes the same bits; a level only
//! changes which vector instructions the compiler may use.
//!
//! - wasm32: fixed when the module is built (`simd128` or not); nothing is chosen at run time.
//! - x86-64: the baseline (SSE2) instance, or an AVX2 instance of the same code chosen at run time
//!   when the CPU has AVX2 and F16C and the OS saves the AVX registers (cpuid + xgetbv), together
//!   with the hand-written AVX2 quantized kernels of `model/avx2.rs`. FMA is never enabled.
//!
//! The only unsafe code of the runtime outside the wasm ABI lives here: the feature detection, the
//! call into the AVX2 instance, the calls into the hand-written AVX2 kernels, and the calls into
//! the SSE2 and AVX2 SHA-256 lanes (`sha256/lanes.rs`).
#![allow(unsafe_code)]

use core::sync::atomic::{AtomicU8, Ordering};

#[cfg(target_arch = "x86_64")]
use crate::format::{dtype::QK, DType};
#[cfg(target_arch = "x86_64")]
use crate::model::{
    avx2,
    batch::{BatchedProduct, TokenLanes},
    quant::BlockQ8,
};

/// A kernel instance level, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// The baseline instance: SSE2 on x86-64, and whatever the wasm module was built with.
    Portable = 1,
    /// The AVX2 instance and the hand-written AVX2 kernels (x86-64 with AVX2 and F16C; never
    /// with FMA).
    Avx2 = 2,
}

impl Isa {
    /// "portable" or "avx2".
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
        }
    }

    fn from_u8(v: u8) -> Isa {
        if v == Isa::Avx2 as u8 {
            Isa::Avx2
        } else {
            Isa::Portable
        }
    }
}

/// The highest level the CPU supports (0 = not detected yet).
static DETECTED: AtomicU8 = AtomicU8::new(0);
/// The level in use (0 = the detected one).
static CHOSEN: AtomicU8 = AtomicU8::new(0);

/// The highest level this CPU and OS support, detected once and cached.
pub fn detected() -> Isa {
    let v = DETECTED.load(Ordering::Relaxed);
    if v != 0 {
        return Isa::from_u8(v);
    }
    let isa = detect();
    DETECTED.store(isa as u8, Ordering::Relaxed);
    isa
}

/// The level the kernels use now: the detected one unless [`set_isa`] lowered it.
#[inline]
pub fn isa() -> Isa {
    match CHOSEN.load(Ordering::Relaxed) {
        0 => detected(),
        v => Isa::from_u8(v),
    }
}

/// Chooses the level the kernels use (process-wide), capped at [`detected`]: a level can be
/// lowered (e.g. to compare the portable path with AVX2) but never raised past what the CPU
/// supports. Returns the level now in use.
pub fn set_isa(isa: Isa) -> Isa {
    let level = isa.min(detected());
    CHOSEN.store(level as u8, Ordering::Relaxed);
    level
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Isa {
    use core::arch::x86_64::{__cpuid, __cpuid_count, _xgetbv};
    // SAFETY: cpuid exists on every x86-64 CPU. xgetbv is executed only when cpuid reports
    // OSXSAVE (the OS enabled XSAVE and with it the xgetbv instruction).
    let avx2 = unsafe {
        let max_leaf = __cpuid(0).eax;
        let leaf1 = __cpuid(1).ecx;
        let osxsave = leaf1 & (1 << 27) != 0;
        let avx = leaf1 & (1 << 28) != 0;
        // XCR0 bits 1 (SSE state) and 2 (AVX state): the OS saves the ymm registers.
        let os_avx = osxsave && avx && _xgetbv(0) & 0b110 == 0b110;
        // F16C (leaf 1 ecx bit 29): the hand-written kernels widen f16 scales with vcvtph2ps.
        let f16c = leaf1 & (1 << 29) != 0;
        os_avx && f16c && max_leaf >= 7 && __cpuid_count(7, 0).ebx & (1 << 5) != 0
    };
    if avx2 {
        Isa::Avx2
    } else {
        Isa::Portable
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Isa {
    Isa::Portable
}

/// Runs `f` in the instance of the current level: inlined into an AVX2-enabled function on
/// x86-64 when [`isa`] is AVX2, else called directly. `f` and everything it inlines (the kernels
/// mark their bodies `#[inline(always)]`) is then compiled once per level from the same source.
#[inline(always)]
pub(crate) fn run<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if isa() == Isa::Avx2 {
        // SAFETY: `isa()` is Avx2 only when `detect` found AVX2 (and F16C) in cpuid and the AVX
        // register state enabled by the OS in XCR0 (`set_isa` never raises the level past that).
        return unsafe { with_avx2(f) };
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// The hand-written AVX2 q8_0 kernel (`model/avx2.rs`, [`crate::model::kernels::dot4_q8_0`]'s
/// contract) when the level is [`Isa::Avx2`]; None otherwise.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn avx2_dot4_q8_0(rows: [&[u8]; 4], acts: [&[BlockQ8]; 4]) -> Option<[f32; 4]> {
    if isa() != Isa::Avx2 {
        return None;
    }
    // SAFETY: the kernel needs AVX2 and F16C; `isa()` is Avx2 only when `detect` found both in
    // cpuid and the OS saves the AVX register state (XCR0), and `set_isa` never raises the level
    // past that. The kernel itself is safe code (no pointers, no unchecked indexing).
    Some(unsafe { avx2::dot4_q8_0(rows, acts) })
}

/// The hand-written AVX2 q4_0 kernel (`model/avx2.rs`, [`crate::model::kernels::dot4_q4_0`]'s
/// contract) when the level is [`Isa::Avx2`]; None otherwise.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn avx2_dot4_q4_0(rows: [&[u8]; 4], act: &[BlockQ8]) -> Option<[f32; 4]> {
    if isa() != Isa::Avx2 {
        return None;
    }
    // SAFETY: as in `avx2_dot4_q8_0`: AVX2 and F16C were detected.
    Some(unsafe { avx2::dot4_q4_0(rows, act) })
}

/// The hand-written AVX2 codes of one activation block (`model/avx2.rs`,
/// `avx2::act_codes_q8_0`), bit for bit the scalar ones of `quant::quantize_act_q8_0`, when the
/// level is [`Isa::Avx2`]; None otherwise.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn avx2_act_codes_q8_0(block: &[f32; QK], id: f32) -> Option<[i8; QK]> {
    if isa() != Isa::Avx2 {
        return None;
    }
    // SAFETY: as in `avx2_dot4_q8_0`: AVX2 and F16C were detected.
    Some(unsafe { avx2::act_codes_q8_0(block, id) })
}

/// The hand-written AVX2 whole-matrix kernel of a q8_0 or q4_0 matrix (`model/avx2.rs`) of
/// `act.len()`-block rows: the rows of its whole groups of eight, bit for bit the single-row
/// products. Returns the rows computed (0 below [`Isa::Avx2`] and for other dtypes).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn avx2_matvec(dtype: DType, out: &mut [f32], bytes: &[u8], act: &[BlockQ8]) -> usize {
    if isa() != Isa::Avx2 {
        return 0;
    }
    // SAFETY: as in `avx2_dot4_q8_0`: AVX2 and F16C were detected.
    unsafe {
        match dtype {
            DType::Q8_0 => avx2::matvec_q8_0(out, bytes, act),
            DType::Q4_0 => avx2::matvec_q4_0(out, bytes, act),
            _ => 0,
        }
    }
}

/// The hand-written AVX2 + F16C whole-matrix kernel of an f16 matrix (`model/avx2.rs`) of
/// `x.len()`-element rows: every row, bit for bit the lane-ordered f16 dot products. Returns the
/// rows computed (0 below [`Isa::Avx2`]).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn avx2_matvec_f16(out: &mut [f32], bytes: &[u8], x: &[f32]) -> usize {
    if isa() != Isa::Avx2 {
        return 0;
    }
    // SAFETY: as in `avx2_dot4_q8_0`: AVX2 and F16C were detected.
    unsafe { avx2::matvec_f16(out, bytes, x) }
}

/// The F16C widening of f16 values (`model/avx2.rs`): `out[i] = f16_to_f32(f16 i of bytes)` for
/// the whole groups of eight. Returns the values written (0 below [`Isa::Avx2`]).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn avx2_widen_f16(bytes: &[u8], out: &mut [f32]) -> usize {
    if isa() != Isa::Avx2 {
        return 0;
    }
    // SAFETY: as in `avx2_dot4_q8_0`: AVX2 and F16C were detected.
    unsafe { avx2::widen_f16(bytes, out) }
}

/// The hand-written AVX2 prefill kernel of q8_0 or q4_0 rows (`model/avx2.rs`): every token of
/// a batched product in groups of eight (the last one padded), bit for bit the single-row
/// products; `lanes` is
/// its scratch for the tokens' per-block scales, biases and codes. Returns the tokens done (0 below
/// [`Isa::Avx2`] and for other dtypes).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn avx2_matmul(dtype: DType, p: BatchedProduct, lanes: TokenLanes) -> usize {
    if isa() != Isa::Avx2 {
        return 0;
    }
    // SAFETY: as in `avx2_dot4_q8_0`: AVX2 and F16C were detected.
    unsafe {
        match dtype {
            DType::Q8_0 => avx2::matmul_q8_0(p, lanes),
            DType::Q4_0 => avx2::matmul_q4_0(p, lanes),
            _ => 0,
        }
    }
}

/// Four SHA-256 digests of equal-length messages in SSE2 lanes ([`crate::sha256::sha256_x4`]).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn sha256_x4_sse2(messages: [&[u8]; 4]) -> [[u8; 32]; 4] {
    // SAFETY: SSE2 is part of the x86-64 baseline: every x86-64 CPU has it, and the target
    // enables it at compile time, so the `target_feature(enable = "sse2")` function may run.
    const _: () = assert!(cfg!(target_feature = "sse2"));
    unsafe { crate::sha256::lanes_vector::hash(messages) }
}

/// Eight SHA-256 digests of equal-length messages in AVX2 lanes when the level is
/// [`Isa::Avx2`]; None otherwise.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn sha256_x8_avx2(messages: [&[u8]; 8]) -> Option<[[u8; 32]; 8]> {
    if isa() != Isa::Avx2 {
        return None;
    }
    // SAFETY: as in `avx2_dot4_q8_0`: AVX2 was detected (the function needs nothing else).
    Some(unsafe { crate::sha256::lanes_vector8::hash(messages) })
}
