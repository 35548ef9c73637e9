#!/usr/bin/env python3
"""Clean-room reference forward pass + sampler for `.slm` files (all three tokenizer kinds),
from spec/determinism.md, spec/math.md, spec/sampling.md, spec/tokenizer.md.

    python3 reference.py MODEL.slm --prompt TEXT [--max-tokens N] [--temperature T]
                         [--top-k K] [--top-p P] [--seed S] [--context C]
    python3 reference.py MODEL.slm --cases CASES.json [--context C]

Prints, as JSON, the prompt ids, generated ids, finish reason and logits digest of each
generation (harness/tests/cleanroom.rs compares them with the runtime's).
"""
import argparse
import hashlib
import json
import struct

import numpy as np

import slmmath as M
import tokenizers

f32 = np.float32
CODE_DTYPE = {0: "f32", 1: "f16", 2: "q4_0", 8: "q8_0"}


# ---------------------------------------------------------------- reading the file
def read_slm(path):
    b = open(path, "rb").read()
    h = {}
    (h["vocab_size"], h["dim"], h["n_layers"], h["n_heads"], h["n_kv_heads"], h["head_dim"],
     h["ffn_dim"], h["max_context"]) = struct.unpack_from("<8I", b, 32)
    h["flags"] = struct.unpack_from("<I", b, 28)[0]
    h["rope_theta"], h["rms_eps"] = (f32(v) for v in struct.unpack_from("<ff", b, 64))
    (tok_off, tok_len), (dir_off, dir_len) = struct.unpack_from("<QQ", b, 96), struct.unpack_from("<QQ", b, 112)
    # tokenizer (only the fields generation needs)
    kind, n, bos, eos, pad, unk, flags, n_stop = struct.unpack_from("<8I", b, tok_off)
    stops = list(struct.unpack_from(f"<{n_stop}I", b, tok_off + 32))
    p = tok_off + 32 + 4 * n_stop + 4
    n_merges = struct.unpack_from("<I", b, p - 4)[0]
    pieces, full = [], []
    for _ in range(n):
        score, typ, ln = struct.unpack_from("<fBH", b, p)
        pieces.append(b[p + 7:p + 7 + ln])
        full.append((score, typ, b[p + 7:p + 7 + ln]))
        p += 7 + ln
    merges = [struct.unpack_from("<II", b, p + 8 * i) for i in range(n_merges)]
    NONE = 0xFFFFFFFF
    tok = dict(kind=kind, bos=bos, eos=eos, unk=None if unk == NONE else unk, add_bos=bool(flags & 1),
               dummy=bool(flags & 2), fallback=bool(flags & 4), stops=stops, pieces=pieces, full=full,
               merges=merges)
    # directory
    cnt = struct.unpack_from("<I", b, dir_off)[0]
    p = dir_off + 4
    tensors = {}
    for _ in range(cnt):
        ln = struct.unpack_from("<H", b, p)[0]
        name = b[p + 2:p + 2 + ln].decode()
        p += 2 + ln
        dt, rank = struct.unpack_from("<BB", b, p)
        p += 2
        dims = struct.unpack_from(f"<{rank}I", b, p)
        p += 4 * rank
        off, length = struct.unpack_from("<QQ", b, p)
        p += 16 + 32
        tensors[name] = Tensor(CODE_DTYPE[dt], dims, b[off:off + length])
    return h, tok, tensors


