//! Accuracy of the runtime's own math functions (spec/math.md) against f64 references from std,
//! and agreement with std's f32 functions (the platform libm: glibc on Linux).
//!
//! Run with `--nocapture` to see the measured figures recorded in spec/math.md.

use runtime::model::math::{
    combine_lanes, cos_f32, exp_f32, ln_f32, pow_f32, silu_f32, sin_f32, softmax_in_place,
    sqrt_f32, sum_f32, SUM_LANES,
};

/// Position of an f32 on the number line in ulps (+0 and -0 both at 0).
fn ordinal(v: f32) -> i64 {
    let b = v.to_bits();
    if b & 0x8000_0000 != 0 {
        -i64::from(b & 0x7fff_ffff)
    } else {
        i64::from(b)
    }
}

/// Distance in ulps between two f32 results; NaN only matches NaN.
fn ulp_distance(a: f32, b: f32) -> u64 {
    if a.is_nan() || b.is_nan() {
        return if a.is_nan() && b.is_nan() {
            0
        } else {
            u64::MAX
        };
    }
    ordinal(a).abs_diff(ordinal(b))
}

/// Size of one f32 ulp at the magnitude of `v` (subnormal spacing below the normal range).
fn ulp_of(v: f32) -> f64 {
    let e = ((v.to_bits() >> 23) & 0xff).max(1) as i32;
    2f64.powi(e - 150)
}

/// Deterministic xorshift64 stream for random bit patterns.
struct Bits(u64);

impl Bits {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 32) as u32
    }
}

#[derive(Default)]
struct Stats {
    count: u64,
    correctly_rounded: u64,
    std_agree: u64,
    max_ulp_error: f64,
    worst_input: f32,
    max_distance: u64,
}

impl Stats {
    /// Records one input: ours vs the f64 reference rounded once, and vs std's f32 result.
    fn record(&mut self, x: f32, ours: f32, reference: f64, std_f32: f32) {
        self.count += 1;
        let rounded = reference as f32;
        let distance = ulp_distance(ours, rounded);
        if distance == 0 {
            self.correctly_rounded += 1;
        }
        if ulp_distance(ours, std_f32) == 0 {
            self.std_agree += 1;
        }
        self.max_distance = self.max_distance.max(distance);
        if rounded.is_finite() && ours.is_finite() {
            let err = (f64::from(ours) - reference).abs() / ulp_of(rounded);
            if err > self.max_ulp_error {
                self.max_ulp_error = err;
                self.worst_input = x;
            }
        }
        assert!(
            distance <= 1,
            "x = {x:e} ({:#010x}): ours {ours:e}, reference {reference:e}",
            x.to_bits()
        );
    }

    fn report(&self, name: &str) {
        let pct = |n: u64| 100.0 * n as f64 / self.count as f64;
        println!(
            "{name}: {} inputs, correctly rounded {:.7}% ({} not), max error {:.4} ulp (x = {:e}), \
             max distance {} ulp, agrees with std f32 {:.5}%",
            self.count,
            pct(self.correctly_rounded),
            self.count - self.correctly_rounded,
            self.max_ulp_error,
            self.worst_input,
            self.max_distance,
            pct(self.std_agree),
        );
        assert!(self.count > 0);
    }
}

/// Every `stride`-th f32 bit pattern in [from, to] (inclusive, as bits).
fn stride_bits(from: u32, to: u32, stride: u32) -> impl Iterator<Item = f32> {
    (from..=to).step_by(stride as usize).map(f32::from_bits)
}

/// Both signs of every `stride`-th magnitude up to `max` (bits).
fn both_signs(max: u32, stride: u32) -> impl Iterator<Item = f32> {
    stride_bits(0, max, stride).flat_map(|v| [v, -v])
}

const SPECIALS: [f32; 14] = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::NAN,
    f32::MIN_POSITIVE,
    f32::MAX,
    f32::MIN,
    1.0e-45,
    -1.0e-45,
    f32::EPSILON,
];

