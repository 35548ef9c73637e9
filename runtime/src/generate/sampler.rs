//! Choosing the next token from logits (spec/sampling.md): greedy argmax, or temperature softmax
//! with optional top-k and llama2.c's top-p / multinomial sampling, driven by llama2.c's
//! xorshift64* generator. All scratch is allocated once, in [`Sampler::new`].

use alloc::vec::Vec;

use crate::error::{Error, ErrorCode, Result};
use crate::limits;
use crate::model::math::softmax_in_place;

/// llama2.c's xorshift64* generator (`random_u32` / `random_f32` in run.c).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator whose state is `seed`. Seed 0 is rejected (`InvalidSettings`): xorshift would
    /// stay at 0 forever.
    pub fn new(seed: u64) -> Result<Rng> {
        if seed == 0 {
            return Err(Error::new(
                ErrorCode::InvalidSettings,
                "seed must not be 0 (the xorshift state would stay 0)",
            ));
        }
        Ok(Rng { state: seed })
    }

    /// Next 32 random bits: state ^= state >> 12; state ^= state << 25; state ^= state >> 27;
    /// return the high half of state * 0x2545F4914F6CDD1D.
    pub fn next_u32(&mut self) -> u32 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        (self.state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }

    /// A float in [0, 1): the top 24 bits of [`Rng::next_u32`] divided by 2^24.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 / 16_777_216.0
    }
}

/// How to choose tokens and how many to generate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplerSettings {
    /// 0 = greedy (argmax); otherwise logits are divided by it before the softmax. Finite, >= 0.
    pub temperature: f32,
    /// Keep only the k most likely tokens (1..=`limits::MAX_TOP_K`); `None` = no top-k.
    pub top_k: Option<u32>,
    /// Nucleus mass in (0, 1]; 1 = no top-p.
    pub top_p: f32,
    /// Initial generator state; must not be 0.
    pub seed: u64,
    /// Tokens one generation may produce (1..=`limits::MAX_NEW_TOKENS`).
    pub max_new_tokens: u32,
}

impl SamplerSettings {
    /// Checks every rule of spec/sampling.md (Settings); each failure is `InvalidSettings`.
    pub fn validate(&self) -> Result<()> {
        let fail = |message: &str| Err(Error::new(ErrorCode::InvalidSettings, message));
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return fail("temperature must be finite and >= 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return fail("top_p must be in (0, 1]");
        }
        if let Some(k) = self.top_k {
            if k == 0 || k > limits::MAX_TOP_K {
                return Err(Error::new(
                    ErrorCode::InvalidSettings,
                    alloc::format!("top_k {k} is not in 1..={} (MAX_TOP_K)", limits::MAX_TOP_K),
                ));
            }
        }
        if self.seed == 0 {
            return fail("seed must not be 0");
        }
        if self.max_new_tokens == 0 || self.max_new_tokens > limits::MAX_NEW_TOKENS {
            return Err(Error::new(
                ErrorCode::InvalidSettings,
                alloc::format!(
                    "max_new_tokens {} is not in 1..={} (MAX_NEW_TOKENS)",
                    self.max_new_tokens,
                    limits::MAX_NEW_TOKENS
                ),
            ));
        }
        Ok(())
    }
}

/// A candidate token: its ranking value (logit or probability) and its id.
#[derive(Clone, Copy, Debug, Default)]
struct Candidate {
    value: f32,
    index: u32,
}

/// A total order key for f32: monotone in the value, -0.0 and +0.0 equal, NaN below everything.
fn order_key(v: f32) -> i64 {
    if v.is_nan() {
        return i64::MIN;
    }
    if v == 0.0 {
        return 0;
    }
    let bits = i64::from(v.to_bits() as i32);
    if bits < 0 {
        -(bits & 0x7fff_ffff)
    } else {
        bits
    }
}

/// Whether `a` ranks before `b`: larger value first, then lower index.
fn ranks_before(a: &Candidate, b: &Candidate) -> bool {
    let (ka, kb) = (order_key(a.value), order_key(b.value));
    ka > kb || (ka == kb && a.index < b.index)
}

