//! SHA-256 (FIPS 180-4) in plain safe Rust: the digest that verifies every `.slm` file and tensor.
//!
//! [`Sha256`] is incremental: bytes may arrive in chunks of any size and any split of the input
//! gives the same digest as [`sha256`] on the whole. Whole 64-byte blocks are compressed straight
//! from the caller's slice; only a partial block at a chunk boundary is copied into the internal
//! buffer. The code is the same on every target (no SIMD, no SHA extensions).
//!
//! [`sha256_x4`] and [`sha256_batch`] hash several messages of one length at once, one per SIMD
//! lane (`lanes.rs`: four with wasm simd128 or x86-64 SSE2, eight with AVX2): the same digests,
//! for the chunked tensor digests of spec/slm.md.

use alloc::string::String;

mod lanes;
pub use lanes::{sha256_batch, sha256_x4};
#[cfg(target_arch = "x86_64")]
pub(crate) use lanes::{vector as lanes_vector, vector8 as lanes_vector8};

/// Length of a SHA-256 digest (bytes).
pub const DIGEST_BYTES: usize = 32;

/// Bytes in one SHA-256 message block.
const BLOCK_BYTES: usize = 64;

/// Offset in the final block where the 64-bit message length (in bits) starts.
const LENGTH_OFFSET: usize = BLOCK_BYTES - 8;

/// Initial hash value H(0) (FIPS 180-4, 5.3.3).
const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// Round constants K (FIPS 180-4, 4.2.2), grouped by 16 rounds: group 0 consumes the block's own
/// words, groups 1..4 the expanded message schedule.
const K: [[u32; 16]; 4] = [
    [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174,
    ],
    [
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc,
        0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
        0x06ca6351, 0x14292967,
    ],
    [
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e,
        0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624,
        0xf40e3585, 0x106aa070,
    ],
    [
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f,
        0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb,
        0xbef9a3f7, 0xc67178f2,
    ],
];

/// An incremental SHA-256 computation.
#[derive(Clone, Debug)]
pub struct Sha256 {
    /// The chaining value H(i).
    state: [u32; 8],
    /// A partial block carried over between `update` calls; only `buffer[..buffered]` is data.
    buffer: [u8; BLOCK_BYTES],
    /// Bytes held in `buffer` (always less than a block between calls).
    buffered: usize,
    /// Bytes fed so far (modulo 2^64, as FIPS 180-4 bounds the message length anyway).
    total: u64,
}

impl Default for Sha256 {
    fn default() -> Self {
        Sha256::new()
    }
}

impl Sha256 {
    /// A computation over the empty message.
    pub const fn new() -> Sha256 {
        Sha256 {
            state: H0,
            buffer: [0; BLOCK_BYTES],
            buffered: 0,
            total: 0,
        }
    }

    /// Appends `data` to the message. Chunks may have any size, including zero.
    pub fn update(&mut self, data: &[u8]) {
        self.total = self.total.wrapping_add(data.len() as u64);
        let mut rest = data;
        if self.buffered > 0 {
            let take = (BLOCK_BYTES - self.buffered).min(rest.len());
            let (head, tail) = rest.split_at(take);
            self.buffer[self.buffered..self.buffered + take].copy_from_slice(head);
            self.buffered += take;
            rest = tail;
            if self.buffered < BLOCK_BYTES {
                return;
            }
            compress_blocks(&mut self.state, &self.buffer);
            self.buffered = 0;
        }
        let whole = rest.len() - rest.len() % BLOCK_BYTES;
        let (blocks, tail) = rest.split_at(whole);
        compress_blocks(&mut self.state, blocks);
        self.buffer[..tail.len()].copy_from_slice(tail);
        self.buffered = tail.len();
    }

    /// Bytes fed to [`Sha256::update`] so far (modulo 2^64).
    pub fn bytes_hashed(&self) -> u64 {
        self.total
    }

