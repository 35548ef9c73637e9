"""spec/math.md, transcribed: exp/ln/pow/sin/cos/sqrt/silu on f32 via exact binary64 kernels,
sum_f32 and softmax_in_place. Python floats are IEEE binary64 with no FMA; numpy float32
scalar/elementwise operations are single correctly rounded binary32 operations."""
import struct

import numpy as np

f32 = np.float32


def _d(bits):
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


INV_LN2 = _d(0x3FF71547652B82FE)
LN2_HI = _d(0x3FE62E42FEE00000)
LN2_LO = _d(0x3DEA39EF35793C76)
SQRT2 = _d(0x3FF6A09E667F3BCD)
PIO2 = _d(0x3FF921FB54442D18)
TWO_OVER_PI = int("a2f9836e4e441529fc2757d1f534ddc0db6295993c439041fe5163abdebbc561", 16)  # bits 1..256

EXP = [_d(b) for b in (0x3ff0000000000000, 0x3ff0000000000000, 0x3fe0000000000000,
                       0x3fc5555555555555, 0x3fa5555555555555, 0x3f81111111111111, 0x3f56c16c16c16c17,
                       0x3f2a01a01a01a01a, 0x3efa01a01a01a01a, 0x3ec71de3a556c734, 0x3e927e4fb7789f5c,
                       0x3e5ae64567f544e4, 0x3e21eed8eff8d898, 0x3de6124613a86d09)]
LN = [_d(b) for b in (0x3fe5555555555555, 0x3fd999999999999a, 0x3fd2492492492492, 0x3fcc71c71c71c71c,
                      0x3fc745d1745d1746, 0x3fc3b13b13b13b14, 0x3fc1111111111111, 0x3fbe1e1e1e1e1e1e,
                      0x3fbaf286bca1af28, 0x3fb8618618618618, 0x3fb642c8590b2164)]
SIN = [_d(b) for b in (0xbfc5555555555555, 0x3f81111111111111, 0xbf2a01a01a01a01a, 0x3ec71de3a556c734,
                       0xbe5ae64567f544e4, 0x3de6124613a86d09, 0xbd6ae7f3e733b81f, 0x3ce952c77030ad4a)]
COS = [_d(b) for b in (0xbfe0000000000000, 0x3fa5555555555555, 0xbf56c16c16c16c17, 0x3efa01a01a01a01a,
                       0xbe927e4fb7789f5c, 0x3e21eed8eff8d898, 0xbda93974a8c07c9d, 0x3d2ae7f3e733b81f)]


def horner(v, c):
    acc = 0.0
    for j in range(len(c) - 1, -1, -1):
        acc = acc * v + c[j]
    return acc


def pow2(k):
    return _d((k + 1023) << 52)  # exact for -1022 <= k <= 1023


def exp64(x):
    v = x * INV_LN2
    k = int(v + 0.5) if v >= 0 else int(v - 0.5)  # int() truncates
    kf = float(k)
    r = (x - kf * LN2_HI) - kf * LN2_LO
    return horner(r, EXP) * pow2(k)


def ln64(x):
    bits = struct.unpack("<Q", struct.pack("<d", x))[0]
    e = ((bits >> 52) & 0x7FF) - 1023
    m = _d((bits & ((1 << 52) - 1)) | (1023 << 52))
    if m > SQRT2:
        m = m * 0.5
        e = e + 1
    s = (m - 1.0) / (m + 1.0)
    z = s * s
    ln_m = (2.0 * s) + ((s * z) * horner(z, LN))
    ef = float(e)
    return ef * LN2_HI + (ef * LN2_LO + ln_m)


def f32bits(x):
    return int(np.array([x], dtype=np.float32).view(np.uint32)[0])


def reduce(a):
    """a = |x| (np.float32, finite) -> (q, r)"""
    b = f32bits(a)
    if b <= 0x3F490FDA:
        return 0, float(a)
    ef = (b >> 23) & 0xFF
    M = (b & 0x7FFFFF) | (1 << 23)  # a >= pi/4 is always normal
    E = ef - 150
    W = (TWO_OVER_PI >> (130 - E)) & ((1 << 128) - 1)  # bits numbered E-1 .. E+126
    P = (M * W) & ((1 << 128) - 1)
    q = P >> 126
    f = P & ((1 << 126) - 1)
    if f >= (1 << 125):
        q += 1
        f -= 1 << 126
    r = (float(f) * 2.0 ** -126) * PIO2
    return q % 4, r


def sin_k(r):
    z = r * r
    return r + (r * z) * horner(z, SIN)


def cos_k(r):
    z = r * r
    return 1.0 + z * horner(z, COS)


def sin_f32(x):
    x = f32(x)
    if np.isnan(x) or np.isinf(x):
        return f32(np.nan)
    if x == 0:
        return x
    q, r = reduce(abs(x))
    v = [sin_k(r), cos_k(r), -sin_k(r), -cos_k(r)][q]
    v = f32(v)
    return -v if np.signbit(x) else v


def cos_f32(x):
    x = f32(x)
    if np.isnan(x) or np.isinf(x):
        return f32(np.nan)
    q, r = reduce(abs(x))
    return f32([cos_k(r), -sin_k(r), -cos_k(r), sin_k(r)][q])


def exp_f32(x):
    x = f32(x)
    if np.isnan(x):
        return x
    if x > 89:
        return f32(np.inf)
    if x < -104:
        return f32(0.0)
    return f32(exp64(float(x)))


def pow_f32(x, y):
    """only the cases RoPE needs: x > 0 finite, y finite (Annex F y == 0 / x == 1 -> 1)"""
    x, y = f32(x), f32(y)
    if y == 0 or x == 1:
        return f32(1.0)
    assert x > 0 and np.isfinite(x) and np.isfinite(y)
    t = float(y) * ln64(float(abs(x)))
    if t > 89:
        return f32(np.inf)
    if t < -104:
        return f32(0.0)
    return f32(exp64(t))


def sqrt_f32(x):
    return np.sqrt(f32(x))  # IEEE sqrt is correctly rounded; math.md's integer algorithm is too


def silu_f32(x):
    x = f32(x)
    return x * (f32(1.0) / (f32(1.0) + exp_f32(-x)))


def combine_lanes(lane):
    lane = lane.copy()
    for w in (8, 4, 2, 1):
        lane[..., :w] = lane[..., :w] + lane[..., w:2 * w]
    return lane[..., 0]


def sum_f32(xs):
    """16-lane sum over the last axis (vectorised over leading axes)."""
    xs = np.asarray(xs, dtype=np.float32)
    lane = np.zeros(xs.shape[:-1] + (16,), dtype=np.float32)
    for i in range(xs.shape[-1]):
        lane[..., i % 16] = lane[..., i % 16] + xs[..., i]
    return combine_lanes(lane)


def softmax_in_place(x):
    x = np.asarray(x, dtype=np.float32)
    if len(x) == 0:
        return x
    m = x[0]
    for v in x[1:]:
        if v > m:
            m = v
    out = np.array([exp_f32(v - m) for v in x], dtype=np.float32)
    s = sum_f32(out)
    return (out / s).astype(np.float32)
