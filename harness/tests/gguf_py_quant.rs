//! Our q8_0/q4_0 weight quantizers, dequantizer and f32→f16 conversion against the reference
//! implementations they must equal: gguf-py's `gguf.quants` and numpy's `astype(float16)`
//! (spec/determinism.md, Weight quantization). Needs `python3` with `gguf` and `numpy`
//! importable (`pip install gguf numpy`); prints "skipped: ..." and passes otherwise.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use runtime::format::dtype::{DType, Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES, QK};
use runtime::model::quant::{dequantize, f16_to_f32, f32_to_f16, quantize_q4_0, quantize_q8_0};
use runtime::{ErrorCode, Result};

/// xorshift64*: a fixed, seedable stream so every run quantizes the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// 2^e for a normal exponent, exactly.
fn pow2(e: i32) -> f32 {
    f32::from_bits(((127 + e) as u32) << 23)
}

/// One block of a kind chosen by `kind`: the cases where the quantizers are easiest to get
/// subtly wrong.
fn block(rng: &mut Rng, kind: u64) -> [f32; QK] {
    let mut b = [0.0f32; QK];
    match kind {
        // Uniform noise at scales from 1e-6 to 1e5.
        0 => {
            let s = 10f32.powi(rng.below(12) as i32 - 6);
            b.iter_mut().for_each(|v| *v = rng.unit() * s);
        }
        // All +0, all -0, mixed signed zeros.
        1 => {}
        2 => b.iter_mut().for_each(|v| *v = -0.0),
        3 => b
            .iter_mut()
            .for_each(|v| *v = if rng.below(2) == 0 { 0.0 } else { -0.0 }),
        // q8_0 ties: amax = 127 * 2^e so d = 2^e and x * id = k + 0.5 exactly.
        4 => {
            let e = rng.below(30) as i32 - 20;
            b.iter_mut()
                .for_each(|v| *v = (rng.below(254) as f32 - 127.0 + 0.5) * pow2(e));
            b[rng.below(32) as usize] = if rng.below(2) == 0 { 127.0 } else { -127.0 } * pow2(e);
        }
        // q4_0 boundaries: max = -8 * 2^e (d = 2^e), x * id + 8.5 on or next to an integer.
        5 => {
            let e = rng.below(30) as i32 - 20;
            b.iter_mut().for_each(|v| {
                let x = (rng.below(16) as f32 - 8.0 + 0.5) * pow2(e);
                let bits = x.to_bits() as i64 + rng.below(3) as i64 - 1;
                *v = f32::from_bits(bits as u32);
            });
            b[rng.below(32) as usize] = -8.0 * pow2(e);
        }
        // Largest magnitude twice with opposite signs (the first one is `max`), negative first
        // or positive first.
        6 => {
            let m = 1.0 + rng.unit().abs() * 100.0;
            b.iter_mut().for_each(|v| *v = rng.unit() * m * 0.9);
            let i = rng.below(16) as usize;
            let j = 16 + rng.below(16) as usize;
            let neg_first = rng.below(2) == 0;
            b[i] = if neg_first { -m } else { m };
            b[j] = -b[i];
        }
        // Tiny blocks: f16 scale subnormal or zero (amax down to 1e-30), f32 subnormals inside.
        7 => {
            let s = 10f32.powi(-(rng.below(25) as i32) - 6);
            b.iter_mut().for_each(|v| *v = rng.unit() * s);
            b[rng.below(32) as usize] = f32::from_bits(rng.below(0x7f_ffff) as u32 + 1);
        }
        // Near the f16 scale overflow: q8_0 amax ≈ 127 * 65504, q4_0 |max| ≈ 8 * 65504.
        8 => {
            let limit = if rng.below(2) == 0 { 127.0 } else { 8.0 } * 65504.0;
            let m = limit * (1.0 + (rng.unit() * 0.001));
            b.iter_mut().for_each(|v| *v = rng.unit() * m);
            b[rng.below(32) as usize] = if rng.below(2) == 0 { m } else { -m };
        }
        // Random finite bit patterns with moderate exponents.
        _ => b.iter_mut().for_each(|v| {
            let exp = 100 + rng.below(46) as u32; // 2^-27 .. 2^18
            *v =
                f32::from_bits((rng.below(2) as u32) << 31 | exp << 23 | rng.below(1 << 23) as u32);
        }),
    }
    b
}

/// f32 values that probe f32→f16 rounding: every f16 midpoint, one f32 ulp either side, plus
/// random bit patterns (NaN and infinity included).
fn f16_probes(rng: &mut Rng) -> Vec<f32> {
    let mut v = Vec::new();
    for h in 0u16..0x7c00 {
        let lo = f16_to_f32(h) as f64;
        let hi = f16_to_f32(h + 1) as f64; // 0x7c00 is infinity: the overflow midpoint 65520
        let hi = if hi.is_infinite() { 65536.0 } else { hi };
        let mid = ((lo + hi) / 2.0) as f32; // exact: 12 significant bits
        for x in [
            f16_to_f32(h),
            mid,
            f32::from_bits(mid.to_bits() - 1),
            f32::from_bits(mid.to_bits() + 1),
        ] {
            v.push(x);
            v.push(-x);
        }
    }
    for _ in 0..200_000 {
        v.push(f32::from_bits(rng.next() as u32));
    }
    v.extend([
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::MAX,
        f32::MIN,
    ]);
    while v.len() % QK != 0 {
        v.push(0.0);
    }
    v
}