/// Restores the heap property below `root` for a heap whose top is the element that ranks
/// LAST (`ranks_before(child, parent)` never holds).
fn sift_down(heap: &mut [Candidate], mut root: usize) {
    loop {
        let left = 2 * root + 1;
        if left >= heap.len() {
            return;
        }
        let right = left + 1;
        let mut worst = left;
        if right < heap.len() && ranks_before(&heap[left], &heap[right]) {
            worst = right;
        }
        if ranks_before(&heap[worst], &heap[root]) {
            return;
        }
        heap.swap(root, worst);
        root = worst;
    }
}

/// Sorts best-first (in place, no allocation): heapsort with the worst element on top, so each
/// step moves the current worst to the back.
fn sort_best_first(items: &mut [Candidate]) {
    for root in (0..items.len() / 2).rev() {
        sift_down(items, root);
    }
    for end in (1..items.len()).rev() {
        items.swap(0, end);
        sift_down(&mut items[..end], 0);
    }
}

/// Chooses tokens per [`SamplerSettings`]; owns its generator and scratch.
#[derive(Clone, Debug)]
pub struct Sampler {
    settings: SamplerSettings,
    rng: Rng,
    vocab_size: usize,
    candidates: Vec<Candidate>,
    probs: Vec<f32>,
}

impl Sampler {
    /// A sampler for `vocab_size` logits (1..=`limits::MAX_VOCAB`), after validating `settings`.
    pub fn new(vocab_size: usize, settings: SamplerSettings) -> Result<Sampler> {
        settings.validate()?;
        if vocab_size == 0 || vocab_size > limits::MAX_VOCAB as usize {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                "vocab_size must be in 1..=MAX_VOCAB",
            ));
        }
        let rng = Rng::new(settings.seed)?;
        let oom = |_| Error::new(ErrorCode::OutOfMemory, "sampler scratch");
        let mut candidates = Vec::new();
        candidates.try_reserve_exact(vocab_size).map_err(oom)?;
        candidates.resize(vocab_size, Candidate::default());
        let mut probs = Vec::new();
        probs.try_reserve_exact(vocab_size).map_err(oom)?;
        probs.resize(vocab_size, 0.0);
        Ok(Sampler {
            settings,
            rng,
            vocab_size,
            candidates,
            probs,
        })
    }

    /// The settings this sampler was built with.
    pub fn settings(&self) -> &SamplerSettings {
        &self.settings
    }

    /// Chooses the next token id. `logits` must hold exactly `vocab_size` values (else
    /// `InvalidLength`); it is used as scratch and its contents afterwards are unspecified.
    pub fn sample(&mut self, logits: &mut [f32]) -> Result<u32> {
        if logits.len() != self.vocab_size {
            return Err(Error::new(
                ErrorCode::InvalidLength,
                "logits length differs from the vocabulary size",
            ));
        }
        if self.settings.temperature == 0.0 {
            return Ok(argmax(logits));
        }
        match self.settings.top_k {
            Some(k) => Ok(self.sample_top_k(logits, k as usize)),
            None => Ok(self.sample_full(logits)),
        }
    }

    /// Temperature, softmax over the whole vocabulary, then llama2.c's top-p or multinomial.
    fn sample_full(&mut self, logits: &mut [f32]) -> u32 {
        let temperature = self.settings.temperature;
        let mut defined = Defined::default();
        for v in logits.iter_mut() {
            *v /= temperature;
            defined.add(*v);
        }
        if !defined.holds() {
            // The coin is drawn all the same: the generator's stream does not depend on it.
            self.rng.next_f32();
            return argmax(logits);
        }
        softmax_in_place(logits);
        let coin = self.rng.next_f32();
        let top_p = self.settings.top_p;
        if top_p >= 1.0 {
            return sample_mult(logits, coin);
        }
        let n = logits.len();
        if n == 1 {
            return 0;
        }
        let cutoff = (1.0 - top_p) / (n - 1) as f32;
        let mut kept = 0;
        for (i, &p) in logits.iter().enumerate() {
            if p >= cutoff {
                self.candidates[kept] = Candidate {
                    value: p,
                    index: i as u32,
                };
                kept += 1;
            }
        }
        if kept == 0 {
            // Possible only when top_p < 1/n; llama2.c is undefined here.
            return argmax(logits);
        }
        let kept = &mut self.candidates[..kept];
        sort_best_first(kept);
        sample_nucleus(kept, top_p, coin)
    }

    /// Top-k on the raw logits, then temperature and softmax over the k kept, then top-p or a
    /// cdf walk in ranked order.
    fn sample_top_k(&mut self, logits: &[f32], k: usize) -> u32 {
        let k = k.min(logits.len());
        let top = select_top_k(logits, &mut self.candidates, k);
        let temperature = self.settings.temperature;
        let probs = &mut self.probs[..k];
        let mut defined = Defined::default();
        for (p, c) in probs.iter_mut().zip(top.iter()) {
            *p = c.value / temperature;
            defined.add(*p);
        }
        if !defined.holds() {
            // The best logit in ranking order: the greedy choice.
            self.rng.next_f32();
            return top[0].index;
        }
        softmax_in_place(probs);
        for (c, &p) in top.iter_mut().zip(probs.iter()) {
            c.value = p;
        }
        let coin = self.rng.next_f32();
        let top_p = self.settings.top_p;
        if top_p >= 1.0 {
            let mut cdf = 0.0f32;
            for c in top.iter() {
                cdf += c.value;
                if coin < cdf {
                    return c.index;
                }
            }
            return top[k - 1].index;
        }
        sample_nucleus(top, top_p, coin)
    }
}

