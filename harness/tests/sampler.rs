//! The sampler (spec/sampling.md): settings validation, llama2.c's xorshift64*, greedy and
//! seeded sampling, top-k and top-p.

use runtime::generate::sampler::{Rng, Sampler, SamplerSettings};
use runtime::limits::{MAX_NEW_TOKENS, MAX_TOP_K, MAX_VOCAB};
use runtime::model::math::softmax_in_place;
use runtime::ErrorCode;

fn settings(temperature: f32, top_k: Option<u32>, top_p: f32, seed: u64) -> SamplerSettings {
    SamplerSettings {
        temperature,
        top_k,
        top_p,
        seed,
        max_new_tokens: 256,
    }
}

/// Deterministic test logits in about [-8, 8).
fn random_logits(state: &mut u64, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            ((*state >> 40) as f32 / 16_777_216.0 - 0.5) * 16.0
        })
        .collect()
}

#[test]
fn settings_validation_rules() {
    let ok = settings(0.8, Some(40), 0.9, 7);
    assert_eq!(ok.validate(), Ok(()));
    let bad: Vec<(&str, SamplerSettings)> = vec![
        (
            "NaN temperature",
            SamplerSettings {
                temperature: f32::NAN,
                ..ok
            },
        ),
        (
            "negative temperature",
            SamplerSettings {
                temperature: -0.1,
                ..ok
            },
        ),
        (
            "infinite temperature",
            SamplerSettings {
                temperature: f32::INFINITY,
                ..ok
            },
        ),
        (
            "NaN top_p",
            SamplerSettings {
                top_p: f32::NAN,
                ..ok
            },
        ),
        ("zero top_p", SamplerSettings { top_p: 0.0, ..ok }),
        ("negative top_p", SamplerSettings { top_p: -0.5, ..ok }),
        (
            "top_p above 1",
            SamplerSettings {
                top_p: 1.000_001,
                ..ok
            },
        ),
        (
            "top_k 0",
            SamplerSettings {
                top_k: Some(0),
                ..ok
            },
        ),
        (
            "top_k above cap",
            SamplerSettings {
                top_k: Some(MAX_TOP_K + 1),
                ..ok
            },
        ),
        ("seed 0", SamplerSettings { seed: 0, ..ok }),
        (
            "no new tokens",
            SamplerSettings {
                max_new_tokens: 0,
                ..ok
            },
        ),
        (
            "too many new tokens",
            SamplerSettings {
                max_new_tokens: MAX_NEW_TOKENS + 1,
                ..ok
            },
        ),
    ];
    for (what, s) in bad {
        let err = s.validate().expect_err(what);
        assert_eq!(err.code, ErrorCode::InvalidSettings, "{what}");
        let err = Sampler::new(16, s).expect_err(what);
        assert_eq!(err.code, ErrorCode::InvalidSettings, "{what}");
    }
    let edges = [
        SamplerSettings {
            temperature: 0.0,
            top_k: None,
            top_p: 1.0,
            ..ok
        },
        SamplerSettings {
            top_k: Some(1),
            ..ok
        },
        SamplerSettings {
            top_k: Some(MAX_TOP_K),
            ..ok
        },
        SamplerSettings {
            top_p: f32::MIN_POSITIVE,
            ..ok
        },
        SamplerSettings {
            max_new_tokens: 1,
            ..ok
        },
        SamplerSettings {
            max_new_tokens: MAX_NEW_TOKENS,
            ..ok
        },
        SamplerSettings {
            seed: u64::MAX,
            ..ok
        },
    ];
    for s in edges {
        assert_eq!(s.validate(), Ok(()), "{s:?}");
    }
}

#[test]
fn sampler_arguments() {
    let s = settings(0.0, None, 1.0, 1);
    assert_eq!(
        Sampler::new(0, s).unwrap_err().code,
        ErrorCode::InvalidArgument
    );
    let too_big = MAX_VOCAB as usize + 1;
    assert_eq!(
        Sampler::new(too_big, s).unwrap_err().code,
        ErrorCode::InvalidArgument
    );
    let mut sampler = Sampler::new(4, s).unwrap();
    assert_eq!(sampler.settings(), &s);
    let err = sampler.sample(&mut [0.0; 5]).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidLength);
    assert_eq!(Rng::new(0).unwrap_err().code, ErrorCode::InvalidSettings);
}

