"""Encoders of spec/tokenizer.md, written from the spec alone: SentencePiece-style scored BPE
(kind 2) and ranked-merge BPE (kind 3). Byte-level (kind 1) needs no code: one id per byte."""

import numpy as np

NORMAL, UNKNOWN, CONTROL, USER, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def id_of(pieces, s):
    for i, (_, _, p) in enumerate(pieces):
        if p == s and len(p) > 0:
            return i
    return None


def spm_encode(pieces, text, add_bos, bos, unk, dummy, fallback):
    out = [bos] if add_bos else []
    if dummy and text:
        text = " " + text
    syms = [c.encode() for c in text]
    while True:
        best = None
        for i in range(len(syms) - 1):
            j = id_of(pieces, syms[i] + syms[i + 1])
            if j is not None:
                sc = np.float32(pieces[j][0])
                if best is None or sc > best[0]:
                    best = (sc, i)
        if best is None:
            break
        i = best[1]
        syms[i:i + 2] = [syms[i] + syms[i + 1]]
    for s in syms:
        j = id_of(pieces, s)
        if j is not None:
            out.append(j)
        elif fallback:
            out += [id_of(pieces, b"<0x%02X>" % b) for b in s]
        else:
            out.append(unk)
    return out


def rm_encode(pieces, merges, text, add_bos, bos):
    out = [bos] if add_bos else []
    rank = {}
    for r, (l, rr) in enumerate(merges):
        rank.setdefault((l, rr), r)
    syms = [id_of(pieces, bytes([b])) for b in text.encode()]
    while True:
        best = None
        for i in range(len(syms) - 1):
            r = rank.get((syms[i], syms[i + 1]))
            if r is not None and (best is None or r < best[0]):
                best = (r, i)
        if best is None:
            break
        r, i = best
        l, rr = merges[r]
        syms[i:i + 2] = [id_of(pieces, pieces[l][2] + pieces[rr][2])]
    return out + syms
