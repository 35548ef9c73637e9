//! Every kernel's AVX2 instance against its portable instance (spec/determinism.md, SIMD
//! paths): bit-identical results on random inputs with edge values (signed zeros, subnormals,
//! extremes, infinities), lengths that are not multiples of the lanes, and row counts that are
//! not multiples of the row group. NaN results must be NaN in both (their bits are unspecified).
//!
//! The level is process-wide, so the tests of this file take turns through one lock. On a CPU
//! without AVX2 there is nothing to compare and each test says so.

use proptest::prelude::*;
use runtime::format::dtype::{DType, QK};
use runtime::model::batch::MatmulScratch;
use runtime::model::cpu::{self, Isa};
use runtime::model::kernels::{
    dot4_q4_0, dot4_q8_0, dot_f16_row, dot_f32, dot_f32_row, dot_q4_0_row, dot_q4_0_rows,
    dot_q8_0_row, dot_q8_0_rows, matvec, ActScratch, MatRef, ROW_GROUP,
};
use runtime::model::math::{exp_f32, silu_f32, softmax_in_place, sum_f32, swiglu_in_place};
use runtime::model::quant::{quantize_act_q8_0, BlockQ8};
use std::sync::Mutex;

static LEVEL: Mutex<()> = Mutex::new(());

/// Runs `f` once on the portable instance and once on AVX2 and returns both results; None when
/// this CPU has no AVX2.
fn both<T>(mut f: impl FnMut() -> T) -> Option<(T, T)> {
    let _turn = LEVEL.lock().unwrap_or_else(|e| e.into_inner());
    if cpu::detected() < Isa::Avx2 {
        eprintln!("no AVX2 on this CPU: only the portable instance exists; nothing to compare");
        return None;
    }
    assert_eq!(cpu::set_isa(Isa::Portable), Isa::Portable);
    let portable = f();
    assert_eq!(cpu::set_isa(Isa::Avx2), Isa::Avx2);
    let avx2 = f();
    Some((portable, avx2))
}

/// Bit equality, or NaN in both.
fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn assert_same(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            same(*x, *y),
            "element {i}: portable {x:e} ({:#x}), avx2 {y:e} ({:#x})",
            x.to_bits(),
            y.to_bits()
        );
    }
}

/// f32 values with the edges weighted in.
fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => -4.0f32..4.0,
        1 => Just(0.0f32),
        1 => Just(-0.0f32),
        1 => prop_oneof![
            Just(f32::MIN_POSITIVE),
            Just(-f32::MIN_POSITIVE / 3.0),
            Just(f32::from_bits(1)),
            Just(f32::MAX),
            Just(f32::MIN),
            Just(1e30f32),
            Just(-1e-30f32),
        ],
        1 => (0u32..0x0080_0000, any::<bool>())
            .prop_map(|(m, s)| f32::from_bits(m | (u32::from(s) << 31))), // subnormals
        1 => any::<u32>().prop_map(f32::from_bits).prop_filter("finite", |v| v.is_finite()),
    ]
}

/// Finite values including infinities rarely.
fn value_or_inf() -> impl Strategy<Value = f32> {
    prop_oneof![20 => value(), 1 => Just(f32::INFINITY), 1 => Just(f32::NEG_INFINITY)]
}

fn le_f32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Activation blocks with arbitrary codes (-128 included, which the quantizer never makes) and
/// scales (infinities included).
fn act_blocks(n: usize) -> impl Strategy<Value = Vec<BlockQ8>> {
    prop::collection::vec(
        (
            prop::array::uniform32(code_byte().prop_map(|b| b as i8)),
            prop_oneof![20 => value_or_inf(), 1 => Just(f32::NAN)],
        )
            .prop_map(|(qs, d)| BlockQ8 { qs, d }),
        n,
    )
}

