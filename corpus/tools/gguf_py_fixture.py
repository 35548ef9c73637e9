#!/usr/bin/env python3
"""Writes small llama-architecture GGUF models with llama.cpp's own Python package (gguf-py),
for harness/tests/gguf_convert.rs. Usage: gguf_py_fixture.py OUT_DIR

The weights are deterministic (numpy's seeded PCG64) and the same in every model:

  model-f32.gguf, model-f16.gguf, model-q8_0.gguf, model-q4_0.gguf
      every matrix in that type (gguf-py's reference quantizer, gguf.quants.quantize), norms
      f32 (as llama.cpp's converters write them) except in the f16 model, whose norms are f16;
      separate classifier (output.weight).
  tied-q8_0.gguf     as model-q8_0.gguf without output.weight (tied classifier).
  unsupported-q4_1.gguf, unsupported-bf16.gguf
      one matrix (blk.0.ffn_up.weight) in a type .slm does not have.
  arch-gpt2.gguf     model-f32.gguf with general.architecture = "gpt2" (and gpt2.* keys).
  originals.f32      every original f32 tensor, little-endian, concatenated in manifest order.
  manifest.json      gguf-py's version, the shape, and each tensor's name, shape (outermost
                     first) and offset in originals.f32.

Nothing here is committed output: the test writes into a temporary directory.
"""

import json
import sys
from importlib import metadata
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T

SEED = 20240611
DIM, N_LAYERS, N_HEADS, N_KV_HEADS, FFN, CONTEXT = 64, 2, 4, 2, 96, 128
HEAD_DIM = DIM // N_HEADS
KV_DIM = N_KV_HEADS * HEAD_DIM


def vocabulary():
    """<unk>, <s>, </s>, the 256 byte pieces, then ▁-pieces and letters (SentencePiece style)."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [2, 3, 3] + [6] * 256
    words = ["the", "a", "cat", "dog", "sat", "on", "mat", "and", "ran", "happy"]
    pieces = ["\u2581"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + [".", ","]
    for w in words:
        for end in range(1, len(w) + 1):
            p = "\u2581" + w[:end]
            if p not in pieces:
                pieces.append(p)
    tokens += pieces
    types += [1] * len(pieces)
    # Byte and control tokens score 0; longer pieces later, lower score.
    scores = [0.0] * 259 + [-float(i) for i in range(len(pieces))]
    return tokens, scores, types


def weights(vocab_size):
    rng = np.random.default_rng(SEED)

    def mat(rows, cols):
        return (rng.standard_normal((rows, cols)) * 0.2).astype(np.float32)

    def norm():
        return (1.0 + rng.standard_normal(DIM) * 0.05).astype(np.float32)

    out = [("token_embd.weight", mat(vocab_size, DIM))]
    for i in range(N_LAYERS):
        out += [
            (f"blk.{i}.attn_norm.weight", norm()),
            (f"blk.{i}.attn_q.weight", mat(DIM, DIM)),
            (f"blk.{i}.attn_k.weight", mat(KV_DIM, DIM)),
            (f"blk.{i}.attn_v.weight", mat(KV_DIM, DIM)),
            (f"blk.{i}.attn_output.weight", mat(DIM, DIM)),
            (f"blk.{i}.ffn_norm.weight", norm()),
            (f"blk.{i}.ffn_gate.weight", mat(FFN, DIM)),
            (f"blk.{i}.ffn_down.weight", mat(DIM, FFN)),
            (f"blk.{i}.ffn_up.weight", mat(FFN, DIM)),
        ]
    out += [("output_norm.weight", norm()), ("output.weight", mat(vocab_size, DIM))]
    return out


def write(path, arch, tensors, matrix_type, norm_type=T.F32, tied=False, override=None):
    tokens, scores, types = vocabulary()
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("gguf-py fixture")
    w.add_context_length(CONTEXT)
    w.add_embedding_length(DIM)
    w.add_block_count(N_LAYERS)
    w.add_feed_forward_length(FFN)
    w.add_head_count(N_HEADS)
    w.add_head_count_kv(N_KV_HEADS)
    w.add_rope_dimension_count(HEAD_DIM)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    for name, data in tensors:
        if tied and name == "output.weight":
            continue
        qtype = norm_type if data.ndim == 1 else matrix_type
        if override and name == override[0]:
            qtype = override[1]
        q = gguf.quants.quantize(data, qtype)
        if qtype in (T.F32, T.F16):
            w.add_tensor(name, q)
        else:
            w.add_tensor(name, q, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    tokens, _, _ = vocabulary()
    tensors = weights(len(tokens))

    write(out / "model-f32.gguf", "llama", tensors, T.F32)
    write(out / "model-f16.gguf", "llama", tensors, T.F16, norm_type=T.F16)
    write(out / "model-q8_0.gguf", "llama", tensors, T.Q8_0)
    write(out / "model-q4_0.gguf", "llama", tensors, T.Q4_0)
    write(out / "tied-q8_0.gguf", "llama", tensors, T.Q8_0, tied=True)
    write(out / "unsupported-q4_1.gguf", "llama", tensors, T.F32,
          override=("blk.0.ffn_up.weight", T.Q4_1))
    write(out / "unsupported-bf16.gguf", "llama", tensors, T.F32,
          override=("blk.0.ffn_up.weight", T.BF16))
    write(out / "arch-gpt2.gguf", "gpt2", tensors, T.F32)

    manifest = {"gguf_version": metadata.version("gguf"), "numpy_version": np.__version__,
                "vocab_size": len(tokens), "tensors": []}
    offset = 0
    with open(out / "originals.f32", "wb") as f:
        for name, data in tensors:
            f.write(data.astype("<f4").tobytes())
            manifest["tensors"].append({"name": name, "shape": list(data.shape), "offset": offset})
            offset += data.size * 4
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