    /// Pads the message (FIPS 180-4, 5.1.1) and returns its digest.
    pub fn finalize(mut self) -> [u8; DIGEST_BYTES] {
        let bit_length = self.total.wrapping_mul(8);
        let used = self.buffered;
        self.buffer[used] = 0x80;
        self.buffer[used + 1..].fill(0);
        if used + 1 > LENGTH_OFFSET {
            compress_blocks(&mut self.state, &self.buffer);
            self.buffer.fill(0);
        }
        self.buffer[LENGTH_OFFSET..].copy_from_slice(&bit_length.to_be_bytes());
        compress_blocks(&mut self.state, &self.buffer);

        let mut digest = [0u8; DIGEST_BYTES];
        for (out, word) in digest.chunks_exact_mut(4).zip(self.state) {
            out.copy_from_slice(&word.to_be_bytes());
        }
        digest
    }
}

/// The SHA-256 digest of `data`.
pub fn sha256(data: &[u8]) -> [u8; DIGEST_BYTES] {
    let mut hasher = Sha256::new();
    hasher.update(data);
    hasher.finalize()
}

/// The digest as 64 lower-case hex digits.
pub fn to_hex(digest: &[u8; DIGEST_BYTES]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(2 * DIGEST_BYTES);
    for &byte in digest {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    hex
}

/// Parses exactly 64 hex digits (either case, nothing else: no prefix, sign or whitespace).
pub fn from_hex(s: &str) -> Option<[u8; DIGEST_BYTES]> {
    let bytes = s.as_bytes();
    if bytes.len() != 2 * DIGEST_BYTES {
        return None;
    }
    let mut digest = [0u8; DIGEST_BYTES];
    for (out, pair) in digest.iter_mut().zip(bytes.chunks_exact(2)) {
        *out = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
    }
    Some(digest)
}

/// The value of one ASCII hex digit.
fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Compresses every whole 64-byte block of `blocks` into `state` (FIPS 180-4, 6.2.2); a partial
/// trailing block is ignored (callers pass whole blocks only).
fn compress_blocks(state: &mut [u32; 8], blocks: &[u8]) {
    for block in blocks.chunks_exact(BLOCK_BYTES) {
        let mut w = [0u32; 16];
        for (word, bytes) in w.iter_mut().zip(block.chunks_exact(4)) {
            *word = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        compress(state, &mut w);
    }
}

/// One compression of the message words `w` into `state`. The 64 rounds are unrolled 16 at a
/// time; the working variables rotate by renaming instead of moving, and the message schedule is
/// kept as a 16-word ring, rewritten in place before each of the last 48 rounds. Maj (the
/// majority of each bit) is computed as `((a ^ b) & (b ^ c)) ^ b`, carrying `a ^ b` into the
/// next round as its `b ^ c`: one operation less per round than `(a & b) | (c & (a | b))`.
#[inline(always)]
fn compress(state: &mut [u32; 8], w: &mut [u32; 16]) {
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
    let mut b_xor_c = b ^ c;

    // Round t with working variables named (a..h) as they are at round t; updates d and h in
    // place, and the next round names them e and a.
    macro_rules! round {
        ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident,
         $k:expr, $w:expr) => {
            // h + K + W does not wait for e, so it is summed first.
            let t1 = $h
                .wrapping_add($k)
                .wrapping_add($w)
                .wrapping_add(choose($e, $f, $g))
                .wrapping_add(big_sigma1($e));
            // Maj(a, b, c) = ((a ^ b) & (b ^ c)) ^ b, where b ^ c is the previous round's a ^ b.
            let a_xor_b = $a ^ $b;
            let t2 = big_sigma0($a).wrapping_add((a_xor_b & b_xor_c) ^ $b);
            b_xor_c = a_xor_b;
            $d = $d.wrapping_add(t1);
            $h = t1.wrapping_add(t2);
        };
    }

    // Sixteen rounds with constants `k`; `$next` rewrites w[i] into W(t + 16) first when the
    // schedule must advance.
    macro_rules! sixteen_rounds {
        ($k:expr, $next:ident) => {
            let k = $k;
            sixteen_rounds!(@one k, $next, 0, a, b, c, d, e, f, g, h);
            sixteen_rounds!(@one k, $next, 1, h, a, b, c, d, e, f, g);
            sixteen_rounds!(@one k, $next, 2, g, h, a, b, c, d, e, f);
            sixteen_rounds!(@one k, $next, 3, f, g, h, a, b, c, d, e);
            sixteen_rounds!(@one k, $next, 4, e, f, g, h, a, b, c, d);
            sixteen_rounds!(@one k, $next, 5, d, e, f, g, h, a, b, c);
            sixteen_rounds!(@one k, $next, 6, c, d, e, f, g, h, a, b);
            sixteen_rounds!(@one k, $next, 7, b, c, d, e, f, g, h, a);
            sixteen_rounds!(@one k, $next, 8, a, b, c, d, e, f, g, h);
            sixteen_rounds!(@one k, $next, 9, h, a, b, c, d, e, f, g);
            sixteen_rounds!(@one k, $next, 10, g, h, a, b, c, d, e, f);
            sixteen_rounds!(@one k, $next, 11, f, g, h, a, b, c, d, e);
            sixteen_rounds!(@one k, $next, 12, e, f, g, h, a, b, c, d);
            sixteen_rounds!(@one k, $next, 13, d, e, f, g, h, a, b, c);
            sixteen_rounds!(@one k, $next, 14, c, d, e, f, g, h, a, b);
            sixteen_rounds!(@one k, $next, 15, b, c, d, e, f, g, h, a);
        };
        (@one $k:ident, $next:ident, $i:tt, $a:ident, $b:ident, $c:ident, $d:ident,
         $e:ident, $f:ident, $g:ident, $h:ident) => {
            sixteen_rounds!(@schedule $next, $i);
            round!($a, $b, $c, $d, $e, $f, $g, $h, $k[$i], w[$i]);
        };
        (@schedule keep, $i:tt) => {};
        (@schedule advance, $i:tt) => {
            // W(t) = σ1(W(t-2)) + W(t-7) + σ0(W(t-15)) + W(t-16), indices modulo 16.
            w[$i] = w[$i]
                .wrapping_add(small_sigma1(w[($i + 14) % 16]))
                .wrapping_add(w[($i + 9) % 16])
                .wrapping_add(small_sigma0(w[($i + 1) % 16]));
        };
    }

    sixteen_rounds!(K[0], keep);
    for k in &K[1..] {
        sixteen_rounds!(k, advance);
    }

    for (word, add) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
        *word = word.wrapping_add(add);
    }
}