#[test]
fn sqrt_is_exactly_ieee() {
    let mut checked = 0u64;
    let mut check = |x: f32| {
        let (ours, std) = (sqrt_f32(x), x.sqrt());
        assert!(
            ours.to_bits() == std.to_bits() || (ours.is_nan() && std.is_nan()),
            "sqrt({x:e} = {:#010x}): ours {ours:e}, std {std:e}",
            x.to_bits()
        );
        checked += 1;
    };
    for x in SPECIALS {
        check(x);
    }
    // Every 251st bit pattern covers every exponent of both signs (17.1 M inputs) ...
    for bits in (0..=u32::MAX).step_by(251) {
        check(f32::from_bits(bits));
    }
    // ... all subnormals and the binades [1, 4) exhaustively ...
    for bits in (0..0x0080_0000).chain(0x3f80_0000..0x4080_0000) {
        check(f32::from_bits(bits));
    }
    // ... and 2 M random patterns.
    let mut rng = Bits(0x9e37_79b9_7f4a_7c15);
    for _ in 0..2_000_000 {
        check(f32::from_bits(rng.next()));
    }
    println!("sqrt: {checked} inputs, all bit-identical to f32::sqrt");
}

#[test]
fn exp_accuracy() {
    let mut stats = Stats::default();
    let mut check = |x: f32| stats.record(x, exp_f32(x), f64::from(x).exp(), x.exp());
    // Every 331st f32 with |x| <= 110 (both signs), then dense windows around 0 and around the
    // overflow (88.72) and subnormal / underflow (-87.34, -103.28) thresholds.
    both_signs(110f32.to_bits(), 331).for_each(&mut check);
    stride_bits(0, 0x3f80_0000, 251).for_each(|x| {
        check(x);
        check(-x)
    });
    for centre in [88.722_84f32, -87.336_54, -103.278_93, -103.972_08] {
        let c = ordinal(centre);
        for d in -200_000..=200_000i64 {
            let b = c + d;
            let x = if b < 0 {
                -f32::from_bits((-b) as u32)
            } else {
                f32::from_bits(b as u32)
            };
            check(x);
        }
    }
    stats.report("exp");
    for x in SPECIALS {
        let (ours, std) = (exp_f32(x), x.exp());
        assert!(
            ours.to_bits() == std.to_bits() || (ours.is_nan() && std.is_nan()),
            "{x}"
        );
    }
    assert_eq!(exp_f32(89.5), f32::INFINITY);
    assert_eq!(exp_f32(-104.5).to_bits(), 0);
    assert_eq!(exp_f32(0.0), 1.0);
}

#[test]
fn ln_accuracy() {
    let mut stats = Stats::default();
    let mut check = |x: f32| stats.record(x, ln_f32(x), f64::from(x).ln(), x.ln());
    stride_bits(1, 0x7f7f_ffff, 211).for_each(&mut check);
    stride_bits(0x3f00_0000, 0x4000_0000, 3).for_each(&mut check);
    stats.report("ln");
    for x in SPECIALS {
        let (ours, std) = (ln_f32(x), x.ln());
        assert!(
            ours.to_bits() == std.to_bits() || (ours.is_nan() && std.is_nan()),
            "{x}"
        );
    }
    assert_eq!(ln_f32(1.0).to_bits(), 0);
}

