//! Batched prefill (spec/determinism.md, Prefill) gives the bits of token-serial prefill: for
//! random prompts of every length class (1, around each batch boundary, the whole context) on
//! every corpus fixture and on a model whose heads are wider than `dim`, the logits and the whole
//! KV cache equal those of `forward` run token by token, also when the prompt is prefilled in
//! two parts; and a session (which prefills in batches) generates the tokens and the logits
//! digest of a hand-written serial generation loop.

mod common;

use common::{build_model, byte_vocab, corpus_fixtures, greedy, load, sampled, Shape};
use harness::fixtures::SplitMix64;
use runtime::format::DType;
use runtime::generate::sampler::{Sampler, SamplerSettings};
use runtime::generate::Session;
use runtime::limits::PREFILL_BATCH;
use runtime::model::{forward, prefill, Model, State};
use runtime::sha256::Sha256;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Prompt lengths to try for a context of `context` positions: 1, each side of the first two
/// batch boundaries and of half a batch (where the AVX2 q4_0 kernel's pass of two groups of
/// eight begins), the whole context, and a few random ones.
fn lengths(context: usize, rng: &mut SplitMix64) -> Vec<usize> {
    let b = PREFILL_BATCH;
    let mut v = vec![
        1,
        2,
        b / 2 - 1,
        b / 2,
        b / 2 + 1,
        b - 1,
        b,
        b + 1,
        2 * b - 1,
        2 * b,
        2 * b + 1,
        context - 1,
        context,
    ];
    v.extend((0..3).map(|_| 1 + (rng.next_u64() % context as u64) as usize));
    v.retain(|&n| (1..=context).contains(&n));
    v.sort();
    v.dedup();
    v
}

fn serial(model: &Model, tokens: &[u32]) -> State {
    let mut s = State::new(model, 0).unwrap();
    for (pos, &t) in tokens.iter().enumerate() {
        forward(model, &mut s, t, pos).unwrap();
    }
    s
}

fn assert_same(name: &str, what: &str, a: &State, b: &State) {
    assert_eq!(bits(a.logits()), bits(b.logits()), "{name} {what}: logits");
    let ((ka, va), (kb, vb)) = (a.kv_cache(), b.kv_cache());
    assert!(bits(ka) == bits(kb), "{name} {what}: key cache differs");
    assert!(bits(va) == bits(vb), "{name} {what}: value cache differs");
}

fn check_model(name: &str, bytes: &[u8], seed: u64) {
    let model = load(bytes);
    let vocab = model.config.vocab_size as u64;
    let context = model.config.max_context as usize;
    let mut rng = SplitMix64(seed);
    for n in lengths(context, &mut rng) {
        let tokens: Vec<u32> = (0..n).map(|_| (rng.next_u64() % vocab) as u32).collect();
        let want = serial(&model, &tokens);

        let mut whole = State::new(&model, 0).unwrap();
        prefill(&model, &mut whole, &tokens, 0).unwrap();
        assert_same(name, &format!("{n} tokens at once"), &want, &whole);

        let k = (rng.next_u64() % n as u64) as usize;
        let mut parts = State::new(&model, 0).unwrap();
        prefill(&model, &mut parts, &tokens[..k], 0).unwrap();
        prefill(&model, &mut parts, &tokens[k..], k).unwrap();
        assert_same(name, &format!("{n} tokens split at {k}"), &want, &parts);
    }
}

#[test]
fn prefill_equals_serial_on_every_fixture() {
    let fixtures = corpus_fixtures();
    for dtype in ["f32", "f16", "q8_0", "q4_0"] {
        assert!(
            fixtures.iter().any(|(n, _)| n.ends_with(dtype)),
            "no {dtype} fixture"
        );
    }
    for (i, (name, bytes)) in fixtures.iter().enumerate() {
        check_model(name, bytes, 0x9e1f + i as u64);
    }
}

#[test]
fn prefill_equals_serial_with_heads_wider_than_dim() {
    // q_dim = 4 × 16 = 64 > dim = 32: the attention output is wider than the residual stream.
    let shape = Shape {
        dim: 32,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 16,
        ffn_dim: 64,
        max_context: 40,
        tied: false,
    };
    for (i, dtype) in DType::ALL.into_iter().enumerate() {
        let bytes = build_model(byte_vocab(vec![]), shape, dtype, 7 + i as u64);
        check_model(
            &format!("wide-heads {}", dtype.name()),
            &bytes,
            70 + i as u64,
        );
    }
}

