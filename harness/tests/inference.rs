//! Model execution: every committed fixture generates deterministically under greedy and seeded
//! sampling; the runtime's logits match an f64 reference forward pass written here from the
//! Llama equations; and every generation cap fails with its error code while leaving the model
//! loaded and usable.

mod common;

use common::{
    build_model, byte_vocab, corpus_fixtures, fixture, generate, greedy, load, random, sampled,
    Shape,
};
use runtime::format::{DType, Pieces, TokenType, TokenizerKind, Vocab};
use runtime::generate::sampler::SamplerSettings;
use runtime::generate::{Finish, Session, Step};
use runtime::limits;
use runtime::model::quant::{dequantize, f16_to_f32, f32_to_f16};
use runtime::model::weights::TensorLoc;
use runtime::model::{forward, Model, State};
use runtime::ErrorCode;

// ---------------------------------------------------------------------------------------------
// Fixture coverage

/// Tokens, text, logits digest and finish of one generation on a fresh session.
fn run_once(
    bytes: &[u8],
    prompt: &[u8],
    settings: SamplerSettings,
) -> (Vec<u32>, Vec<u8>, [u8; 32], Finish) {
    let mut s = Session::new(load(bytes), 0).unwrap();
    let (tokens, f) = generate(&mut s, prompt, settings);
    (tokens, s.text().to_vec(), s.diagnostics().logits_digest, f)
}

