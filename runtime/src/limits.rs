//! Every cap of the runtime, in one place. spec/slm.md (Limits) and spec/abi.md name the same
//! constants; a value changes here and there together.

/// The selector budget: no .slm file may be larger (bytes).
pub const MAX_MODEL_BYTES: u64 = 33_554_432;
/// Size of the fixed .slm header (bytes).
pub const HEADER_BYTES: usize = 256;
/// Alignment of every section and tensor payload (bytes).
pub const ALIGNMENT: u64 = 64;
/// Chunk size of the format-2.1 tensor digest: a payload is hashed in chunks of this many bytes
/// (the last may be shorter), then the chunk digests are hashed (spec/slm.md, Digests).
pub const DIGEST_CHUNK_BYTES: usize = 65_536;

/// Tensors in one directory.
pub const MAX_TENSORS: u32 = 1024;
/// Bytes in a tensor name.
pub const MAX_TENSOR_NAME_BYTES: usize = 96;
/// Dimensions of a tensor.
pub const MAX_RANK: usize = 4;

/// Vocabulary size.
pub const MAX_VOCAB: u32 = 131_072;
/// Model width (`dim`).
pub const MAX_DIM: u32 = 16_384;
/// Decoder layers.
pub const MAX_LAYERS: u32 = 256;
/// Attention heads.
pub const MAX_HEADS: u32 = 256;
/// Width of one head.
pub const MAX_HEAD_DIM: u32 = 1024;
/// FFN hidden width.
pub const MAX_FFN_DIM: u32 = 65_536;
/// Context length (positions).
pub const MAX_CONTEXT: u32 = 32_768;

/// Bytes of the whole metadata section.
pub const MAX_METADATA_BYTES: u64 = 65_536;
/// Metadata entries.
pub const MAX_METADATA_ENTRIES: u32 = 64;
/// Bytes in a metadata key.
pub const MAX_METADATA_KEY_BYTES: usize = 64;
/// Bytes in a metadata value.
pub const MAX_METADATA_VALUE_BYTES: usize = 4096;

/// Bytes of the whole tokenizer section.
pub const MAX_TOKENIZER_BYTES: u64 = 8_388_608;
/// Bytes in one token piece.
pub const MAX_PIECE_BYTES: usize = 256;
/// Stop tokens.
pub const MAX_STOP_TOKENS: u32 = 16;
/// Ranked merges of a ranked-merge BPE vocabulary.
pub const MAX_MERGES: u32 = 262_144;

/// Bytes of prompt text accepted by a generation.
pub const MAX_PROMPT_BYTES: usize = 16_384;
/// Bytes of text one generation may produce (the original's 64 KiB).
pub const MAX_OUTPUT_BYTES: usize = 65_536;
/// Tokens one generation may produce.
pub const MAX_NEW_TOKENS: u32 = 8_192;
/// Largest top-k.
pub const MAX_TOP_K: u32 = 1024;

// Adapters and module plans (spec/adapters.md, Limits).

/// Largest adapter file the runtime reads (bytes): the model budget.
pub const MAX_ADAPTER_BYTES: u64 = 33_554_432;
/// The selector's adapter auto-apply budget (bytes): larger adapters are never applied unasked.
pub const ADAPTER_AUTO_APPLY_BYTES: u64 = 1_048_576;
/// Size of the fixed adapter header (bytes).
pub const ADAPTER_HEADER_BYTES: usize = 128;
/// Tensor records in one adapter.
pub const MAX_ADAPTER_TENSORS: u32 = 1024;
/// Rank of one low-rank (ALR1) record.
pub const MAX_ADAPTER_RANK: u32 = 256;
/// Modules in one plan.
pub const MAX_PLAN_MODULES: usize = 16;
/// Bytes of a plan or receipt (canonical text).
pub const MAX_PLAN_BYTES: usize = 8192;

// abi (spec/abi.md, Host buffers).

/// Bytes of one host buffer (`trlm_alloc`): a whole model fits in one.
pub const MAX_ABI_BUFFER_BYTES: u32 = 33_554_432;
/// Bytes of all live host buffers together.
pub const MAX_ABI_BUFFER_TOTAL_BYTES: u64 = 67_108_864;
/// Live host buffers.
pub const MAX_ABI_BUFFERS: usize = 1024;

// abi adapters (spec/abi.md, Adapters).

/// Bytes of the modules of one plan staged through the ABI (`trlm_plan_begin`), together.
pub const MAX_PLAN_STAGED_BYTES: u64 = 33_554_432;

// model::batch (spec/determinism.md, Prefill).

/// Prompt tokens one batched prefill pass runs through each weight matrix (each weight row is
/// read once per pass and dotted with every token's activation): 16 on x86-64, where the AVX2
/// q4_0 kernel unpacks a row block once for two groups of eight tokens; 8 elsewhere, where no
/// kernel gains from more (the simd128 kernels share a row block between two groups of four),
/// and wasm memory is budgeted to the page. The results do not depend on it: batched prefill
/// gives the bits of token-serial prefill (spec/determinism.md, Prefill).
pub const PREFILL_BATCH: usize = if cfg!(target_arch = "x86_64") { 16 } else { 8 };

/// The largest group of four q8_0 or q4_0 rows (bytes) the wasm simd128 module stores
/// interleaved (runtime/src/model/interleave.rs): a matrix with longer rows (q8_0 rows of more
/// than 3,840 columns, q4_0 rows of more than 7,264) keeps the file's order. The load rearranges
/// each group through one scratch buffer of this size at most, freed when the model is built.
pub const INTERLEAVE_MAX_GROUP_BYTES: usize = 16_384;

// harden: abi memory headroom (spec/abi.md, Memory; runtime/src/abi/headroom.rs).

/// Bytes that must still be obtainable after an ABI call grew memory (a host buffer, a chunked
/// load's reservation, a model, a session, a started generation); else the call fails with
/// `OutOfMemory` and is undone. Allocations that cannot fail cleanly are taken from it: error
/// messages, buffer bookkeeping and the diagnostics text (a few KiB). Prompt encoding reserves
/// its memory fallibly, and a session's generated text and tokens are reserved when it is made.
pub const ABI_HEADROOM_BYTES: usize = 262_144;
/// Bytes to have obtainable before a model is built beyond its per-token, per-merge,
/// per-tensor and per-layer tables (runtime/src/abi/headroom.rs): the tokenizer's dense ASCII
/// table (66 KiB), metadata, the model's name and the small fixed tables.
pub const MODEL_BUILD_FIXED_BYTES: usize = 131_072;
/// Machine words one heap allocation may cost beyond its bytes (the allocator's header, its
/// rounding and its minimum chunk), when the build's tables are bounded.
pub const ALLOCATION_OVERHEAD_WORDS: usize = 4;

// vocab: memory probes (spec/abi.md, Memory; runtime/src/abi/headroom.rs).

/// Largest piece a memory probe allocates (bytes): just under a wasm page, so that the probe
/// takes the allocator's free memory first and grows the memory a page at a time.
pub const ABI_PROBE_PIECE_BYTES: usize = 61_440;
