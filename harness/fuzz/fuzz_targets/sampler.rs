//! Sampler settings and sampling: any settings validate or fail with InvalidSettings, and a
//! valid sampler picks a token inside the vocabulary from any logits (NaN and infinities
//! included) or fails cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runtime::generate::sampler::{Sampler, SamplerSettings};
use runtime::ErrorCode;

fuzz_target!(|data: &[u8]| {
    if data.len() < 26 {
        return;
    }
    let f32_at = |i: usize| f32::from_le_bytes(data[i..i + 4].try_into().unwrap());
    let u32_at = |i: usize| u32::from_le_bytes(data[i..i + 4].try_into().unwrap());
    let settings = SamplerSettings {
        temperature: f32_at(0),
        top_k: (data[24] & 1 == 1).then(|| u32_at(4)),
        top_p: f32_at(8),
        seed: u64::from_le_bytes(data[12..20].try_into().unwrap()),
        max_new_tokens: u32_at(20),
    };
    let vocab = 1 + data[25] as usize;
    match Sampler::new(vocab, settings) {
        Err(e) => assert!(
            matches!(e.code, ErrorCode::InvalidSettings | ErrorCode::OutOfMemory),
            "{e:?}"
        ),
        Ok(mut sampler) => {
            let mut logits: Vec<f32> = data[26..]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .chain(std::iter::repeat(0.0))
                .take(vocab)
                .collect();
            for _ in 0..4 {
                if let Ok(id) = sampler.sample(&mut logits) {
                    assert!((id as usize) < vocab);
                }
            }
        }
    }
});