#[test]
fn pow_accuracy() {
    let mut stats = Stats::default();
    let mut check = |x: f32, y: f32| {
        let reference = f64::from(x).powf(f64::from(y));
        stats.record(x, pow_f32(x, y), reference, x.powf(y));
    };
    // RoPE frequencies exactly as llama2.c computes them: 10000^(i / head_size).
    let mut rope = (0u64, 0u64);
    for head_size in 2..=1024u32 {
        for i in (0..head_size).step_by(2) {
            let y = i as f32 / head_size as f32;
            check(10_000.0, y);
            rope.0 += 1;
            rope.1 += u64::from(pow_f32(10_000.0, y) == 10_000f32.powf(y));
        }
    }
    println!(
        "pow RoPE 10000^(i/hs), hs 2..=1024: {} inputs, agrees with std powf {}",
        rope.0, rope.1
    );
    // Random positive bases with exponents keeping |y ln x| <= 100, and integer exponents of
    // negative bases.
    let mut rng = Bits(0x2545_f491_4f6c_dd1d);
    for _ in 0..3_000_000 {
        let x = f32::from_bits(rng.next() % 0x7f80_0000);
        let bound = 100.0 / f64::from(x).ln().abs().max(1e-3);
        let unit = f64::from(rng.next()) / f64::from(u32::MAX) * 2.0 - 1.0;
        let y = (unit * bound) as f32;
        check(x, y);
        let n = (rng.next() % 41) as f32 - 20.0;
        let b = -(1.0 + (rng.next() % 10_000) as f32 / 1000.0);
        check(b, n);
    }
    stats.report("pow");
    let specials = [
        0.0f32, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 3.0, -3.0, 1.5, -1.5,
    ];
    let extra = [
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        1e30,
        -1e30,
        1e-30,
    ];
    for &x in specials.iter().chain(&extra) {
        for &y in specials.iter().chain(&extra) {
            let (ours, std) = (pow_f32(x, y), x.powf(y));
            assert!(
                ours.to_bits() == std.to_bits() || (ours.is_nan() && std.is_nan()),
                "pow({x}, {y}): ours {ours}, std {std}"
            );
        }
    }
}

#[test]
fn sin_cos_accuracy() {
    let mut sin = Stats::default();
    let mut cos = Stats::default();
    let mut check = |x: f32| {
        let x64 = f64::from(x);
        sin.record(x, sin_f32(x), x64.sin(), x.sin());
        cos.record(x, cos_f32(x), x64.cos(), x.cos());
    };
    // Dense over |x| <= 1e5 (RoPE angles), every 97th pattern of the whole finite range, and
    // random patterns.
    both_signs(1.0e5f32.to_bits(), 509).for_each(&mut check);
    both_signs(0x7f7f_ffff, 9_973).for_each(&mut check);
    let mut rng = Bits(0x0123_4567_89ab_cdef);
    for _ in 0..1_000_000 {
        let x = f32::from_bits(rng.next());
        if x.is_finite() {
            check(x);
        }
    }
    sin.report("sin");
    cos.report("cos");
    // RoPE angles as run.c forms them, pos * (1 / 10000^(i / head_size)), for the head sizes of
    // the llama2.c stories models (8, 48, 64), positions below 2048.
    for head_size in [8u32, 48, 64] {
        let (mut rope_sin, mut rope_cos) = (Stats::default(), Stats::default());
        for pos in 0..2048u32 {
            for i in (0..head_size).step_by(2) {
                let freq = 1.0 / pow_f32(10_000.0, i as f32 / head_size as f32);
                let x = pos as f32 * freq;
                let x64 = f64::from(x);
                rope_sin.record(x, sin_f32(x), x64.sin(), x.sin());
                rope_cos.record(x, cos_f32(x), x64.cos(), x.cos());
            }
        }
        rope_sin.report(&format!("sin (RoPE angles, head size {head_size})"));
        rope_cos.report(&format!("cos (RoPE angles, head size {head_size})"));
    }
    for x in SPECIALS {
        for (ours, std) in [(sin_f32(x), x.sin()), (cos_f32(x), x.cos())] {
            assert!(
                ours.to_bits() == std.to_bits() || (ours.is_nan() && std.is_nan()),
                "{x}"
            );
        }
    }
}

/// The 16-lane interleaved sum written out independently.
fn reference_sum(xs: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    for (i, &v) in xs.iter().enumerate() {
        lanes[i % 16] += v;
    }
    let l = lanes;
    let s8: Vec<f32> = (0..8).map(|k| l[k] + l[k + 8]).collect();
    let s4: Vec<f32> = (0..4).map(|k| s8[k] + s8[k + 4]).collect();
    let s2: Vec<f32> = (0..2).map(|k| s4[k] + s4[k + 2]).collect();
    s2[0] + s2[1]
}