#[test]
fn prefill_checks_before_it_runs() {
    let (_, bytes) = &corpus_fixtures()[0];
    let model = load(bytes);
    let context = model.config.max_context as usize;
    let mut s = State::new(&model, 0).unwrap();
    let bad = [0, model.config.vocab_size];
    let e = prefill(&model, &mut s, &bad, 0).unwrap_err();
    assert_eq!(e.code, runtime::ErrorCode::InvalidTokenId);
    let e = prefill(&model, &mut s, &[0, 1], context - 1).unwrap_err();
    assert_eq!(e.code, runtime::ErrorCode::ContextExceeded);
    assert!(s.kv_cache().0.iter().all(|&k| k == 0.0), "nothing ran");
    prefill(&model, &mut s, &[], context).unwrap();
}

/// Tokens and logits digest of a generation written out token by token with `forward`: the
/// prompt one position at a time, then sample, stop on a stop token, feed the sample.
fn serial_generation(
    model: &Model,
    prompt: &[u8],
    settings: SamplerSettings,
) -> (Vec<u32>, [u8; 32]) {
    let mut ids = Vec::new();
    model
        .tokenizer
        .encode(prompt, model.tokenizer.add_bos(), &mut ids)
        .unwrap();
    let mut s = State::new(model, 0).unwrap();
    for (pos, &t) in ids[..ids.len() - 1].iter().enumerate() {
        forward(model, &mut s, t, pos).unwrap();
    }
    let mut sampler = Sampler::new(model.config.vocab_size as usize, settings).unwrap();
    let (mut pos, mut current) = (ids.len() - 1, *ids.last().unwrap());
    let mut hash = Sha256::new();
    let mut out = Vec::new();
    while (out.len() as u32) < settings.max_new_tokens && pos < s.context {
        forward(model, &mut s, current, pos).unwrap();
        for v in s.logits() {
            hash.update(&v.to_bits().to_le_bytes());
        }
        let next = sampler.sample(s.logits_mut()).unwrap();
        pos += 1;
        if model.tokenizer.is_stop(next) {
            break;
        }
        out.push(next);
        current = next;
    }
    (out, hash.finalize())
}

#[test]
fn sessions_generate_what_serial_prefill_generates() {
    let prompts: [&[u8]; 4] = [
        b"",
        b"Once",
        b"Once upon a time, there was a little girl named Lily.",
        b"One day she found a needle in her room. She knew it was difficult to play with it.",
    ];
    for (name, bytes) in corpus_fixtures() {
        let mut session = Session::new(load(&bytes), 0).unwrap();
        let model = load(&bytes);
        for (i, prompt) in prompts.iter().enumerate() {
            for settings in [greedy(40), sampled(5 + i as u64, 40)] {
                if session.start(prompt, settings).is_err() {
                    // A prompt longer than this fixture's context: covered by inference.rs.
                    continue;
                }
                common::finish(&mut session);
                let (tokens, digest) = serial_generation(&model, prompt, settings);
                assert_eq!(session.generated_tokens(), &tokens[..], "{name} {prompt:?}");
                assert_eq!(
                    session.diagnostics().logits_digest,
                    digest,
                    "{name} {prompt:?}"
                );
            }
        }
    }
}

#[test]
fn the_digest_switch_changes_only_the_digest() {
    let (name, bytes) = &corpus_fixtures()[0];
    let mut on = Session::new(load(bytes), 0).unwrap();
    let mut off = Session::new(load(bytes), 0).unwrap();
    off.set_logits_digest(false);
    for s in [&mut on, &mut off] {
        s.start(b"Once upon a time", sampled(3, 30)).unwrap();
        common::finish(s);
    }
    assert_eq!(on.generated_tokens(), off.generated_tokens(), "{name}");
    let (d_on, d_off) = (on.diagnostics(), off.diagnostics());
    assert_eq!(d_off.logit_steps, 0);
    assert_eq!(d_off.logits_digest, Sha256::new().finalize());
    assert!(d_on.logit_steps > 0);
    assert_ne!(d_on.logits_digest, d_off.logits_digest);
}