class Tensor:
    def __init__(self, dtype, dims, raw):
        self.dtype, self.dims = dtype, dims
        rows, cols = (1, dims[0]) if len(dims) == 1 else (dims[0], dims[1])
        self.rows, self.cols = rows, cols
        if dtype == "f32":
            self.w = np.frombuffer(raw, "<f4").reshape(rows, cols).astype(f32)
        elif dtype == "f16":
            self.w = np.frombuffer(raw, "<f2").reshape(rows, cols).astype(f32)  # exact widening
        else:
            bs = 34 if dtype == "q8_0" else 18
            blk = np.frombuffer(raw, np.uint8).reshape(rows, cols // 32, bs)
            self.d = blk[:, :, 0:2].copy().view("<f2")[:, :, 0].astype(f32)  # dw = f32(d)
            if dtype == "q8_0":
                self.q = blk[:, :, 2:].copy().view(np.int8).astype(np.int64)
            else:
                lo = (blk[:, :, 2:] & 15).astype(np.int64) - 8
                hi = (blk[:, :, 2:] >> 4).astype(np.int64) - 8
                self.q = np.concatenate([lo, hi], axis=2)
            # dequantized values: one rounding per element
            self.w = (self.q.astype(f32) * self.d[:, :, None]).astype(f32).reshape(rows, cols)

    def row(self, r):
        return self.w[r].copy()


# ---------------------------------------------------------------- kernels (determinism.md)
def dot16(A, x):
    """16-lane f32 dot product of every row of A with x."""
    A = np.atleast_2d(A)
    prod = (A * x[None, :]).astype(f32)  # each product rounded to f32
    lane = np.zeros((A.shape[0], 16), dtype=f32)
    for i in range(A.shape[1]):
        lane[:, i % 16] = lane[:, i % 16] + prod[:, i]
    return M.combine_lanes(lane)


def round_half_away(t):
    t = np.asarray(t, dtype=np.float64)
    return np.sign(t) * np.floor(np.abs(t) + 0.5)


def quantize_act(x):
    blocks = x.reshape(-1, 32).astype(f32)
    a = np.abs(blocks)
    amax = np.max(np.where(np.isnan(a), f32(0), a), axis=1)  # NaN never compares greater
    d = (amax / f32(127.0)).astype(f32)
    with np.errstate(divide="ignore"):
        idv = np.where(d == 0, f32(0), f32(1.0) / d).astype(f32)
    t = (blocks * idv[:, None]).astype(f32)
    t = np.where(np.isnan(t), f32(0), t)  # NaN -> 0
    qx = np.clip(round_half_away(t), -127, 127).astype(np.int64)
    dx = d.astype(np.float16).astype(f32)
    return qx, dx


def matvec(W, x):
    x = np.asarray(x, dtype=f32)
    if W.dtype in ("f32", "f16"):
        return dot16(W.w, x)
    qx, dx = quantize_act(x)
    acc = np.zeros(W.rows, dtype=f32)
    for b in range(W.cols // 32):
        sumi = (W.q[:, b, :] * qx[b][None, :]).sum(axis=1)  # exact integer
        acc = acc + (sumi.astype(f32) * (W.d[:, b] * dx[b]).astype(f32)).astype(f32)
    return acc.astype(f32)


def rmsnorm(x, w, eps):
    d = x.shape[0]
    ss = dot16(x[None, :], x)[0] / f32(d) + eps
    inv = f32(1.0) / M.sqrt_f32(ss)
    return (w * (inv * x).astype(f32)).astype(f32)


# ---------------------------------------------------------------- forward pass
class Model:
    def __init__(self, path, context=0):
        self.h, self.tok, self.t = read_slm(path)
        h = self.h
        self.ctx = context or h["max_context"]
        hd = h["head_dim"]
        self.freq = [f32(1.0) / M.pow_f32(h["rope_theta"], f32(2 * j) / f32(hd)) for j in range(hd // 2)]
        self.kc = np.zeros((h["n_layers"], self.ctx, h["n_kv_heads"] * hd), dtype=f32)
        self.vc = np.zeros_like(self.kc)
        self.cls = self.t["token_embd.weight"] if h["flags"] & 1 else self.t["output.weight"]

    def rope(self, vec, nheads, c, s):
        hd = self.h["head_dim"]
        v = vec.reshape(nheads, hd // 2, 2)
        v0, v1 = v[:, :, 0].copy(), v[:, :, 1].copy()
        r0 = ((v0 * c).astype(f32) - (v1 * s).astype(f32)).astype(f32)
        r1 = ((v0 * s).astype(f32) + (v1 * c).astype(f32)).astype(f32)
        return np.stack([r0, r1], axis=2).reshape(-1).astype(f32)

    def step(self, token, pos, want_logits=True):
        h, t = self.h, self.t
        hd, nh, nkv = h["head_dim"], h["n_heads"], h["n_kv_heads"]
        G = nh // nkv
        eps = h["rms_eps"]
        x = t["token_embd.weight"].row(token)
        ang = [f32(pos) * fr for fr in self.freq]
        c = np.array([M.cos_f32(a) for a in ang], dtype=f32)
        s = np.array([M.sin_f32(a) for a in ang], dtype=f32)
        scale = M.sqrt_f32(f32(hd))
        for l in range(h["n_layers"]):
            p = f"blk.{l}."
            xb = rmsnorm(x, t[p + "attn_norm.weight"].w[0], eps)
            q = matvec(t[p + "attn_q.weight"], xb)
            k = matvec(t[p + "attn_k.weight"], xb)
            v = matvec(t[p + "attn_v.weight"], xb)
            q = self.rope(q, nh, c, s)
            self.kc[l, pos] = self.rope(k, nkv, c, s)
            self.vc[l, pos] = v
            out = np.zeros(nh * hd, dtype=f32)
            for hh in range(nh):
                kvh = hh // G
                qh = q[hh * hd:(hh + 1) * hd]
                K = self.kc[l, :pos + 1, kvh * hd:(kvh + 1) * hd]
                Vv = self.vc[l, :pos + 1, kvh * hd:(kvh + 1) * hd]
                score = (dot16(K, qh) / scale).astype(f32)
                a = M.softmax_in_place(score)
                o = np.zeros(hd, dtype=f32)
                for tau in range(pos + 1):
                    o = (o + (a[tau] * Vv[tau]).astype(f32)).astype(f32)
                out[hh * hd:(hh + 1) * hd] = o
            x = (x + matvec(t[p + "attn_output.weight"], out)).astype(f32)
            xb = rmsnorm(x, t[p + "ffn_norm.weight"].w[0], eps)
            g = matvec(t[p + "ffn_gate.weight"], xb)
            u = matvec(t[p + "ffn_up.weight"], xb)
            g = np.array([M.silu_f32(z) for z in g], dtype=f32)
            g = (g * u).astype(f32)
            x = (x + matvec(t[p + "ffn_down.weight"], g)).astype(f32)
        if not want_logits:
            return None
        xb = rmsnorm(x, t["output_norm.weight"].w[0], eps)
        return matvec(self.cls, xb)


# ---------------------------------------------------------------- sampling (sampling.md)
class Rng:
    def __init__(self, seed):
        self.s = seed & (2 ** 64 - 1)

    def coin(self):
        s = self.s
        s ^= s >> 12
        s ^= (s << 25) & (2 ** 64 - 1)
        s ^= s >> 27
        self.s = s
        u32 = ((s * 0x2545F4914F6CDD1D) & (2 ** 64 - 1)) >> 32
        return f32(u32 >> 8) / f32(16777216.0)


def rank_key(vals, i):
    v = vals[i]
    return (0 if np.isnan(v) else 1, v if not np.isnan(v) else 0.0, -i)


def ranked(vals, ids):
    return sorted(ids, key=lambda i: rank_key(vals, i), reverse=True)


def greedy(vals):
    best = 0
    for i in range(1, len(vals)):
        if rank_key(vals, i) > rank_key(vals, best):
            best = i
    return best


def nucleus(cands, p, coin, top_p):
    mass = f32(0)
    last = len(cands) - 1
    for j in range(len(cands)):
        mass = f32(mass + p[j])
        if mass > top_p:
            last = j
            break
    r = f32(coin * mass)
    cdf = f32(0)
    for j in range(last + 1):
        cdf = f32(cdf + p[j])
        if r < cdf:
            return cands[j]
    return cands[last]


def sample(logits, temp, top_k, top_p, rng):
    V = len(logits)
    if temp == 0:
        return greedy(logits)
    if top_k is not None:
        k = min(top_k, V)
        cands = ranked(logits, range(V))[:k]
        p = M.softmax_in_place(np.array([logits[i] / temp for i in cands], dtype=f32))
        coin = rng.coin()
        if top_p == 1:
            cdf = f32(0)
            for j, c in enumerate(cands):
                cdf = f32(cdf + p[j])
                if coin < cdf:
                    return c
            return cands[-1]
        return nucleus(cands, p, coin, top_p)
    p = M.softmax_in_place((logits / temp).astype(f32))
    coin = rng.coin()
    if top_p == 1:
        cdf = f32(0)
        for i in range(V):
            cdf = f32(cdf + p[i])
            if coin < cdf:
                return i
        return V - 1
    if V == 1:
        return 0
    cutoff = (f32(1) - top_p) / f32(V - 1)
    keep = [i for i in range(V) if p[i] >= cutoff]
    if not keep:
        return greedy(p)
    cands = ranked(p, keep)
    return nucleus(cands, [p[i] for i in cands], coin, top_p)


# ---------------------------------------------------------------- generation
def generate(path, prompt, max_new=24, temp=0.0, top_k=None, top_p=1.0, seed=1, context=0):
    m = Model(path, context)
    tok = m.tok
    if tok["kind"] == 1:
        ids = ([tok["bos"]] if tok["add_bos"] else []) + list(prompt.encode("utf-8"))
    elif tok["kind"] == 2:
        ids = tokenizers.spm_encode(tok["full"], prompt, tok["add_bos"], tok["bos"], tok["unk"], tok["dummy"],
                                  tok["fallback"])
    else:
        ids = tokenizers.rm_encode(tok["full"], tok["merges"], prompt, tok["add_bos"], tok["bos"])
    if not ids:
        raise ValueError("InvalidArgument: no token")
    if len(ids) > m.ctx:
        raise ValueError(f"ContextExceeded: the prompt has {len(ids)} tokens; the context holds {m.ctx}")
    temp, top_p = f32(temp), f32(top_p)
    rng = Rng(seed)
    dig = hashlib.sha256()
    for pos, t in enumerate(ids[:-1]):
        m.step(t, pos, want_logits=False)
    pos = len(ids) - 1
    cur = ids[-1]
    out, finish = [], None
    while True:
        if pos >= m.ctx:
            finish = "context_full"
            break
        logits = m.step(cur, pos)
        dig.update(logits.astype("<f4").tobytes())
        nxt = sample(logits.copy(), temp, top_k, top_p, rng)
        if nxt in tok["stops"]:
            finish = "stop"
            break
        out.append(nxt)
        if len(out) >= max_new:
            finish = "max_tokens"
            break
        cur, pos = nxt, pos + 1
    return dict(prompt_tokens=ids, tokens=out, finish=finish, logits_digest=dig.hexdigest())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--prompt", default="")
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--top-k", type=int, default=None)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--context", type=int, default=0)
    ap.add_argument("--cases", help="a JSON file: a list of {prompt, max_new_tokens, temperature, "
                    "top_k, top_p, seed}; prints a JSON list of results (or {\"error\": ...})")
    a = ap.parse_args()
    if a.cases:
        results = []
        for c in json.load(open(a.cases)):
            try:
                results.append(generate(a.model, c["prompt"], c["max_new_tokens"], c["temperature"],
                                        c["top_k"], c["top_p"], c["seed"], a.context))
            except ValueError as e:
                results.append({"error": str(e)})
        print(json.dumps(results))
        return
    r = generate(a.model, a.prompt, a.max_tokens, a.temperature, a.top_k, a.top_p, a.seed, a.context)
    print(json.dumps(r))


if __name__ == "__main__":
    main()