/// Whether a softmax over the values seen is defined (spec/sampling.md): none is NaN or +inf
/// (an infinite or NaN logit, or `logit / temperature` overflowing) and one is above −inf.
/// Otherwise every probability would be NaN, and no walk could choose.
#[derive(Default)]
struct Defined {
    /// A value was NaN or +inf.
    poisoned: bool,
    /// A value was above −inf.
    live: bool,
}

impl Defined {
    #[inline(always)]
    fn add(&mut self, v: f32) {
        self.poisoned |= v.is_nan() || v == f32::INFINITY;
        self.live |= v > f32::NEG_INFINITY;
    }

    fn holds(&self) -> bool {
        self.live && !self.poisoned
    }
}

/// [`order_key`] in 32 bits, without branches (so a loop over it vectorizes): the same order,
/// since every non-NaN key lies in `-0x7f80_0000..=0x7f80_0000` and NaN maps below them all.
#[inline(always)]
pub(crate) fn order_key32(v: f32) -> i32 {
    let bits = v.to_bits() as i32;
    let sign = bits >> 31; // 0 or -1
                           // Negative values: -(bits & 0x7fff_ffff), i.e. the low 31 bits flipped, plus one.
    let key = (bits ^ (sign & 0x7fff_ffff)).wrapping_sub(sign);
    if bits & 0x7fff_ffff > 0x7f80_0000 {
        i32::MIN
    } else {
        key
    }
}

/// The first index of the largest logit (order of [`order_key`]: ±0 equal, NaN lowest): the
/// simd128 kernel in the simd128 module (the same index), else [`argmax_portable`].
fn argmax(logits: &[f32]) -> u32 {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        crate::model::simd128::argmax::argmax(logits, order_key32)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        argmax_portable(logits)
    }
}

/// [`argmax`] in portable code, in chunks: the largest key of each chunk (a branch-free maximum
/// the compiler vectorizes), the first chunk holding the overall largest, then the first index
/// in that chunk. In the simd128 module only its kernel selftest uses it.
#[cfg(any(
    not(all(target_arch = "wasm32", target_feature = "simd128")),
    feature = "kernel-selftest"
))]
pub(crate) fn argmax_portable(logits: &[f32]) -> u32 {
    const CHUNK: usize = 64;
    let mut best_key = i32::MIN;
    let mut best_chunk = 0;
    for (c, chunk) in logits.chunks(CHUNK).enumerate() {
        let m = chunk.iter().fold(i32::MIN, |m, &v| m.max(order_key32(v)));
        if m > best_key {
            best_key = m;
            best_chunk = c;
        }
    }
    let start = best_chunk * CHUNK;
    let within = logits
        .get(start..)
        .unwrap_or(&[])
        .iter()
        .position(|&v| order_key32(v) == best_key)
        .unwrap_or(0);
    (start + within) as u32
}

