//! `tinyrustlm bench sha256`: throughput of the runtime's SHA-256 against the `sha2` crate on the
//! same deterministic buffer, in the same run; and of the format-2.1 tensor digest of that buffer
//! as one payload (spec/slm.md, Digests: 64 KiB chunks hashed together in SIMD lanes), which is
//! what verifying a model's payloads costs.

use super::Stats;
use runtime::format::digest::{tensor_digest, DigestRule};
use sha2::Digest;

/// Bytes in a MiB.
const MIB: usize = 1 << 20;

/// Hashes `mib` MiB `runs` times with each implementation and prints median MB/s (10^6 bytes per
/// second) with the min..max spread, and the ratio ours/sha2; as one JSON object with `json`.
pub fn run(mib: usize, runs: usize, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(mib > 0, "--mib must be at least 1");
    anyhow::ensure!(runs > 0, "--runs must be at least 1");
    let bytes = mib
        .checked_mul(MIB)
        .ok_or_else(|| anyhow::anyhow!("--mib {mib} is too large"))?;
    let data = deterministic_buffer(bytes);

    let ours_digest = runtime::sha256::sha256(&data);
    let sha2_digest: [u8; 32] = sha2::Sha256::digest(&data).into();
    anyhow::ensure!(
        ours_digest == sha2_digest,
        "digests differ: ours {} sha2 {}",
        runtime::sha256::to_hex(&ours_digest),
        runtime::sha256::to_hex(&sha2_digest)
    );

    let ours = Stats::measure(runs, || {
        std::hint::black_box(runtime::sha256::sha256(std::hint::black_box(&data)));
    });
    let theirs = Stats::measure(runs, || {
        std::hint::black_box(sha2::Sha256::digest(std::hint::black_box(&data)));
    });
    let chunked = Stats::measure(runs, || {
        std::hint::black_box(tensor_digest(
            DigestRule::Chunked,
            std::hint::black_box(&data),
        ));
    });

    let megabytes = bytes as f64 / 1e6;
    let (ours_mbs, ours_lo, ours_hi) = ours.rate(megabytes);
    let (sha2_mbs, sha2_lo, sha2_hi) = theirs.rate(megabytes);
    let ratio = ours_mbs / sha2_mbs;
    let (chunked_mbs, chunked_lo, chunked_hi) = chunked.rate(megabytes);
    let sha_extensions = cpu_has_sha_extensions();

    if json {
        let report = serde_json::json!({
            "bench": "sha256",
            "bytes": bytes,
            "runs": runs,
            "digest": runtime::sha256::to_hex(&ours_digest),
            "cpu_sha_extensions": sha_extensions,
            "ours": { "mb_per_s": ours_mbs, "min_mb_per_s": ours_lo, "max_mb_per_s": ours_hi, "stats": ours },
            "sha2": { "mb_per_s": sha2_mbs, "min_mb_per_s": sha2_lo, "max_mb_per_s": sha2_hi, "stats": theirs },
            "ratio_ours_over_sha2": ratio,
            "tensor_digest_2_1": { "mb_per_s": chunked_mbs, "min_mb_per_s": chunked_lo, "max_mb_per_s": chunked_hi, "stats": chunked },
        });
        crate::outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        crate::outln!("sha256: {mib} MiB, {runs} runs (median MB/s, min..max)")?;
        crate::outln!("  ours  {ours_mbs:8.1} MB/s  ({ours_lo:.1}..{ours_hi:.1})")?;
        crate::outln!("  sha2  {sha2_mbs:8.1} MB/s  ({sha2_lo:.1}..{sha2_hi:.1})")?;
        crate::outln!("  ratio ours/sha2 {ratio:.3}")?;
        crate::outln!(
            "  tensor digest (format 2.1, SIMD lanes) {chunked_mbs:8.1} MB/s  ({chunked_lo:.1}..{chunked_hi:.1}), {:.2}x ours",
            chunked_mbs / ours_mbs
        )?;
        if sha_extensions {
            crate::outln!(
                "  note: this CPU has SHA extensions, which sha2 uses and ours does not"
            )?;
        }
    }
    Ok(())
}

/// `len` bytes from a fixed xorshift generator: the same buffer on every run and machine.
fn deterministic_buffer(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(len);
    data
}

/// Whether `sha2` can use hardware SHA-256 instructions here (it picks them at run time).
fn cpu_has_sha_extensions() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        std::arch::is_x86_feature_detected!("sha")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("sha2")
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}
