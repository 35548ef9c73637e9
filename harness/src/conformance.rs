//! The standard prompt set and sampling settings every engine runs (`tinyrustlm check`, the
//! golden snapshots, the browser smoke page), and the comparison of engines bit for bit.

use crate::engine::{Engine, EngineError, GenRequest, GenResult};
use runtime::generate::sampler::SamplerSettings;
use serde::Serialize;

/// One standard case: a prompt and sampling settings.
#[derive(Clone, Debug, Serialize)]
pub struct Case {
    pub name: &'static str,
    pub prompt: &'static str,
    pub temperature: f32,
    pub top_k: Option<u32>,
    pub top_p: f32,
    pub seed: u64,
    pub max_new_tokens: u32,
}

impl Case {
    pub fn settings(&self) -> SamplerSettings {
        SamplerSettings {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            seed: self.seed,
            max_new_tokens: self.max_new_tokens,
        }
    }

    pub fn request(&self) -> GenRequest {
        GenRequest {
            prompt: self.prompt.as_bytes().to_vec(),
            settings: self.settings(),
        }
    }
}

/// Prompts of the standard set.
pub const PROMPTS: [(&str, &str); 3] = [
    ("empty", ""),
    ("story", "Once upon a time"),
    ("unicode", "The little dog saw a café ☕ and said:"),
];

/// The standard set: every prompt × greedy, temperature with seed, top-k, top-p.
pub fn standard_cases(max_new_tokens: u32) -> Vec<Case> {
    let mut out = Vec::new();
    for (pname, prompt) in PROMPTS {
        let settings: [(&str, f32, Option<u32>, f32, u64); 4] = [
            ("greedy", 0.0, None, 1.0, 1),
            ("temp0.8-seed7", 0.8, None, 1.0, 7),
            ("topk5-seed11", 1.0, Some(5), 1.0, 11),
            ("topp0.9-seed13", 1.0, None, 0.9, 13),
        ];
        for (sname, temperature, top_k, top_p, seed) in settings {
            out.push(Case {
                name: leak(format!("{pname}/{sname}")),
                prompt,
                temperature,
                top_k,
                top_p,
                seed,
                max_new_tokens,
            });
        }
    }
    out
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Runs every case on a loaded engine; a case that fails gives its error.
pub fn run_cases(engine: &mut dyn Engine, cases: &[Case]) -> Vec<Result<GenResult, EngineError>> {
    cases
        .iter()
        .map(|c| engine.generate(&c.request()))
        .collect()
}

/// Where two results of one case first differ, in words; None when bit-identical.
pub fn first_divergence(a: &GenResult, b: &GenResult) -> Option<String> {
    if a.prompt_tokens != b.prompt_tokens {
        return Some("prompt tokens differ".into());
    }
    let steps = a.step_digests.len().max(b.step_digests.len());
    for i in 0..steps {
        if a.step_digests.get(i) != b.step_digests.get(i) {
            return Some(format!("logits differ first at generation step {i}"));
        }
    }
    for i in 0..a.tokens.len().max(b.tokens.len()) {
        if a.tokens.get(i) != b.tokens.get(i) {
            return Some(format!("token {i} differs"));
        }
    }
    if a.logits_digest != b.logits_digest {
        return Some("logits digests differ".into());
    }
    if a.text != b.text {
        return Some("text differs".into());
    }
    if a.finish != b.finish {
        return Some(format!("finish differs: {} vs {}", a.finish, b.finish));
    }
    None
}