/// llama2.c `sample_mult`: the first i whose running sum of probabilities exceeds `coin`; the
/// last index if rounding leaves the total at or below `coin`.
fn sample_mult(probs: &[f32], coin: f32) -> u32 {
    let mut cdf = 0.0f32;
    for (i, &p) in probs.iter().enumerate() {
        cdf += p;
        if coin < cdf {
            return i as u32;
        }
    }
    (probs.len() - 1) as u32
}

/// llama2.c `sample_topp` after its prefilter and sort: keep the ranked prefix whose running
/// sum first exceeds `top_p` (all if none does), then walk it with `coin * kept_mass`; the last
/// kept candidate on rounding shortfall. `ranked` must not be empty.
fn sample_nucleus(ranked: &[Candidate], top_p: f32, coin: f32) -> u32 {
    let mut mass = 0.0f32;
    let mut last_idx = ranked.len() - 1;
    for (i, c) in ranked.iter().enumerate() {
        mass += c.value;
        if mass > top_p {
            last_idx = i;
            break;
        }
    }
    let r = coin * mass;
    let mut cdf = 0.0f32;
    for c in &ranked[..=last_idx] {
        cdf += c.value;
        if r < cdf {
            return c.index;
        }
    }
    ranked[last_idx].index
}

/// The `k` (1 <= k <= logits.len()) best logits, best first, in `scratch[..k]`: a bounded heap
/// whose top is the worst kept candidate, then a heapsort.
fn select_top_k<'a>(logits: &[f32], scratch: &'a mut [Candidate], k: usize) -> &'a mut [Candidate] {
    let heap = &mut scratch[..k];
    for (i, slot) in heap.iter_mut().enumerate() {
        *slot = Candidate {
            value: logits[i],
            index: i as u32,
        };
    }
    for root in (0..k / 2).rev() {
        sift_down(heap, root);
    }
    for (i, &v) in logits.iter().enumerate().skip(k) {
        let c = Candidate {
            value: v,
            index: i as u32,
        };
        if ranks_before(&c, &heap[0]) {
            heap[0] = c;
            sift_down(heap, 0);
        }
    }
    for end in (1..k).rev() {
        heap.swap(0, end);
        sift_down(&mut heap[..end], 0);
    }
    heap
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the softmax is not defined (a NaN or infinite logit, `logit / temperature`
    /// overflowing, every logit −inf), every path chooses greedily — never the NaN, never the
    /// least likely — and still draws its coin.
    #[test]
    fn an_undefined_softmax_chooses_greedily_and_draws_the_coin() {
        let cases: [(f32, [f32; 4], u32); 6] = [
            (1e-39, [0.0, 5.0, 1.0, -2.0], 1),
            (f32::from_bits(1), [0.0, 5.0, 1.0, -2.0], 1),
            (1.0, [0.0, f32::INFINITY, 1.0, -2.0], 1),
            (1.0, [f32::NAN, 3.0, 1.0, -2.0], 1),
            (1.0, [0.0, 3.0, f32::NAN, -2.0], 1),
            (1.0, [f32::NEG_INFINITY; 4], 0),
        ];
        for (temperature, logits, want) in cases {
            for (top_k, top_p) in [(None, 1.0), (None, 0.5), (Some(4), 1.0), (Some(4), 0.5)] {
                let settings = SamplerSettings {
                    temperature,
                    top_k,
                    top_p,
                    seed: 42,
                    max_new_tokens: 1,
                };
                let mut s = Sampler::new(4, settings).unwrap();
                let what = (temperature, logits, top_k, top_p);
                assert_eq!(s.sample(&mut logits.clone()).unwrap(), want, "{what:?}");
                let mut fresh = Sampler::new(4, settings).unwrap();
                fresh.rng.next_f32();
                assert_eq!(s.rng.next_f32(), fresh.rng.next_f32(), "{what:?}: one coin");
            }
        }
    }

    /// The first index of the largest [`order_key`], one element at a time (what [`argmax`]
    /// must equal).
    fn argmax_reference(logits: &[f32]) -> u32 {
        let mut best = 0usize;
        let mut best_key = i64::MIN;
        for (i, &v) in logits.iter().enumerate() {
            if order_key(v) > best_key {
                best = i;
                best_key = order_key(v);
            }
        }
        best as u32
    }

    #[test]
    fn order_key32_orders_as_order_key() {
        // Every sign/exponent pattern with a few mantissas, NaNs, infinities, zeros, subnormals.
        let mut bits: Vec<u32> = Vec::new();
        for se in 0u32..512 {
            for m in [0u32, 1, 0x40_0000, 0x7f_ffff, 0x12_3457] {
                bits.push(se << 23 | m);
            }
        }
        for &a in &bits {
            let (fa, ka) = (f32::from_bits(a), order_key32(f32::from_bits(a)));
            for &b in bits.iter().step_by(7) {
                let fb = f32::from_bits(b);
                assert_eq!(
                    ka.cmp(&order_key32(fb)),
                    order_key(fa).cmp(&order_key(fb)),
                    "{a:#x} {b:#x}"
                );
            }
        }
    }

    #[test]
    fn argmax_is_the_first_largest() {
        let mut rng = Rng::new(7).unwrap();
        let specials = [
            f32::NAN,
            -0.0,
            0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1e-45,
            -1e-45,
        ];
        for len in [0usize, 1, 2, 63, 64, 65, 130, 1000] {
            for round in 0..40 {
                let v: Vec<f32> = (0..len)
                    .map(|i| {
                        let r = rng.next_f32();
                        match round % 4 {
                            // Few distinct values: many ties, the first must win.
                            0 => (r * 4.0).floor() - 2.0,
                            1 => specials[(r * 7.0) as usize % 7],
                            2 if i % 3 == 0 => f32::NAN,
                            _ => r * 2.0 - 1.0,
                        }
                    })
                    .collect();
                assert_eq!(argmax(&v), argmax_reference(&v), "{v:?}");
            }
        }
        assert_eq!(argmax(&[f32::NAN; 70]), 0);
        assert_eq!(argmax(&[-0.0, 0.0]), 0);
        let mut late = alloc::vec![1.0f32; 200];
        late[150] = 2.0;
        late[190] = 2.0;
        assert_eq!(argmax(&late), 150);
    }

    #[test]
    fn order_key_is_monotone_and_merges_zeros() {
        let values = [
            f32::NEG_INFINITY,
            -1.5,
            -1e-40,
            0.0,
            1e-40,
            2.0,
            f32::INFINITY,
        ];
        for pair in values.windows(2) {
            assert!(order_key(pair[0]) < order_key(pair[1]), "{pair:?}");
        }
        assert_eq!(order_key(-0.0), order_key(0.0));
        assert!(order_key(f32::NAN) < order_key(f32::NEG_INFINITY));
    }

    #[test]
    fn heapsort_orders_by_value_then_index() {
        let mut items: Vec<Candidate> = [0.5f32, 2.0, 0.5, -1.0, 2.0, 0.0]
            .iter()
            .enumerate()
            .map(|(i, &value)| Candidate {
                value,
                index: i as u32,
            })
            .collect();
        sort_best_first(&mut items);
        let order: Vec<u32> = items.iter().map(|c| c.index).collect();
        assert_eq!(order, [1, 4, 0, 2, 5, 3]);
    }

    #[test]
    fn top_k_selection_matches_full_sort() {
        let logits = [3.0f32, -1.0, 3.0, 7.0, 0.0, 7.0, 2.5, -0.0];
        for k in 1..=logits.len() {
            let mut scratch = [Candidate::default(); 8];
            let got: Vec<u32> = select_top_k(&logits, &mut scratch, k)
                .iter()
                .map(|c| c.index)
                .collect();
            assert_eq!(got, [3, 5, 0, 2, 6, 4, 7, 1][..k], "k = {k}");
        }
    }
}
