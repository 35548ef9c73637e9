//! Differential tests: the runtime's SHA-256 against the `sha2` crate, one-shot and fed in random
//! chunk splits (empty chunks included).

use proptest::prelude::*;
use runtime::sha256::{sha256, to_hex, Sha256};
use sha2::Digest;

fn reference(data: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(data).into()
}

/// A message of up to ~20 KB and chunk lengths to cut it with (0 gives an empty chunk).
fn message_and_cuts() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    (
        prop::collection::vec(any::<u8>(), 0..20_000),
        prop::collection::vec(prop_oneof![0..4usize, 0..70usize, 0..5_000usize], 0..40),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn one_shot_matches_sha2(data in prop::collection::vec(any::<u8>(), 0..20_000)) {
        prop_assert_eq!(to_hex(&sha256(&data)), to_hex(&reference(&data)));
    }

    #[test]
    fn chunked_matches_sha2((data, cuts) in message_and_cuts()) {
        let mut hasher = Sha256::new();
        let mut rest = data.as_slice();
        for cut in cuts {
            let (chunk, tail) = rest.split_at(cut.min(rest.len()));
            hasher.update(chunk);
            rest = tail;
        }
        hasher.update(rest);
        prop_assert_eq!(hasher.bytes_hashed(), data.len() as u64);
        prop_assert_eq!(to_hex(&hasher.finalize()), to_hex(&reference(&data)));
    }
}
