#!/usr/bin/env python3
"""Clean-room writer of `.slm` format-2 files, written from spec/slm.md and spec/determinism.md only.

Writes a tiny Llama-style model with a byte-level tokenizer (kind 1), or one of the small
vocabularies of tokenizers.py (kinds 2 and 3), and deterministic pseudo-random weights from its
own splitmix64 generator.

    python3 slm_writer.py OUT.slm [--dtype f32|f16|q8_0|q4_0] [--tied] [--tokenizer byte|spm|rm] [--seed N]
                          [--dim 64 --layers 2 --heads 4 --kv-heads 2 --head-dim 16 --ffn 96 --ctx 64]
"""
import argparse
import hashlib
import struct

import numpy as np

MAGIC = b"\x89SLM\r\n\x1a\n"
ALIGN = 64
DTYPE_CODE = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 8}


def align(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


# ---------------------------------------------------------------- own seeded generator
def splitmix64(seed, n):
    """n uint64 outputs of splitmix64 started at `seed` (vectorised over the counter)."""
    with np.errstate(over="ignore"):
        ctr = np.arange(1, n + 1, dtype=np.uint64)
        z = np.uint64(seed) + ctr * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z


def uniform(seed, shape, scale):
    """f32 values uniform in [-scale, scale): 24 random bits → [0,1) exactly, then affine in f64, rounded once."""
    n = int(np.prod(shape))
    u = (splitmix64(seed, n) >> np.uint64(40)).astype(np.float64) / float(1 << 24)
    return ((u * 2.0 - 1.0) * scale).astype(np.float32).reshape(shape)


# ---------------------------------------------------------------- element encodings
def round_half_away(t):
    t = np.asarray(t, dtype=np.float64)  # exact widening; +0.5 is exact in f64 for |t| < 2^52
    return np.sign(t) * np.floor(np.abs(t) + 0.5)


def quantize_q8_0(w):
    """determinism.md, Weight quantization, q8_0 (all f32 arithmetic)."""
    rows, cols = w.shape
    blocks = w.reshape(rows * cols // 32, 32).astype(np.float32)
    amax = np.max(np.abs(blocks), axis=1)
    d = (amax / np.float32(127.0)).astype(np.float32)
    with np.errstate(divide="ignore"):
        idv = np.where(d == 0, np.float32(0), np.float32(1.0) / d).astype(np.float32)
    t = (blocks * idv[:, None]).astype(np.float32)
    q = np.clip(round_half_away(t), -127, 127).astype(np.int8)
    out = np.zeros((blocks.shape[0], 34), dtype=np.uint8)
    out[:, 0:2] = d.astype("<f2").view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q.view(np.uint8)
    return out.tobytes()


def quantize_q4_0(w):
    """determinism.md, Weight quantization, q4_0."""
    rows, cols = w.shape
    blocks = w.reshape(rows * cols // 32, 32).astype(np.float32)
    k = np.argmax(np.abs(blocks), axis=1)  # first index of the maximum magnitude
    mx = blocks[np.arange(blocks.shape[0]), k]
    d = (mx / np.float32(-8.0)).astype(np.float32)
    with np.errstate(divide="ignore"):
        idv = np.where(d == 0, np.float32(0), np.float32(1.0) / d).astype(np.float32)
    t = (blocks * idv[:, None]).astype(np.float32)
    t = (t + np.float32(8.5)).astype(np.float32)
    c = np.minimum(15, np.trunc(t)).astype(np.uint8)
    out = np.zeros((blocks.shape[0], 18), dtype=np.uint8)
    out[:, 0:2] = d.astype("<f2").view(np.uint8).reshape(-1, 2)
    out[:, 2:] = c[:, :16] | (c[:, 16:] << 4)
    return out.tobytes()


def encode_tensor(w, dtype):
    if dtype == "f32":
        return w.astype("<f4").tobytes()
    if dtype == "f16":
        return w.astype("<f2").tobytes()  # numpy rounds to nearest even (determinism.md)
    if dtype == "q8_0":
        return quantize_q8_0(w)
    if dtype == "q4_0":
        return quantize_q4_0(w)
    raise ValueError(dtype)


# ---------------------------------------------------------------- model
def build_tensors(cfg, seed):
    """[(name, f32 array)] in the table order of slm.md, Architecture 1."""
    V, D, F = cfg["vocab_size"], cfg["dim"], cfg["ffn_dim"]
    qd = cfg["n_heads"] * cfg["head_dim"]
    kvd = cfg["n_kv_heads"] * cfg["head_dim"]
    s = [seed]

    def nxt():
        s[0] += 1
        return s[0] * 1000003

    def mat(r, c):
        return uniform(nxt(), (r, c), cfg.get("gain", 1.0) / np.sqrt(c))

    def norm(n):
        return (np.float32(1.0) + uniform(nxt(), (n,), 0.2)).astype(np.float32)

    t = [("token_embd.weight", uniform(nxt(), (V, D), cfg.get("embd_scale", 1.0)))]
    for i in range(cfg["n_layers"]):
        p = f"blk.{i}."
        t += [
            (p + "attn_norm.weight", norm(D)),
            (p + "attn_q.weight", mat(qd, D)),
            (p + "attn_k.weight", mat(kvd, D)),
            (p + "attn_v.weight", mat(kvd, D)),
            (p + "attn_output.weight", mat(D, qd)),
            (p + "ffn_norm.weight", norm(D)),
            (p + "ffn_gate.weight", mat(F, D)),
            (p + "ffn_down.weight", mat(D, F)),
            (p + "ffn_up.weight", mat(F, D)),
        ]
    t.append(("output_norm.weight", norm(D)))
    if not cfg["tied"]:
        t.append(("output.weight", mat(V, D)))
    return t


def byte_level_vocab(vocab_size):
    """Kind 1: ids 0..=255 are the bytes (type 6 = byte), the rest control (type 3)."""
    names = ["<s>", "</s>", "<pad>", "<unk>"]
    pieces = []
    for i in range(vocab_size):
        if i < 256:
            pieces.append((0.0, 6, bytes([i])))
        else:
            j = i - 256
            pieces.append((0.0, 3, (names[j] if j < len(names) else f"<ctl{j}>").encode()))
    return pieces


def tokenizer_section(vocab_size, bos, eos, add_bos=True, stop=None):
    NONE = 0xFFFFFFFF
    stop = [eos] if stop is None else stop
    b = struct.pack("<I", 1)  # kind 1 byte-level
    b += struct.pack("<I", vocab_size)
    b += struct.pack("<4I", bos, eos, NONE, NONE)  # bos, eos, pad, unk
    b += struct.pack("<I", 1 if add_bos else 0)  # flags: bit 0 add_bos
    b += struct.pack("<I", len(stop)) + b"".join(struct.pack("<I", s) for s in stop)
    b += struct.pack("<I", 0)  # n_merges
    for score, typ, piece in byte_level_vocab(vocab_size):
        b += struct.pack("<fBH", score, typ, len(piece)) + piece
    return b


def metadata_section(entries):
    items = sorted((k.encode(), v.encode("utf-8")) for k, v in entries.items())
    b = struct.pack("<I", len(items))
    for k, v in items:
        b += struct.pack("<H", len(k)) + k + struct.pack("<I", len(v)) + v
    return b


def dtype_for(dtype, name):
    """dtype is one dtype, or a mixed map like "token_embd=f16,attn=q8_0,ffn=q4_0,output=f32"
    (the first key that is a substring of the tensor name wins; default f32)."""
    if "=" not in dtype:
        return dtype
    for item in dtype.split(","):
        k, v = item.split("=")
        if k in name:
            return v
    return "f32"


def generic_tokenizer_section(kind, pieces, bos=None, eos=None, pad=None, unk=None, flags=0, stops=(), merges=()):
    """pieces: [(score, type, bytes)]; merges: [(left, right)] (kind 3 only)."""
    NONE = 0xFFFFFFFF
    opt = lambda v: NONE if v is None else v
    b = struct.pack("<6I", kind, len(pieces), opt(bos), opt(eos), opt(pad), opt(unk))
    b += struct.pack("<II", flags, len(stops)) + b"".join(struct.pack("<I", s) for s in stops)
    b += struct.pack("<I", len(merges))
    for score, typ, piece in pieces:
        b += struct.pack("<fBH", score, typ, len(piece)) + piece
    for l, r in merges:
        b += struct.pack("<II", l, r)
    return b


CHUNK = 65536  # spec/slm.md, Digests: DIGEST_CHUNK_BYTES


def tensor_digest(data):
    """Format 2.1: SHA-256 of the SHA-256s of the payload's 64 KiB chunks, in order."""
    chunks = b"".join(hashlib.sha256(data[i:i + CHUNK]).digest() for i in range(0, len(data), CHUNK))
    return hashlib.sha256(chunks).digest()


def write_slm(path, cfg, tensors, dtype, meta, tok=None):
    md = metadata_section(meta)
    if tok is None:
        tok = tokenizer_section(cfg["vocab_size"], cfg["bos"], cfg["eos"])

    payloads = []
    for name, w in tensors:
        dt = "f32" if w.ndim == 1 else dtype_for(dtype, name)  # norm weights MUST be f32
        payloads.append((name, dt, w.shape, encode_tensor(w, dt)))

    md_off = 256
    tok_off = align(md_off + len(md))
    dir_off = align(tok_off + len(tok))

    # directory length does not depend on the offsets, so compute it with placeholders first
    def directory(offsets):
        b = struct.pack("<I", len(payloads))
        for (name, dt, shape, data), off in zip(payloads, offsets):
            nb = name.encode()
            b += struct.pack("<H", len(nb)) + nb
            b += struct.pack("<BB", DTYPE_CODE[dt], len(shape))
            b += b"".join(struct.pack("<I", d) for d in shape)
            b += struct.pack("<QQ", off, len(data)) + tensor_digest(data)
        return b

    dir_len = len(directory([0] * len(payloads)))
    data_off = align(dir_off + dir_len)
    offsets, pos = [], data_off
    for _, _, _, data in payloads:
        pos = align(pos)
        offsets.append(pos)
        pos += len(data)
    data_end = pos
    dirb = directory(offsets)
    assert len(dirb) == dir_len

    f = bytearray(data_end)
    f[md_off:md_off + len(md)] = md
    f[tok_off:tok_off + len(tok)] = tok
    f[dir_off:dir_off + dir_len] = dirb
    for (_, _, _, data), off in zip(payloads, offsets):
        f[off:off + len(data)] = data

    hdr = bytearray(256)
    hdr[0:8] = MAGIC
    struct.pack_into("<HHIQ", hdr, 8, 2, 1, 256, data_end)  # format 2.1
    struct.pack_into("<II", hdr, 24, 1, 1 if cfg["tied"] else 0)
    struct.pack_into("<8I", hdr, 32, cfg["vocab_size"], cfg["dim"], cfg["n_layers"], cfg["n_heads"],
                     cfg["n_kv_heads"], cfg["head_dim"], cfg["ffn_dim"], cfg["max_context"])
    struct.pack_into("<ff", hdr, 64, cfg["rope_theta"], cfg["rms_eps"])
    struct.pack_into("<QQQQQQQQ", hdr, 80, md_off, len(md), tok_off, len(tok), dir_off, dir_len,
                     data_off, data_end - data_off)
    f[0:256] = hdr
    # Format 2.1: the file digest covers every byte before the data section but the digest field.
    digest = hashlib.sha256(bytes(f[0:224]) + bytes(f[256:data_off])).digest()
    f[224:256] = digest
    with open(path, "wb") as fh:
        fh.write(f)
    return digest.hex()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--dtype", default="f32", help="f32|f16|q8_0|q4_0 or a mixed map key=dtype,...")
    ap.add_argument("--tied", action="store_true")
    ap.add_argument("--tokenizer", default="byte", choices=["byte", "spm", "rm"],
                    help="byte-level (kind 1), or the small vocabularies of tokenizers.py: "
                         "SentencePiece-style (kind 2) or ranked-merge (kind 3)")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--vocab", type=int, default=260)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=16)
    ap.add_argument("--ffn", type=int, default=96)
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--rms-eps", type=float, default=1e-5)
    ap.add_argument("--gain", type=float, default=1.0, help="scale of the matrices' weights")
    ap.add_argument("--embd-scale", type=float, default=1.0)
    a = ap.parse_args()
    cfg = dict(vocab_size=a.vocab, dim=a.dim, n_layers=a.layers, n_heads=a.heads, n_kv_heads=a.kv_heads,
               head_dim=a.head_dim, ffn_dim=a.ffn, max_context=a.ctx, rope_theta=a.rope_theta, rms_eps=a.rms_eps,
               gain=a.gain, embd_scale=a.embd_scale,
               tied=a.tied, bos=256, eos=257)
    tok = None
    if a.tokenizer != "byte":
        import tokenizers
        pieces, fields = tokenizers.spm_vocab() if a.tokenizer == "spm" else tokenizers.rm_vocab()
        kind = 2 if a.tokenizer == "spm" else 3
        cfg["vocab_size"] = len(pieces)
        tok = generic_tokenizer_section(kind, pieces, **fields)
    tensors = build_tensors(cfg, a.seed)
    meta = {"name": f"cleanroom-{a.tokenizer}-{a.dtype}{'-tied' if a.tied else ''}", "kind": "fixture",
            "converter": "cleanroom slm_writer.py", "source": f"splitmix64 seed {a.seed}"}
    print(write_slm(a.out, cfg, tensors, a.dtype, meta, tok=tok))


if __name__ == "__main__":
    main()
