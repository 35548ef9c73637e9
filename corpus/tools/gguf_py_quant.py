#!/usr/bin/env python3
"""Reference quantization with gguf-py, for harness/tests/gguf_py_quant.rs.

Usage: gguf_py_quant.py INPUT OUTDIR

INPUT holds little-endian f32 values (a multiple of 32). Writes to OUTDIR:
  q8_0.bin, q4_0.bin   gguf.quants.quantize(data, Q8_0 / Q4_0) bytes
  q8_0.deq, q4_0.deq   gguf.quants.dequantize of those bytes, little-endian f32
  f16.bin              data.astype(numpy.float16), little-endian
and prints the gguf and numpy versions.
"""
import importlib.metadata
import sys
from pathlib import Path

import numpy as np
from gguf.constants import GGMLQuantizationType
from gguf.quants import dequantize, quantize


def main() -> None:
    src, outdir = Path(sys.argv[1]), Path(sys.argv[2])
    data = np.fromfile(src, dtype="<f4")
    rows = data.reshape((-1, 32))
    for name, qtype in (("q8_0", GGMLQuantizationType.Q8_0), ("q4_0", GGMLQuantizationType.Q4_0)):
        q = quantize(rows, qtype)
        (outdir / f"{name}.bin").write_bytes(q.tobytes())
        deq = dequantize(q, qtype).astype("<f4")
        (outdir / f"{name}.deq").write_bytes(deq.tobytes())
    (outdir / "f16.bin").write_bytes(data.astype(np.float16).astype("<f2").tobytes())
    print(f"gguf {importlib.metadata.version('gguf')} numpy {np.__version__}")


if __name__ == "__main__":
    main()