/// f16 scale bits: moderate values mostly, then every bit pattern class: signed zeros,
/// subnormals, the largest finite value, infinities, quiet and signalling NaNs.
fn scale_bits() -> impl Strategy<Value = u16> {
    prop_oneof![
        8 => (0x2000u16..0x4400).boxed(),
        2 => any::<u16>().boxed(),
        1 => (0x0001u16..0x0400).boxed(),
        1 => prop::sample::select(vec![
            0x0000u16, 0x8000, 0x0001, 0x83ff, 0x7bff, 0xfbff, 0x7c00, 0xfc00, 0x7e00, 0x7c01,
            0xfd55,
        ])
        .boxed(),
    ]
}

/// Code bytes with the extremes weighted in: -128 and 127 as q8_0 codes, nibbles 0 and 15.
fn code_byte() -> impl Strategy<Value = u8> {
    prop_oneof![6 => any::<u8>(), 1 => Just(0x80u8), 1 => Just(0x7fu8), 1 => Just(0xf0u8), 1 => Just(0x0fu8)]
}

/// Random storage bytes for `rows` rows of `blocks` blocks of a quantized dtype, with f16 scales
/// drawn from every bit pattern class.
fn quant_rows(dtype: DType, rows: usize, blocks: usize) -> impl Strategy<Value = Vec<u8>> {
    let bb = dtype.block_bytes();
    prop::collection::vec(
        (scale_bits(), prop::collection::vec(code_byte(), bb - 2)),
        rows * blocks,
    )
    .prop_map(|blocks| {
        blocks
            .into_iter()
            .flat_map(|(d, qs)| d.to_le_bytes().into_iter().chain(qs))
            .collect()
    })
}