fn python_ready() -> std::result::Result<(), String> {
    match Command::new("python3")
        .args(["-c", "import gguf, numpy"])
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(String::from_utf8_lossy(&o.stderr).trim().to_string()),
        Err(e) => Err(format!("python3: {e}")),
    }
}

fn le_f32(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn same_f32(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Compares our quantizer with gguf-py's bytes block by block; returns (equal blocks, refused).
fn compare_quantizer(
    name: &str,
    data: &[f32],
    theirs: &[u8],
    block_bytes: usize,
    quantize: fn(&[f32], &mut [u8]) -> Result<()>,
) -> (usize, usize) {
    assert_eq!(theirs.len(), data.len() / QK * block_bytes, "{name} size");
    let (mut equal, mut refused) = (0, 0);
    let mut ours = vec![0u8; block_bytes];
    for (b, (src, want)) in data
        .chunks_exact(QK)
        .zip(theirs.chunks_exact(block_bytes))
        .enumerate()
    {
        let scale = u16::from_le_bytes([want[0], want[1]]);
        let finite_in = src.iter().all(|v| v.is_finite());
        match quantize(src, &mut ours) {
            Ok(()) => {
                assert!(finite_in, "{name} block {b}: accepted non-finite input");
                assert_eq!(ours, want, "{name} block {b} differs from gguf-py: {src:?}");
                equal += 1;
            }
            Err(e) => {
                assert_eq!(e.code, ErrorCode::NonFiniteValue, "{name} block {b}: {e}");
                // We refuse exactly the blocks gguf-py stores with a non-finite scale.
                assert!(
                    !finite_in || scale & 0x7c00 == 0x7c00,
                    "{name} block {b} refused, gguf-py scale {scale:#06x}: {e}"
                );
                refused += 1;
            }
        }
    }
    (equal, refused)
}

#[test]
fn quantizers_and_f16_match_gguf_py() {
    if let Err(why) = python_ready() {
        println!("skipped: python3 with gguf and numpy is not available ({why})");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/tools/gguf_py_quant.py");
    let dir: PathBuf =
        std::env::temp_dir().join(format!("tinyrustlm-gguf-py-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut data = Vec::new();
    for i in 0..20_000u64 {
        data.extend(block(&mut rng, i % 10));
    }
    data.extend(f16_probes(&mut rng));
    let input: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(dir.join("input.f32"), &input).unwrap();

    let out = common::succeeded(
        Command::new("python3")
            .arg(&script)
            .arg(dir.join("input.f32"))
            .arg(&dir),
    );
    println!("reference: {}", String::from_utf8_lossy(&out.stdout).trim());
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();

    // Weight quantizers: byte-identical (the probe blocks too, except those we refuse).
    let q8 = read("q8_0.bin");
    let (eq8, ref8) = compare_quantizer("q8_0", &data, &q8, Q8_0_BLOCK_BYTES, quantize_q8_0);
    let q4 = read("q4_0.bin");
    let (eq4, ref4) = compare_quantizer("q4_0", &data, &q4, Q4_0_BLOCK_BYTES, quantize_q4_0);
    println!("q8_0: {eq8} blocks identical, {ref8} refused; q4_0: {eq4} identical, {ref4} refused");
    // Blocks of kind 8 overflow the f16 scale of each type: the refusal path is exercised.
    assert!(ref8 > 0 && ref4 > 0);

    // Dequantization of gguf-py's bytes: the same f32 bits as gguf-py's dequantize.
    for (dtype, bytes, deq) in [
        (DType::Q8_0, &q8, read("q8_0.deq")),
        (DType::Q4_0, &q4, read("q4_0.deq")),
    ] {
        let mut ours = vec![0.0f32; data.len()];
        dequantize(dtype, bytes, &mut ours).unwrap();
        for (i, (a, b)) in ours.iter().zip(le_f32(&deq)).enumerate() {
            assert!(
                same_f32(*a, b),
                "{dtype:?} dequantize element {i}: {a} vs {b}"
            );
        }
    }

    // f32 → f16: numpy's astype(float16) bits for every non-NaN value; NaN stays NaN.
    let f16 = read("f16.bin");
    for (x, c) in data.iter().zip(f16.chunks_exact(2)) {
        let want = u16::from_le_bytes([c[0], c[1]]);
        let ours = f32_to_f16(*x);
        if x.is_nan() {
            assert!(
                ours & 0x7c00 == 0x7c00 && ours & 0x3ff != 0,
                "NaN {x:?} -> {ours:#06x}"
            );
            assert!(want & 0x7c00 == 0x7c00 && want & 0x3ff != 0);
        } else {
            assert_eq!(ours, want, "f32 {x:e} ({:#010x})", x.to_bits());
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