#[test]
fn sum_uses_the_interleaved_order() {
    // 1e8 in lane 0 absorbs the ones added to it but not those in other lanes.
    let mut xs = vec![1.0f32; 40];
    xs[0] = 1.0e8;
    xs[16] = -1.0e8;
    assert_eq!(sum_f32(&xs), 38.0); // lane 0 holds 1e8 - 1e8 + 1 (xs[32]); 37 ones elsewhere
    let sequential: f32 = xs.iter().sum();
    assert_ne!(
        sequential,
        sum_f32(&xs),
        "the case must distinguish the orders"
    );
    let mut rng = Bits(42);
    for len in 0..300 {
        let v: Vec<f32> = (0..len)
            .map(|_| (rng.next() as i32) as f32 * 1e-6)
            .collect();
        assert_eq!(
            sum_f32(&v).to_bits(),
            reference_sum(&v).to_bits(),
            "len {len}"
        );
    }
    assert_eq!(sum_f32(&[]).to_bits(), 0);
    assert_eq!(sum_f32(&[-0.0]).to_bits(), 0, "lanes start at +0.0");
    let lanes: [f32; SUM_LANES] = core::array::from_fn(|i| i as f32);
    assert_eq!(combine_lanes(lanes), 120.0);
}

#[test]
fn softmax_matches_its_definition_and_f64() {
    let mut rng = Bits(7);
    for len in [1usize, 2, 15, 16, 17, 100, 512, 32_000] {
        let x: Vec<f32> = (0..len)
            .map(|_| (rng.next() as i32) as f32 / 2.0e8)
            .collect();
        let mut y = x.clone();
        softmax_in_place(&mut y);
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = x.iter().map(|&v| exp_f32(v - max)).collect();
        let s = sum_f32(&e);
        for (i, (&yi, &ei)) in y.iter().zip(&e).enumerate() {
            assert_eq!(yi.to_bits(), (ei / s).to_bits(), "len {len} i {i}");
        }
        let s64: f64 = x
            .iter()
            .map(|&v| (f64::from(v) - f64::from(max)).exp())
            .sum();
        for (&xi, &yi) in x.iter().zip(&y) {
            let p = (f64::from(xi) - f64::from(max)).exp() / s64;
            // The f32 sum carries up to ~len/16 * 2^-24 relative error.
            assert!((f64::from(yi) - p).abs() <= 1e-5 * p + 1e-30, "{yi} vs {p}");
        }
    }
    let mut empty: [f32; 0] = [];
    softmax_in_place(&mut empty);
    let mut big = [1000.0f32, 1000.0, -1000.0];
    softmax_in_place(&mut big);
    assert_eq!(big, [0.5, 0.5, 0.0]);
}

#[test]
fn silu_is_llama2c_expression() {
    let mut max_err = 0.0f64;
    // Below about -88.7, exp(-x) overflows and llama2.c's expression gives -0.
    for x in both_signs(100f32.to_bits(), 1_009) {
        let ours = silu_f32(x);
        assert_eq!(ours.to_bits(), (x * (1.0 / (1.0 + exp_f32(-x)))).to_bits());
        let x64 = f64::from(x);
        let exact = x64 / (1.0 + (-x64).exp());
        if (exact as f32).is_normal() && x > -88.0 {
            max_err = max_err.max((f64::from(ours) - exact).abs() / ulp_of(exact as f32));
        }
    }
    println!("silu: max error {max_err:.3} ulp vs f64");
    // Four roundings (exp, +, /, *) in llama2.c's expression.
    assert!(max_err < 2.5, "{max_err}");
    assert_eq!(silu_f32(0.0), 0.0);
    assert_eq!(silu_f32(-200.0).to_bits(), (-0.0f32).to_bits());
}