#[test]
fn every_fixture_generates_deterministically() {
    let fixtures = corpus_fixtures();
    let names: Vec<&str> = fixtures.iter().map(|(n, _)| n.as_str()).collect();
    // The corpus covers MHA and GQA, tied and untied, every dtype and every tokenizer kind.
    for needle in [
        "mha", "gqa", "-tied", "untied", "f32", "f16", "q8_0", "q4_0", "byte", "spm", "ranked",
    ] {
        assert!(
            names.iter().any(|n| n.contains(needle)),
            "no fixture has {needle:?}: {names:?}"
        );
    }
    for (name, bytes) in &fixtures {
        let model = load(bytes);
        let kind = model.tokenizer.kind();
        let c = model.config;
        println!(
            "{name}: {kind:?}, {} heads / {} kv, tied {}, {}",
            c.n_heads,
            c.n_kv_heads,
            c.tied_classifier,
            model.weight_dtype().name()
        );
        for settings in [greedy(24), sampled(42, 24), random(7, 24)] {
            let first = run_once(bytes, b"Once upon a time", settings);
            let again = run_once(bytes, b"Once upon a time", settings);
            assert_eq!(first, again, "{name}: two runs of {settings:?} differ");
            assert!(
                !first.0.is_empty() || matches!(first.3, Finish::Stop(_)),
                "{name}"
            );
            // The same session reused gives the same generation as a fresh one.
            let mut s = Session::new(load(bytes), 0).unwrap();
            generate(&mut s, b"something else first", settings);
            let (tokens, f) = generate(&mut s, b"Once upon a time", settings);
            assert_eq!(
                (tokens, f),
                (first.0.clone(), first.3),
                "{name}: reused session"
            );
            assert_eq!(
                s.diagnostics().logits_digest,
                first.2,
                "{name}: reused session digest"
            );
        }
        let g = run_once(bytes, b"Once upon a time", greedy(24));
        let r = run_once(bytes, b"Once upon a time", random(7, 24));
        assert_ne!(
            g.2, r.2,
            "{name}: sampling and greedy logits digests coincide"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// An f64 reference forward pass

/// A weight matrix dequantized exactly to f64, and whether the runtime quantizes the activation
/// it multiplies (q8_0/q4_0 weights).
struct Mat {
    rows: usize,
    cols: usize,
    w: Vec<f64>,
    quantized_act: bool,
}

fn mat(model: &Model, t: &TensorLoc) -> Mat {
    let mut f = vec![0.0f32; t.rows * t.cols];
    dequantize(t.dtype, model.payload(t), &mut f).unwrap();
    Mat {
        rows: t.rows,
        cols: t.cols,
        w: f.into_iter().map(f64::from).collect(),
        quantized_act: matches!(t.dtype, DType::Q8_0 | DType::Q4_0),
    }
}

/// What the runtime's q8_0 activation quantization does to `x`, in f64: per 32-block
/// d = max|x| / 127, code = round-half-away(x / d) in [-127, 127], value = code × f16(d).
fn q8_0_activation(x: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for block in x.chunks(32) {
        let amax = block.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let d16 = f64::from(f16_to_f32(f32_to_f16(d as f32)));
        for &v in block {
            let code = if d == 0.0 {
                0.0
            } else {
                (v / d).round().clamp(-127.0, 127.0)
            };
            out.push(code * d16);
        }
    }
    out
}

impl Mat {
    fn apply(&self, x: &[f64]) -> Vec<f64> {
        assert_eq!((x.len(), self.w.len()), (self.cols, self.rows * self.cols));
        let q;
        let x = if self.quantized_act {
            q = q8_0_activation(x);
            &q
        } else {
            x
        };
        self.w
            .chunks_exact(self.cols)
            .map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum())
            .collect()
    }

    fn row(&self, r: usize) -> Vec<f64> {
        self.w[r * self.cols..(r + 1) * self.cols].to_vec()
    }
}

struct RefLayer {
    attn_norm: Mat,
    wq: Mat,
    wk: Mat,
    wv: Mat,
    wo: Mat,
    ffn_norm: Mat,
    w1: Mat,
    w2: Mat,
    w3: Mat,
}

/// The Llama decoder in f64 with plain loops and exact math.
struct Reference {
    dim: usize,
    head_dim: usize,
    n_heads: usize,
    n_kv_heads: usize,
    theta: f64,
    eps: f64,
    embedding: Mat,
    layers: Vec<RefLayer>,
    final_norm: Mat,
    classifier: Mat,
    /// Per layer, per position: key and value vectors.
    keys: Vec<Vec<Vec<f64>>>,
    values: Vec<Vec<Vec<f64>>>,
}

fn rmsnorm(x: &[f64], w: &Mat, eps: f64) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let inv = 1.0 / (ms + eps).sqrt();
    x.iter().zip(&w.w).map(|(v, w)| v * inv * w).collect()
}

impl Reference {
    fn new(model: &Model) -> Reference {
        let c = model.config;
        let layers: Vec<RefLayer> = model
            .layers
            .iter()
            .map(|l| RefLayer {
                attn_norm: mat(model, &l.attn_norm),
                wq: mat(model, &l.wq),
                wk: mat(model, &l.wk),
                wv: mat(model, &l.wv),
                wo: mat(model, &l.wo),
                ffn_norm: mat(model, &l.ffn_norm),
                w1: mat(model, &l.w1),
                w2: mat(model, &l.w2),
                w3: mat(model, &l.w3),
            })
            .collect();
        Reference {
            dim: c.dim as usize,
            head_dim: c.head_dim as usize,
            n_heads: c.n_heads as usize,
            n_kv_heads: c.n_kv_heads as usize,
            theta: f64::from(c.rope_theta),
            eps: f64::from(c.rms_eps),
            embedding: mat(model, &model.embedding),
            keys: vec![Vec::new(); layers.len()],
            values: vec![Vec::new(); layers.len()],
            layers,
            final_norm: mat(model, &model.final_norm),
            classifier: mat(model, &model.classifier),
        }
    }

    /// Rotates pairs (2j, 2j+1) of each head by pos / theta^(2j / head_dim).
    fn rope(&self, v: &mut [f64], pos: usize) {
        for head in v.chunks_exact_mut(self.head_dim) {
            for j in 0..self.head_dim / 2 {
                let freq = 1.0 / self.theta.powf((2 * j) as f64 / self.head_dim as f64);
                let (sin, cos) = (pos as f64 * freq).sin_cos();
                let (a, b) = (head[2 * j], head[2 * j + 1]);
                head[2 * j] = a * cos - b * sin;
                head[2 * j + 1] = a * sin + b * cos;
            }
        }
    }

    /// Feeds `token` at the next position; returns the logits.
    fn step(&mut self, token: u32) -> Vec<f64> {
        let pos = self.keys[0].len();
        let hd = self.head_dim;
        let group = self.n_heads / self.n_kv_heads;
        let mut x = self.embedding.row(token as usize);
        for l in 0..self.layers.len() {
            let ly = &self.layers[l];
            let xn = rmsnorm(&x, &ly.attn_norm, self.eps);
            let mut q = ly.wq.apply(&xn);
            let mut k = ly.wk.apply(&xn);
            let v = ly.wv.apply(&xn);
            self.rope(&mut q, pos);
            self.rope(&mut k, pos);
            self.keys[l].push(k);
            self.values[l].push(v);
            let ly = &self.layers[l];
            let mut att_out = vec![0.0f64; self.n_heads * hd];
            for h in 0..self.n_heads {
                let qh = &q[h * hd..(h + 1) * hd];
                let kv = (h / group) * hd;
                let scores: Vec<f64> = self.keys[l]
                    .iter()
                    .map(|k| {
                        let dot: f64 = qh.iter().zip(&k[kv..kv + hd]).map(|(a, b)| a * b).sum();
                        dot / (hd as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = exps.iter().sum();
                for (t, e) in exps.iter().enumerate() {
                    for (o, v) in att_out[h * hd..(h + 1) * hd]
                        .iter_mut()
                        .zip(&self.values[l][t][kv..kv + hd])
                    {
                        *o += e / total * v;
                    }
                }
            }
            for (xi, d) in x.iter_mut().zip(ly.wo.apply(&att_out)) {
                *xi += d;
            }
            let xn = rmsnorm(&x, &ly.ffn_norm, self.eps);
            let gate = ly.w1.apply(&xn);
            let up = ly.w3.apply(&xn);
            let h: Vec<f64> = gate
                .iter()
                .zip(&up)
                .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                .collect();
            for (xi, d) in x.iter_mut().zip(ly.w2.apply(&h)) {
                *xi += d;
            }
        }
        assert_eq!(x.len(), self.dim);
        let xn = rmsnorm(&x, &self.final_norm, self.eps);
        self.classifier.apply(&xn)
    }
}

/// Largest |runtime − reference| at `checked` positions (of feeding every token of `tokens` in
/// order), relative to the largest |reference logit| there.
fn relative_logit_error(bytes: &[u8], tokens: &[u32], checked: impl Fn(usize) -> bool) -> f64 {
    let model = load(bytes);
    let mut state = State::new(&model, 0).unwrap();
    let mut reference = Reference::new(&model);
    let mut worst = 0.0f64;
    for (pos, &t) in tokens.iter().enumerate() {
        let got = forward(&model, &mut state, t, pos).unwrap().to_vec();
        let want = reference.step(t);
        if !checked(pos) {
            continue;
        }
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let diff = got
            .iter()
            .zip(&want)
            .fold(0.0f64, |m, (g, w)| m.max((f64::from(*g) - w).abs()));
        worst = worst.max(diff / scale);
    }
    worst
}

fn prompt_tokens(model_bytes: &[u8], prompt: &[u8]) -> Vec<u32> {
    let mut tokens = Vec::new();
    load(model_bytes)
        .tokenizer
        .encode(prompt, true, &mut tokens)
        .unwrap();
    tokens
}

/// Tolerances of the runtime's logits against the f64 reference, relative to the logits' scale.
///
/// f32/f16: the weights are exact in both (f16 widens exactly); only the runtime's f32 rounding
/// of activations and of sums over at most 96 terms, through 2 layers, differs (each relative
/// 2^-24 ≈ 6e-8; measured at most 1.5e-6). 1e-5 keeps a margin while any real mistake (a wrong
/// RoPE angle, norm or attention scale) shows at 1e-2 and above.
/// q8_0/q4_0: the reference quantizes each activation as the runtime does, so only f32 rounding
/// remains (measured below 1e-7) — unless an activation a few ulps away lands one code apart,
/// which moves a logit by at most one code step (1/127 of the block's largest value) times the
/// row's weights, a few 1e-4 of the scale. 1e-3 allows such a flip; ignoring the activation
/// quantization altogether gives 2.7e-2 to 4.7e-2.
const TOL_FLOAT: f64 = 1e-5;
const TOL_QUANT: f64 = 1e-3;

#[test]
fn logits_match_an_f64_reference() {
    let prompt = b"Once upon a time, 42 quick zebras jumped over the big red sun!";
    for name in [
        "spm-gqa-untied-f32",
        "spm-gqa-untied-f16",
        "spm-gqa-untied-q8_0",
        "spm-gqa-untied-q4_0",
        "byte-mha-tied-f32",
        "byte-mha-tied-q4_0",
        "ranked-gqa1-tied-q8_0",
    ] {
        let bytes = fixture(name);
        let tokens = prompt_tokens(&bytes, prompt);
        assert!(tokens.len() >= 12, "{name}: {} tokens", tokens.len());
        let err = relative_logit_error(&bytes, &tokens[..12], |_| true);
        let tol = if name.ends_with("f32") || name.ends_with("f16") {
            TOL_FLOAT
        } else {
            TOL_QUANT
        };
        println!("{name}: max |logit diff| / max |logit| over 12 positions = {err:.3e} (tolerance {tol:.0e})");
        assert!(err <= tol, "{name}: {err:e} > {tol:e}");
    }
}

#[test]
fn logits_match_the_reference_far_into_the_context() {
    // Many positions (large RoPE angles, long softmax sums), and query heads wider than dim.
    let text: Vec<u8> = (0..3000u32)
        .map(|i| b"abcdefgh ,.xyz"[(i * 7 % 14) as usize])
        .collect();
    for (dim, n_heads, head_dim, dtype) in [
        (8, 2, 4, DType::F32),
        (32, 4, 16, DType::F32),
        (32, 4, 16, DType::Q8_0),
    ] {
        let shape = Shape {
            dim,
            n_layers: 1,
            n_heads,
            n_kv_heads: 2,
            head_dim,
            ffn_dim: 32,
            max_context: 4096,
            tied: true,
        };
        let bytes = build_model(byte_vocab(vec![]), shape, dtype, 4);
        let tokens = prompt_tokens(&bytes, &text);
        let err = relative_logit_error(&bytes, &tokens, |p| p % 250 == 0 || p == 3000);
        let tol = if dtype == DType::F32 {
            TOL_FLOAT
        } else {
            TOL_QUANT
        };
        println!(
            "dim {dim}, {n_heads} heads of {head_dim}, {}: 3001 positions: {err:.3e}",
            dtype.name()
        );
        assert!(err <= tol, "{err:e} > {tol:e}");
    }
}

// ---------------------------------------------------------------------------------------------
// Caps and their errors

/// The shape of the small byte-level test models: dim 8, 1 layer, `max_context` positions.
fn tiny_shape(max_context: u32) -> Shape {
    Shape {
        dim: 8,
        n_layers: 1,
        n_heads: 2,
        n_kv_heads: 1,
        head_dim: 4,
        ffn_dim: 16,
        max_context,
        tied: true,
    }
}

/// A byte-level model (dim 8, 1 layer) with room for a maximal prompt: 16,400 positions.
fn byte_model(stop: Vec<u32>) -> Vec<u8> {
    build_model(byte_vocab(stop), tiny_shape(16_400), DType::F32, 3)
}

/// The session still works: a short generation runs to its limit.
fn assert_usable(s: &mut Session) {
    let (tokens, f) = generate(s, b"ok", greedy(5));
    assert_eq!((tokens.len(), f), (5, Finish::MaxTokens));
}

fn code<T>(r: runtime::Result<T>) -> ErrorCode {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.code,
    }
}

#[test]
fn prompt_byte_cap() {
    let mut s = Session::new(load(&byte_model(vec![])), 0).unwrap();
    let over = vec![b'a'; limits::MAX_PROMPT_BYTES + 1];
    assert_eq!(code(s.start(&over, greedy(1))), ErrorCode::PromptTooLong);
    assert_eq!(code(s.step()), ErrorCode::GenerationFailed);
    assert_usable(&mut s);
    // Exactly at the cap: BOS + 16,384 bytes fit the 16,400 positions.
    let at = vec![b'a'; limits::MAX_PROMPT_BYTES];
    s.start(&at, greedy(1)).unwrap();
    assert_eq!(s.prompt_tokens().len(), limits::MAX_PROMPT_BYTES + 1);
    assert!(matches!(s.step().unwrap(), Step::Token { .. }));
    assert_usable(&mut s);
}

#[test]
fn prompt_token_and_context_caps() {
    let bytes = byte_model(vec![]);
    let mut s = Session::new(load(&bytes), 8).unwrap();
    // 1 + 8 tokens for a context of 8.
    assert_eq!(
        code(s.start(b"12345678", greedy(4))),
        ErrorCode::ContextExceeded
    );
    assert_usable(&mut s);
    // BOS + 7 bytes fill the context exactly: one token, then the context is full.
    s.start(b"1234567", greedy(100)).unwrap();
    assert!(matches!(s.step().unwrap(), Step::Token { .. }));
    assert_eq!(s.step().unwrap(), Step::Finished(Finish::ContextFull));
    assert_eq!(s.step().unwrap(), Step::Finished(Finish::ContextFull));
    // Both limits reached by the same token: max_new_tokens is checked first (spec/sampling.md,
    // Generation loop).
    s.start(b"1234567", greedy(1)).unwrap();
    assert!(matches!(s.step().unwrap(), Step::Token { .. }));
    assert_eq!(s.step().unwrap(), Step::Finished(Finish::MaxTokens));
    // BOS + 2 bytes: context − prompt + 1 = 6 tokens.
    let (tokens, f) = generate(&mut s, b"ab", greedy(100));
    assert_eq!((tokens.len(), f), (6, Finish::ContextFull));
    assert_eq!(s.diagnostics().kv_len, 8);
    assert_usable(&mut s);
    // More positions than the model has.
    assert_eq!(
        code(Session::new(load(&bytes), 16_401)),
        ErrorCode::ContextExceeded
    );
}

#[test]
fn max_new_tokens_cap() {
    let mut s = Session::new(load(&byte_model(vec![])), 0).unwrap();
    for n in [1, 7, 50] {
        s.start(b"x", sampled(3, n)).unwrap();
        for i in 0..n {
            assert!(
                matches!(s.step().unwrap(), Step::Token { .. }),
                "step {i} of {n}"
            );
        }
        assert_eq!(s.step().unwrap(), Step::Finished(Finish::MaxTokens));
        assert_eq!(s.generated_tokens().len(), n as usize);
        assert_eq!(s.diagnostics().generated_tokens, n);
    }
}

/// A SentencePiece vocabulary with `long` extra pieces of 200 bytes each and no stop token.
fn long_piece_vocab(long: usize) -> Vocab {
    let mut pieces: Vec<Vec<u8>> = vec![b"<unk>".to_vec(), b"<s>".to_vec(), b"</s>".to_vec()];
    let mut types = vec![TokenType::Unknown, TokenType::Control, TokenType::Control];
    for b in 0..=255u8 {
        pieces.push(format!("<0x{b:02X}>").into_bytes());
        types.push(TokenType::Byte);
    }
    for i in 0..long {
        pieces.push(format!(" {i:05}").repeat(34).into_bytes()[..200].to_vec());
        types.push(TokenType::Normal);
    }
    Vocab {
        kind: TokenizerKind::SentencePiece,
        scores: vec![0.0; pieces.len()],
        pieces: Pieces::new(pieces).unwrap(),
        types,
        merges: vec![],
        bos: Some(1),
        eos: Some(2),
        pad: None,
        unk: Some(0),
        stop: vec![],
        add_bos: true,
        add_dummy_prefix: true,
        byte_fallback: true,
    }
}

#[test]
fn output_byte_cap() {
    let shape = Shape {
        dim: 32,
        n_layers: 1,
        n_heads: 2,
        n_kv_heads: 2,
        head_dim: 16,
        ffn_dim: 32,
        max_context: 2048,
        tied: false,
    };
    let bytes = build_model(long_piece_vocab(800), shape, DType::F32, 9);
    let mut s = Session::new(load(&bytes), 0).unwrap();
    s.start(b"", random(11, 2000)).unwrap();
    let err = loop {
        match s.step() {
            Ok(Step::Token { .. }) => {}
            Ok(Step::Finished(f)) => panic!("finished with {f:?} at {} bytes", s.text().len()),
            Err(e) => break e,
        }
    };
    assert_eq!(err.code, ErrorCode::OutputBufferExceeded);
    let text = s.text().len();
    println!(
        "output cap after {} tokens, {text} bytes",
        s.generated_tokens().len()
    );
    assert!(text <= limits::MAX_OUTPUT_BYTES && text > limits::MAX_OUTPUT_BYTES - 200);
    assert_eq!(
        s.step().unwrap(),
        Step::Finished(Finish::Failed(ErrorCode::OutputBufferExceeded))
    );
    assert_usable(&mut s);
}

#[test]
fn invalid_settings_are_refused() {
    let mut s = Session::new(load(&byte_model(vec![])), 64).unwrap();
    assert_eq!(
        code(s.step()),
        ErrorCode::GenerationFailed,
        "step before start"
    );
    let ok = sampled(5, 10);
    let bad = [
        SamplerSettings {
            temperature: f32::NAN,
            ..ok
        },
        SamplerSettings {
            temperature: f32::INFINITY,
            ..ok
        },
        SamplerSettings {
            temperature: -0.5,
            ..ok
        },
        SamplerSettings { top_p: 0.0, ..ok },
        SamplerSettings { top_p: 1.5, ..ok },
        SamplerSettings {
            top_p: f32::NAN,
            ..ok
        },
        SamplerSettings {
            top_k: Some(0),
            ..ok
        },
        SamplerSettings {
            top_k: Some(limits::MAX_TOP_K + 1),
            ..ok
        },
        SamplerSettings { seed: 0, ..ok },
        SamplerSettings {
            max_new_tokens: 0,
            ..ok
        },
        SamplerSettings {
            max_new_tokens: limits::MAX_NEW_TOKENS + 1,
            ..ok
        },
    ];
    for settings in bad {
        assert_eq!(
            code(s.start(b"hi", settings)),
            ErrorCode::InvalidSettings,
            "{settings:?}"
        );
        assert_eq!(code(s.step()), ErrorCode::GenerationFailed, "{settings:?}");
        assert_usable(&mut s);
    }
    // The boundaries themselves are valid.
    for settings in [
        SamplerSettings {
            top_p: 1.0,
            top_k: Some(limits::MAX_TOP_K),
            ..ok
        },
        SamplerSettings {
            max_new_tokens: limits::MAX_NEW_TOKENS,
            ..ok
        },
        SamplerSettings {
            temperature: 0.0,
            top_k: Some(1),
            ..ok
        },
    ] {
        s.start(b"hi", settings).unwrap();
        assert!(
            matches!(s.step().unwrap(), Step::Token { .. }),
            "{settings:?}"
        );
    }
}

#[test]
fn stop_token_ends_without_emitting() {
    let shape = Shape {
        dim: 32,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 8,
        ffn_dim: 64,
        max_context: 256,
        tied: false,
    };
    let open = build_model(byte_vocab(vec![]), shape, DType::Q8_0, 21);
    let settings = sampled(8, 64);
    let mut s = Session::new(load(&open), 0).unwrap();
    let (tokens, f) = generate(&mut s, b"The", settings);
    assert_eq!(f, Finish::MaxTokens);
    // The first token that did not occur before it becomes the stop token.
    let k = (1..tokens.len())
        .find(|&i| !tokens[..i].contains(&tokens[i]))
        .expect("a new token");
    let stop = tokens[k];
    let closed = build_model(byte_vocab(vec![stop]), shape, DType::Q8_0, 21);
    let mut s = Session::new(load(&closed), 0).unwrap();
    let (stopped, f) = generate(&mut s, b"The", settings);
    assert_eq!(f, Finish::Stop(stop));
    assert_eq!(stopped, tokens[..k]);
    assert!(!stopped.contains(&stop));
    // The text is the pieces of the emitted tokens only.
    let tok = &s.model().tokenizer;
    let mut text = Vec::new();
    let mut prev = *s.prompt_tokens().last().unwrap();
    for &t in &stopped {
        text.extend_from_slice(tok.decode(Some(prev), t).unwrap());
        prev = t;
    }
    assert_eq!(s.text(), text);
    assert_eq!(s.step().unwrap(), Step::Finished(Finish::Stop(stop)));
    assert_eq!(s.diagnostics().logit_steps as usize, k + 1);
    let (again, _) = generate(&mut s, b"The", settings);
    assert_eq!(again, stopped);
}

#[test]
fn cancel_ends_the_generation() {
    let mut s = Session::new(load(&byte_model(vec![])), 64).unwrap();
    s.start(b"abc", greedy(40)).unwrap();
    for _ in 0..3 {
        assert!(matches!(s.step().unwrap(), Step::Token { .. }));
    }
    assert!(s.is_running());
    s.cancel();
    assert!(!s.is_running());
    assert_eq!(s.step().unwrap(), Step::Finished(Finish::Cancelled));
    assert_eq!(s.step().unwrap(), Step::Finished(Finish::Cancelled));
    assert_eq!(s.generated_tokens().len(), 3);
    assert_eq!(s.diagnostics().finish, Some(Finish::Cancelled));
    // Cancelling an idle or finished session changes nothing.
    s.cancel();
    assert_eq!(s.diagnostics().finish, Some(Finish::Cancelled));
    assert_usable(&mut s);
    s.reset();
    s.cancel();
    assert_eq!(code(s.step()), ErrorCode::GenerationFailed);
}

/// `run` prints the prompt's pieces, then the generated ones: without the BOS that starts the
/// prompt when the vocabulary adds one, and from the first token when it does not.
#[test]
fn run_prints_the_whole_prompt_with_and_without_bos() {
    for add_bos in [true, false] {
        let mut vocab = byte_vocab(vec![]);
        vocab.add_bos = add_bos;
        let bytes = build_model(vocab, tiny_shape(64), DType::F32, 3);
        let mut out = Vec::new();
        harness::run::run_c_output(bytes, b"Once upon", greedy(4), 0, &mut out).unwrap();
        assert!(
            out.starts_with(b"Once upon"),
            "add_bos {add_bos}: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
}