/// `matvec` of a `rows` × `blocks · 32` matrix of each dtype in `dtypes` (its bytes the first of
/// `seed_bytes`, f32 weights kept mostly finite) with the first `blocks · 32` values of `x`, at
/// both levels: the same bits.
fn assert_matvec_levels_agree(
    dtypes: &[DType],
    rows: usize,
    blocks: usize,
    seed_bytes: &[u8],
    x: &[f32],
) {
    let cols = blocks * QK;
    let x = &x[..cols];
    let mut scratch = ActScratch::new(cols).unwrap();
    for &dtype in dtypes {
        let len = dtype.bytes_for((rows * cols) as u64).unwrap() as usize;
        let mut bytes = seed_bytes[..len].to_vec();
        // Keep f32 weights mostly finite and q scales moderate, with the raw bytes elsewhere.
        if dtype == DType::F32 {
            for c in bytes.chunks_exact_mut(4) {
                c[3] &= 0xbf;
            }
        }
        let m = MatRef::new(dtype, rows, cols, &bytes).unwrap();
        if let Some((p, v)) = both(|| {
            let mut out = vec![0.0f32; rows];
            matvec(&mut out, &m, x, &mut scratch).unwrap();
            out
        }) {
            assert_same(&p, &v);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn f32_dots(pairs in prop::collection::vec((value_or_inf(), value()), 0..150)) {
        let (a, b): (Vec<f32>, Vec<f32>) = pairs.into_iter().unzip();
        let bytes = le_f32(&a);
        if let Some((p, v)) = both(|| [dot_f32(&a, &b), dot_f32_row(&bytes, &b)]) {
            assert_same(&p, &v);
        }
    }

    #[test]
    fn f16_dot(pairs in prop::collection::vec((any::<u16>(), value()), 0..150)) {
        let bytes: Vec<u8> = pairs.iter().flat_map(|(h, _)| h.to_le_bytes()).collect();
        let x: Vec<f32> = pairs.iter().map(|p| p.1).collect();
        if let Some((p, v)) = both(|| dot_f16_row(&bytes, &x)) {
            assert_same(&[p], &[v]);
        }
    }

    #[test]
    fn quantized_dots(
        (blocks, q8, q4, act) in (0usize..6).prop_flat_map(|n| (
            Just(n),
            quant_rows(DType::Q8_0, ROW_GROUP, n),
            quant_rows(DType::Q4_0, ROW_GROUP, n),
            act_blocks(n),
        ))
    ) {
        let rows8: [&[u8]; ROW_GROUP] =
            core::array::from_fn(|r| &q8[r * blocks * 34..(r + 1) * blocks * 34]);
        let rows4: [&[u8]; ROW_GROUP] =
            core::array::from_fn(|r| &q4[r * blocks * 18..(r + 1) * blocks * 18]);
        let run = || {
            let mut out = Vec::new();
            out.extend(rows8.map(|r| dot_q8_0_row(r, &act)));
            out.extend(dot_q8_0_rows(rows8, &act));
            out.extend(rows4.map(|r| dot_q4_0_row(r, &act)));
            out.extend(dot_q4_0_rows(rows4, &act));
            out
        };
        if let Some((p, v)) = both(run) {
            assert_same(&p, &v);
            // The row group computes each row exactly as the single-row kernel.
            assert_same(&p[..ROW_GROUP], &p[ROW_GROUP..2 * ROW_GROUP]);
            assert_same(&p[2 * ROW_GROUP..3 * ROW_GROUP], &p[3 * ROW_GROUP..]);
        }
    }

    /// The four-chain kernels with chains of different lengths: four q8_0 rows and four q4_0
    /// rows of 0..7 blocks each, four activations of 0..7 blocks each. Each chain equals its
    /// single-row kernel, and the AVX2 kernels equal the portable source.
    #[test]
    fn four_chains(
        (rows8, rows4, acts) in (
            prop::array::uniform4(0usize..7),
            prop::array::uniform4(0usize..7),
            prop::array::uniform4(0usize..7),
        ).prop_flat_map(|(n8, n4, na)| (
            n8.map(|n| quant_rows(DType::Q8_0, 1, n)),
            n4.map(|n| quant_rows(DType::Q4_0, 1, n)),
            na.map(act_blocks),
        ))
    ) {
        let r8: [&[u8]; ROW_GROUP] = core::array::from_fn(|i| &rows8[i][..]);
        let r4: [&[u8]; ROW_GROUP] = core::array::from_fn(|i| &rows4[i][..]);
        let a: [&[BlockQ8]; ROW_GROUP] = core::array::from_fn(|i| &acts[i][..]);
        let run = || {
            let mut out = Vec::new();
            out.extend(dot4_q8_0(r8, a));
            out.extend((0..ROW_GROUP).map(|i| dot_q8_0_row(r8[i], a[i])));
            // Prefill's shape: one row, four activations; matvec's: four rows, one activation.
            out.extend(dot4_q8_0([r8[0]; ROW_GROUP], a));
            out.extend(a.map(|a| dot_q8_0_row(r8[0], a)));
            out.extend(dot4_q8_0(r8, [a[0]; ROW_GROUP]));
            out.extend(r8.map(|r| dot_q8_0_row(r, a[0])));
            out.extend(dot4_q4_0(r4, a[1]));
            out.extend(r4.map(|r| dot_q4_0_row(r, a[1])));
            out
        };
        if let Some((p, v)) = both(run) {
            assert_same(&p, &v);
            for pair in p.chunks_exact(2 * ROW_GROUP) {
                assert_same(&pair[..ROW_GROUP], &pair[ROW_GROUP..]);
            }
        }
    }

    #[test]
    fn matvec_every_dtype(
        // Past two whole groups of eight rows (the AVX2 whole-matrix kernels) plus a tail.
        rows in 0usize..21,
        blocks in 0usize..10,
        seed_bytes in prop::collection::vec(any::<u8>(), 21 * 10 * 128),
        x in prop::collection::vec(value(), 10 * QK),
    ) {
        assert_matvec_levels_agree(&DType::ALL, rows, blocks, &seed_bytes, &x);
    }

    /// f16 matrices of any width (the AVX2 F16C kernel's whole chunks of 16 columns, and the
    /// tail it adds to the lanes the portable way) and of any row count, with raw weight bits:
    /// subnormals, infinities and NaNs included.
    #[test]
    fn matvec_f16_any_width(
        rows in 0usize..11,
        cols in 0usize..75,
        weights in prop::collection::vec(any::<u16>(), 10 * 74),
        x in prop::collection::vec(value(), 74),
    ) {
        let bytes: Vec<u8> = weights[..rows * cols]
            .iter()
            .flat_map(|h| h.to_le_bytes())
            .collect();
        let m = MatRef::new(DType::F16, rows, cols, &bytes).unwrap();
        let x = &x[..cols];
        let mut scratch = ActScratch::new(cols).unwrap();
        let run = |scratch: &mut ActScratch| {
            let mut out = vec![0.0f32; rows];
            matvec(&mut out, &m, x, scratch).unwrap();
            out
        };
        let rows_alone: Vec<f32> = bytes
            .chunks_exact(2 * cols.max(1))
            .take(rows)
            .map(|r| dot_f16_row(r, x))
            .collect();
        if let Some((p, v)) = both(|| run(&mut scratch)) {
            assert_same(&p, &v);
            if cols > 0 {
                assert_same(&v, &rows_alone);
            }
        }
    }

    /// Rows longer than one column chunk of the AVX2 q4_0 whole-matrix kernel (64 blocks: each
    /// chunk continues the accumulators of the one before), for both quantized dtypes.
    #[test]
    fn matvec_long_rows(
        rows in 0usize..18,
        blocks in 60usize..140,
        seed_bytes in prop::collection::vec(any::<u8>(), 17 * 139 * 34),
        x in prop::collection::vec(value(), 139 * QK),
    ) {
        assert_matvec_levels_agree(&[DType::Q8_0, DType::Q4_0], rows, blocks, &seed_bytes, &x);
    }

    /// Batched prefill's product (`MatmulScratch::matmul`: every token in the AVX2 kernels, in
    /// groups of eight with the last one padded; portable: groups of four and one at a time)
    /// equals `matvec` token by
    /// token, at both levels, with raw weight bytes (NaN, infinite and subnormal scales, codes
    /// -128) and strides wider than the matrix.
    #[test]
    fn matmul_is_matvec_per_token(
        rows in 0usize..11,
        blocks in 0usize..4,
        n in 0usize..18,
        seed_bytes in prop::collection::vec(any::<u8>(), 11 * 4 * 34),
        x in prop::collection::vec(value(), 18 * (4 * QK + 3)),
    ) {
        let cols = blocks * QK;
        let (x_stride, out_stride) = (cols + 3, rows + 2);
        let mut kernel = MatmulScratch::new(18, 4 * QK, true).unwrap();
        let mut scratch = ActScratch::new(cols).unwrap();
        for dtype in [DType::Q8_0, DType::Q4_0] {
            let len = dtype.bytes_for((rows * cols) as u64).unwrap() as usize;
            let m = MatRef::new(dtype, rows, cols, &seed_bytes[..len]).unwrap();
            let mut batched = || {
                let mut out = vec![0.0f32; n * out_stride];
                kernel.matmul(&mut out, out_stride, &m, &x, x_stride, n).unwrap();
                out
            };
            let (p, v) = match both(&mut batched) {
                Some(pv) => pv,
                None => (batched(), batched()),
            };
            assert_same(&p, &v);
            for t in 0..n {
                let mut want = vec![0.0f32; rows];
                matvec(&mut want, &m, &x[t * x_stride..t * x_stride + cols], &mut scratch).unwrap();
                assert_same(&v[t * out_stride..t * out_stride + rows], &want);
            }
        }
    }

    #[test]
    fn activation_quantization(
        x in prop::collection::vec(
            prop_oneof![40 => value_or_inf(), 1 => Just(f32::NAN)],
            0..5 * QK,
        ),
    ) {
        let n = x.len() / QK;
        let x = &x[..n * QK];
        if let Some((p, v)) = both(|| {
            let mut out = vec![BlockQ8::ZERO; n];
            quantize_act_q8_0(x, &mut out).unwrap();
            out
        }) {
            for (a, b) in p.iter().zip(&v) {
                assert_eq!(a.qs, b.qs);
                assert!(same(a.d, b.d));
            }
        }
    }

    #[test]
    fn sums_and_softmax(x in prop::collection::vec(-80.0f32..80.0, 0..300)) {
        if let Some((p, v)) = both(|| {
            let mut s = x.clone();
            softmax_in_place(&mut s);
            s.push(sum_f32(&x));
            s
        }) {
            assert_same(&p, &v);
        }
    }
}

/// Gate values for SwiGLU: ordinary ones, the exp thresholds (±89, ±104 and just past them),
/// huge, tiny, infinite and NaN.
fn gate_value() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => -20.0f32..20.0,
        1 => prop::sample::select(vec![
            89.0f32, 89.000_01, -89.0, -89.000_01, 104.0, 104.000_01, -104.0, -104.000_01,
            88.722_84, -87.336_54, -103.278_93, 0.0, -0.0, 1e-45, -1e-45, f32::MAX, f32::MIN,
            f32::INFINITY, f32::NEG_INFINITY, f32::NAN,
        ]),
        1 => any::<u32>().prop_map(f32::from_bits),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// SwiGLU over a slice (vectorized in each instance) equals the scalar expression element by
    /// element, at both levels.
    #[test]
    fn swiglu_is_elementwise(pairs in prop::collection::vec((gate_value(), value()), 0..100)) {
        let (gate, up): (Vec<f32>, Vec<f32>) = pairs.into_iter().unzip();
        let scalar: Vec<f32> = gate
            .iter()
            .zip(&up)
            .map(|(&g, &u)| std::hint::black_box(silu_f32(std::hint::black_box(g))) * u)
            .collect();
        let run = || {
            let mut g = gate.clone();
            swiglu_in_place(&mut g, &up);
            g
        };
        if let Some((p, v)) = both(run) {
            assert_same(&p, &v);
            assert_same(&p, &scalar);
        } else {
            assert_same(&run(), &scalar);
        }
    }
}

/// exp's special cases, which its branch-free form computes with selects.
#[test]
fn exp_edges_are_selected_exactly() {
    assert_eq!(exp_f32(89.000_01), f32::INFINITY);
    assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
    assert_eq!(exp_f32(f32::MAX), f32::INFINITY);
    assert_eq!(exp_f32(-104.000_01).to_bits(), 0);
    assert_eq!(exp_f32(f32::NEG_INFINITY).to_bits(), 0);
    assert_eq!(exp_f32(f32::MIN).to_bits(), 0);
    assert!(exp_f32(88.0).is_finite() && exp_f32(88.0) > 1e38);
    assert!(exp_f32(-104.0) == 0.0 || exp_f32(-104.0) < 1e-44);
    let nan = f32::from_bits(0x7fc0_1234);
    assert_eq!(exp_f32(nan).to_bits(), nan.to_bits());
}

#[test]
fn the_level_only_goes_down() {
    let _turn = LEVEL.lock().unwrap_or_else(|e| e.into_inner());
    let top = cpu::detected();
    assert_eq!(cpu::set_isa(Isa::Portable), Isa::Portable);
    assert_eq!(cpu::isa(), Isa::Portable);
    assert_eq!(cpu::set_isa(Isa::Avx2), top);
    assert_eq!(cpu::isa(), top);
    #[cfg(target_arch = "x86_64")]
    assert_eq!(
        top == Isa::Avx2,
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("f16c"),
        "cpuid detection agrees with std's"
    );
}

/// Every f16 weight scale (all 65536 bit patterns, subnormals, infinities and NaNs included) in
/// every chain of both four-chain kernels: the AVX2 kernels widen scales with F16C, the portable
/// source with integer operations. With all codes 1 and an activation scale of 1 a chain is
/// `0 + 32 * (f32(h) * 1)`, which must also be exactly 32 times the widened scale.
#[test]
fn every_weight_scale() {
    let act = [BlockQ8 {
        qs: [1; QK],
        d: 1.0,
    }];
    let q8 = |h: u16| -> Vec<u8> {
        let mut b = h.to_le_bytes().to_vec();
        b.extend([1u8; QK]);
        b
    };
    let q4 = |h: u16| -> Vec<u8> {
        let mut b = h.to_le_bytes().to_vec();
        b.extend([0x99u8; QK / 2]); // nibbles 9: codes 1
        b
    };
    let run = || {
        let mut out = Vec::with_capacity(2 * 65536);
        for hs in (0..=u16::MAX).collect::<Vec<_>>().chunks_exact(ROW_GROUP) {
            let b8: Vec<Vec<u8>> = hs.iter().map(|&h| q8(h)).collect();
            let b4: Vec<Vec<u8>> = hs.iter().map(|&h| q4(h)).collect();
            out.extend(dot4_q8_0(
                core::array::from_fn(|i| &b8[i][..]),
                [&act[..]; ROW_GROUP],
            ));
            out.extend(dot4_q4_0(core::array::from_fn(|i| &b4[i][..]), &act));
        }
        out
    };
    if let Some((p, v)) = both(run) {
        assert_same(&p, &v);
        // Per group of four scales: the four q8_0 chains, then the four q4_0 chains.
        for (hs, group) in (0..=u16::MAX)
            .collect::<Vec<_>>()
            .chunks_exact(ROW_GROUP)
            .zip(v.chunks_exact(2 * ROW_GROUP))
        {
            for (i, &h) in hs.iter().enumerate() {
                let want = 32.0 * runtime::model::quant::f16_to_f32(h) + 0.0;
                let (q8, q4) = (group[i], group[ROW_GROUP + i]);
                assert!(same(q8, want) && same(q4, want), "scale {h:#06x}");
            }
        }
    }
}

/// Activation quantization at its rounding ties and edges, at both levels: a block whose largest
/// |x| is 127 has scale 1, so x itself is rounded (ties ±0.5, ±2.5, ±126.5 go away from zero;
/// 0.49999997 and the values next to each tie do not); a block of a subnormal largest |x| has an
/// infinite inverse scale (codes ±127, 0 for zeros); a block holding infinity has a zero inverse
/// scale (0 and NaN products give code 0); NaN elements give code 0.
#[test]
fn activation_quantization_ties_and_edges() {
    let below = |v: f32| f32::from_bits(v.to_bits() - 1);
    let above = |v: f32| f32::from_bits(v.to_bits() + 1);
    let mut ties: Vec<f32> = vec![127.0, -127.0, 0.0, -0.0, f32::NAN];
    for t in [0.5f32, 1.5, 2.5, 63.5, 126.5] {
        ties.extend([t, -t, below(t), above(t), -below(t)]);
    }
    ties.push(0.499_999_97);
    ties.resize(2 * QK, 0.25);
    let mut blocks = ties;
    let mut tiny = vec![
        f32::from_bits(3),
        -f32::from_bits(3),
        f32::from_bits(1),
        0.0,
        -0.0,
    ];
    tiny.resize(QK, f32::from_bits(2));
    blocks.extend(tiny);
    let mut inf = vec![f32::INFINITY, 1.0, -3.0, 0.0, f32::NAN, f32::NEG_INFINITY];
    inf.resize(QK, 7.0);
    blocks.extend(inf);
    let n = blocks.len() / QK;
    if let Some((p, v)) = both(|| {
        let mut out = vec![BlockQ8::ZERO; n];
        quantize_act_q8_0(&blocks, &mut out).unwrap();
        out
    }) {
        for (a, b) in p.iter().zip(&v) {
            assert_eq!(a.qs, b.qs);
            assert!(same(a.d, b.d));
        }
        // The ties of the first block went away from zero at both levels.
        assert_eq!(&v[0].qs[..8], &[127, -127, 0, 0, 0, 1, -1, 0]);
    }
}