/// Ch(x, y, z): bits of y where x is set, of z elsewhere.
#[inline(always)]
fn choose(x: u32, y: u32, z: u32) -> u32 {
    z ^ (x & (y ^ z))
}

/// Σ0 (FIPS 180-4, 4.4).
#[inline(always)]
fn big_sigma0(x: u32) -> u32 {
    x.rotate_right(2) ^ x.rotate_right(13) ^ x.rotate_right(22)
}

/// Σ1 (FIPS 180-4, 4.5).
#[inline(always)]
fn big_sigma1(x: u32) -> u32 {
    x.rotate_right(6) ^ x.rotate_right(11) ^ x.rotate_right(25)
}

/// σ0 (FIPS 180-4, 4.6).
#[inline(always)]
fn small_sigma0(x: u32) -> u32 {
    x.rotate_right(7) ^ x.rotate_right(18) ^ (x >> 3)
}

/// σ1 (FIPS 180-4, 4.7).
#[inline(always)]
fn small_sigma1(x: u32) -> u32 {
    x.rotate_right(17) ^ x.rotate_right(19) ^ (x >> 10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    fn hex(data: &[u8]) -> String {
        to_hex(&sha256(data))
    }

    #[test]
    fn nist_short_messages() {
        assert_eq!(
            hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn nist_448_and_896_bit_messages() {
        assert_eq!(
            hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        assert_eq!(
            hex(b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn\
                  hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"
        );
    }

    #[test]
    fn nist_one_million_a() {
        let expected = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
        assert_eq!(hex(&vec![b'a'; 1_000_000]), expected);
        // The same message fed in uneven chunks.
        let mut hasher = Sha256::new();
        let chunk = [b'a'; 997];
        let mut left = 1_000_000;
        while left > 0 {
            let take = left.min(chunk.len());
            hasher.update(&chunk[..take]);
            left -= take;
        }
        assert_eq!(to_hex(&hasher.finalize()), expected);
    }

    /// Runs of 'a' around the padding boundaries (digests from coreutils `sha256sum`).
    #[test]
    fn padding_boundaries() {
        let cases: [(usize, &str); 9] = [
            (
                55,
                "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318",
            ),
            (
                56,
                "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a",
            ),
            (
                63,
                "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34",
            ),
            (
                64,
                "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb",
            ),
            (
                65,
                "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0",
            ),
            (
                119,
                "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb",
            ),
            (
                120,
                "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c",
            ),
            (
                127,
                "c57e9278af78fa3cab38667bef4ce29d783787a2f731d4e12200270f0c32320a",
            ),
            (
                128,
                "6836cf13bac400e9105071cd6af47084dfacad4e5e302c94bfed24e013afb73e",
            ),
        ];
        for (len, expected) in cases {
            assert_eq!(hex(&vec![b'a'; len]), expected, "{len} bytes");
        }
    }

    /// Every split of a message into three chunks (including empty ones) gives the one-shot digest.
    #[test]
    fn any_split_gives_the_same_digest() {
        let message: Vec<u8> = (0..150u32).map(|i| (i * 37 + 11) as u8).collect();
        let expected = sha256(&message);
        for first in 0..=message.len() {
            for second in first..=message.len() {
                let mut hasher = Sha256::new();
                hasher.update(&message[..first]);
                hasher.update(&message[first..second]);
                hasher.update(&[]);
                hasher.update(&message[second..]);
                assert_eq!(hasher.bytes_hashed(), message.len() as u64);
                assert_eq!(hasher.finalize(), expected, "split at {first}, {second}");
            }
        }
    }

    #[test]
    fn bytes_hashed_counts_every_update() {
        let mut hasher = Sha256::default();
        assert_eq!(hasher.bytes_hashed(), 0);
        hasher.update(b"ab");
        hasher.update(&[0; 100]);
        assert_eq!(hasher.bytes_hashed(), 102);
    }

    #[test]
    fn hex_round_trip() {
        let digest = sha256(b"abc");
        let text = to_hex(&digest);
        assert_eq!(text.len(), 2 * DIGEST_BYTES);
        assert_eq!(from_hex(&text), Some(digest));
        assert_eq!(from_hex(&text.to_ascii_uppercase()), Some(digest));
        let all: [u8; DIGEST_BYTES] = core::array::from_fn(|i| (i * 8 + 7) as u8);
        assert_eq!(from_hex(&to_hex(&all)), Some(all));
    }

    #[test]
    fn from_hex_rejects_bad_text() {
        let good = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert!(from_hex(good).is_some());
        assert_eq!(from_hex(""), None);
        assert_eq!(from_hex(&good[..63]), None);
        assert_eq!(from_hex(&good[..62]), None);
        assert_eq!(from_hex(&alloc::format!("{good}0")), None);
        assert_eq!(from_hex(&alloc::format!("{good}00")), None);
        assert_eq!(from_hex(&alloc::format!("0x{}", &good[2..])), None);
        assert_eq!(from_hex(&alloc::format!(" {}", &good[1..])), None);
        assert_eq!(from_hex(&alloc::format!("{}g", &good[..63])), None);
        assert_eq!(from_hex(&alloc::format!("+{}", &good[1..])), None);
        // A two-byte character keeps the byte length at 64 but is not hex.
        assert_eq!(from_hex(&alloc::format!("é{}", &good[2..])), None);
    }
}
