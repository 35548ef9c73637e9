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


# ---------------------------------------------------------------- small vocabularies for models
def spm_vocab():
    """A SentencePiece-style (kind 2) vocabulary: <unk>, <s>, </s>, the 256 byte pieces, then
    scored pieces with merges to find, user-defined and unused pieces, signed zero scores and a
    duplicate piece. Returns (pieces, tokenizer fields for slm_writer.generic_tokenizer_section)."""
    p = [(0.0, UNKNOWN, b"<unk>"), (0.0, CONTROL, b"<s>"), (0.0, CONTROL, b"</s>")]
    p += [(0.0, BYTE, b"<0x%02X>" % b) for b in range(256)]
    extra = [(-1, NORMAL, " "), (-2, NORMAL, "a"), (-2, NORMAL, "b"), (-2, NORMAL, "c"), (-3, NORMAL, "h"),
             (-3, NORMAL, "e"), (-3, NORMAL, "l"), (-3, NORMAL, "o"), (5, NORMAL, "ab"), (5, NORMAL, "bc"),
             (6, NORMAL, "abc"), (4, NORMAL, " a"), (7, NORMAL, " ab"), (1, NORMAL, "he"), (2, NORMAL, "ll"),
             (3, NORMAL, "hell"), (4, NORMAL, "hello"), (9, NORMAL, " hello"), (0, NORMAL, "é"),
             (-1, NORMAL, "<"), (-1, NORMAL, "s"), (-1, NORMAL, ">"), (2, NORMAL, "<s"),
             (0, USER, "@"), (8, USER, "@@"), (0, UNUSED, "z"), (8, UNUSED, "zz"), (-0.0, NORMAL, "x"),
             (0.0, NORMAL, "xx"), (-0.0, NORMAL, "cc"), (0.0, NORMAL, "bb"), (6, NORMAL, "ab"),
             (1, NORMAL, "T"), (1, NORMAL, "he "), (2, NORMAL, "d"), (2, NORMAL, "og")]
    p += [(s, t, x.encode()) for s, t, x in extra]
    # add_bos, add_dummy_prefix, byte_fallback; stop on </s>
    return p, dict(bos=1, eos=2, unk=0, flags=0b111, stops=[2])


def rm_vocab():
    """A ranked-merge (kind 3) vocabulary: the 256 bytes, <|bos|>, merged pieces and merges
    (one listed twice: the first rank counts). Returns (pieces, tokenizer fields)."""
    p = [(0.0, NORMAL, bytes([b])) for b in range(256)] + [(0.0, CONTROL, b"<|bos|>")]
    for a in [b"ab", b"abc", b"a ", b" a", b"aa", b"aaa", b"aaaa", b"bc", b" ab", b"\xc3\xa9", b"<|end|>"]:
        p.append((0.0, CONTROL if a == b"<|end|>" else NORMAL, a))
    ID = lambda s: id_of(p, s)
    merges = [(ID(b"a"), ID(b"b")), (ID(b"b"), ID(b"c")), (ID(b"ab"), ID(b"c")), (ID(b" "), ID(b"a")),
              (ID(b"a"), ID(b" ")), (ID(b"a"), ID(b"a")), (ID(b"aa"), ID(b"a")), (ID(b"aa"), ID(b"aa")),
              (ID(b" a"), ID(b"b")), (ID(b"a"), ID(b"b")), (0xC3, 0xA9)]
    return p, dict(bos=256, eos=ID(b"<|end|>"), flags=0b001, stops=[ID(b"<|end|>")], merges=merges)