/// Values printed by llama2.c's `random_u32` / `random_f32` compiled with gcc 12 on x86-64.
#[test]
fn xorshift_matches_llama2c() {
    let cases: [(u64, [u32; 5], [u32; 5]); 3] = [
        (
            1,
            [0x47e4ce4b, 0xabcfa6a8, 0xb9d10d8f, 0x4db418a0, 0x0e6199b0],
            [0x3e8fc99c, 0x3f2bcfa6, 0x3f39d10d, 0x3e9b6830, 0x3d661990],
        ),
        (
            42,
            [0x56ce4ab7, 0xc841eb53, 0xca466be0, 0xf1acc733, 0xc3af4dd7],
            [0x3ead9c94, 0x3f4841eb, 0x3f4a466b, 0x3f71acc7, 0x3f43af4d],
        ),
        (
            u64::MAX,
            [0xf92cc9e5, 0x8ff484d8, 0x346c95f3, 0xc556cc9c, 0x6c2d653f],
            [0x3f792cc9, 0x3f0ff484, 0x3e51b254, 0x3f4556cc, 0x3ed85aca],
        ),
    ];
    for (seed, u32s, f32s) in cases {
        let mut rng = Rng::new(seed).unwrap();
        let got: Vec<u32> = (0..5).map(|_| rng.next_u32()).collect();
        assert_eq!(got, u32s, "seed {seed}");
        let mut rng = Rng::new(seed).unwrap();
        let got: Vec<u32> = (0..5).map(|_| rng.next_f32().to_bits()).collect();
        assert_eq!(got, f32s, "seed {seed}");
    }
}

#[test]
fn greedy_is_first_argmax() {
    let mut sampler = Sampler::new(6, settings(0.0, None, 1.0, 1)).unwrap();
    assert_eq!(sampler.sample(&mut [0.0, 3.0, -1.0, 3.0, 2.0, 3.0]), Ok(1));
    assert_eq!(
        sampler.sample(&mut [-0.0, 0.0, -1.0, -2.0, -3.0, 0.0]),
        Ok(0)
    );
    assert_eq!(
        sampler.sample(&mut [f32::NAN, -5.0, -4.0, f32::NAN, -4.0, -9.0]),
        Ok(2)
    );
    let mut one = Sampler::new(1, settings(0.0, None, 1.0, 1)).unwrap();
    assert_eq!(one.sample(&mut [f32::NEG_INFINITY]), Ok(0));
    let mut state = 3;
    for _ in 0..200 {
        let logits = random_logits(&mut state, 6);
        let expected = (0..6).fold(0, |best, i| if logits[i] > logits[best] { i } else { best });
        assert_eq!(sampler.sample(&mut logits.clone()), Ok(expected as u32));
    }
}

#[test]
fn top_k_one_equals_greedy() {
    let mut state = 11;
    let mut greedy = Sampler::new(300, settings(0.0, None, 1.0, 5)).unwrap();
    for (i, temperature) in [0.1f32, 0.7, 1.0, 2.5, 100.0].into_iter().enumerate() {
        for top_p in [0.2f32, 1.0] {
            let s = settings(temperature, Some(1), top_p, 1 + i as u64);
            let mut top1 = Sampler::new(300, s).unwrap();
            for _ in 0..50 {
                let mut logits = random_logits(&mut state, 300);
                logits[17] = logits[250].max(logits[17]);
                logits[250] = logits[17]; // a tie: the lower index must win
                let want = greedy.sample(&mut logits.clone()).unwrap();
                assert_eq!(top1.sample(&mut logits).unwrap(), want);
            }
        }
    }
}

#[test]
fn seeded_runs_reproduce_and_seeds_differ() {
    let run = |seed: u64, top_k: Option<u32>, top_p: f32| -> Vec<u32> {
        let mut sampler = Sampler::new(512, settings(1.0, top_k, top_p, seed)).unwrap();
        let mut state = 99;
        (0..300)
            .map(|_| sampler.sample(&mut random_logits(&mut state, 512)).unwrap())
            .collect()
    };
    for (top_k, top_p) in [
        (None, 1.0f32),
        (None, 0.9),
        (Some(40), 1.0),
        (Some(40), 0.9),
    ] {
        let a = run(1234, top_k, top_p);
        assert_eq!(a, run(1234, top_k, top_p), "{top_k:?} {top_p}");
        assert_ne!(a, run(1235, top_k, top_p), "{top_k:?} {top_p}");
    }
}

/// Counts of draws per token over `draws` samples of fixed logits.
fn histogram(s: SamplerSettings, logits: &[f32], draws: usize) -> Vec<u64> {
    let mut sampler = Sampler::new(logits.len(), s).unwrap();
    let mut counts = vec![0u64; logits.len()];
    for _ in 0..draws {
        counts[sampler.sample(&mut logits.to_vec()).unwrap() as usize] += 1;
    }
    counts
}

/// Pearson's chi-square statistic of `counts` against probabilities `p`.
fn chi_square(counts: &[u64], p: &[f64]) -> f64 {
    let n: u64 = counts.iter().sum();
    counts
        .iter()
        .zip(p)
        .filter(|(_, &p)| p > 0.0)
        .map(|(&c, &p)| {
            let e = p * n as f64;
            (c as f64 - e).powi(2) / e
        })
        .sum()
}

#[test]
fn draws_follow_the_distribution() {
    let p = [0.1f64, 0.2, 0.3, 0.4];
    let logits: Vec<f32> = p.iter().map(|&v| v.ln() as f32).collect();
    let draws = 100_000;
    // Critical values at p = 0.001: 16.27 (3 degrees of freedom), 10.83 (1).
    let counts = histogram(settings(1.0, None, 1.0, 77), &logits, draws);
    let chi = chi_square(&counts, &p);
    println!("full: {counts:?} chi2 {chi:.2}");
    assert!(chi < 16.27, "{counts:?} chi2 {chi}");
    // top-k 2 keeps {0.4, 0.3}; top-p 0.5 keeps the same pair (0.4, then 0.7 > 0.5).
    let pair = [0.0, 0.0, 3.0 / 7.0, 4.0 / 7.0];
    for s in [
        settings(1.0, Some(2), 1.0, 78),
        settings(1.0, None, 0.5, 79),
    ] {
        let counts = histogram(s, &logits, draws);
        let chi = chi_square(&counts, &pair);
        println!("{s:?}: {counts:?} chi2 {chi:.2}");
        assert_eq!(counts[0] + counts[1], 0, "{counts:?}");
        assert!(chi < 10.83, "{counts:?} chi2 {chi}");
    }
    // Temperature 2 flattens: p_i proportional to sqrt(p_i).
    let total: f64 = p.iter().map(|v| v.sqrt()).sum();
    let flat: Vec<f64> = p.iter().map(|v| v.sqrt() / total).collect();
    let counts = histogram(settings(2.0, None, 1.0, 80), &logits, draws);
    assert!(chi_square(&counts, &flat) < 16.27, "{counts:?}");
}

#[test]
fn tiny_top_p_picks_the_most_likely() {
    let mut state = 5;
    for seed in 1..50u64 {
        let mut logits = random_logits(&mut state, 1000);
        let best = (0..1000).fold(0, |b, i| if logits[i] > logits[b] { i } else { b });
        let mut sampler = Sampler::new(1000, settings(1.0, None, 1e-6, seed)).unwrap();
        assert_eq!(sampler.sample(&mut logits).unwrap(), best as u32);
    }
    // Uniform logits with top_p < 1/n leave the prefilter empty: the first index is chosen.
    let mut sampler = Sampler::new(8, settings(1.0, None, 0.01, 3)).unwrap();
    assert_eq!(sampler.sample(&mut [0.5; 8]), Ok(0));
}

/// llama2.c's `sample` written out with std (Vec, sort_by), on our softmax and generator.
fn llama2c_sample(logits: &mut [f32], temperature: f32, top_p: f32, rng: &mut Rng) -> u32 {
    for v in logits.iter_mut() {
        *v /= temperature;
    }
    softmax_in_place(logits);
    let coin = rng.next_f32();
    let n = logits.len();
    if top_p >= 1.0 {
        let mut cdf = 0.0f32;
        for (i, &p) in logits.iter().enumerate() {
            cdf += p;
            if coin < cdf {
                return i as u32;
            }
        }
        return (n - 1) as u32;
    }
    let cutoff = (1.0 - top_p) / (n - 1) as f32;
    let mut kept: Vec<(f32, u32)> = (0..n)
        .filter(|&i| logits[i] >= cutoff)
        .map(|i| (logits[i], i as u32))
        .collect();
    kept.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut cumulative = 0.0f32;
    let mut last = kept.len() - 1;
    for (i, &(p, _)) in kept.iter().enumerate() {
        cumulative += p;
        if cumulative > top_p {
            last = i;
            break;
        }
    }
    let r = coin * cumulative;
    let mut cdf = 0.0f32;
    for &(p, index) in &kept[..=last] {
        cdf += p;
        if r < cdf {
            return index;
        }
    }
    kept[last].1
}

#[test]
fn matches_a_direct_port_of_llama2c() {
    let mut state = 2024;
    for (temperature, top_p) in [(1.0f32, 0.9f32), (0.8, 1.0), (1.3, 0.5), (0.5, 0.95)] {
        let seed = 31;
        let mut sampler = Sampler::new(700, settings(temperature, None, top_p, seed)).unwrap();
        let mut rng = Rng::new(seed).unwrap();
        for _ in 0..300 {
            let logits = random_logits(&mut state, 700);
            let want = llama2c_sample(&mut logits.clone(), temperature, top_p, &mut rng);
            assert_eq!(sampler.sample(&mut logits.clone()).unwrap(), want);
        }
    }
}
