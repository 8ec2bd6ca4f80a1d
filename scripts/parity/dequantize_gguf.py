#!/usr/bin/env python3
"""Write an all-F32 copy of a GGUF file, dequantised by the `gguf` package (gguf-py, llama.cpp's
own Python reader), for the tight parity fixture of scripts/parity/make_fixture.py.

Usage: dequantize_gguf.py IN.gguf OUT.gguf

The header and metadata bytes are copied verbatim; every tensor info is rewritten with type F32
and a new offset (aligned to general.alignment, default 32); the data is
gguf.quants.dequantize(raw, type) in the tensor's own element order (ne[0] contiguous).
"""
import struct
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def main(src, dst):
    reader = GGUFReader(src, "r")
    raw = open(src, "rb").read()
    # Walk the header to the end of the metadata section (copied verbatim).
    pos = 24
    _, _, n_tensors, n_kv = struct.unpack_from("<IIQQ", raw, 0)
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def skip_value(t):
        nonlocal pos
        if t == 8:
            (n,) = struct.unpack_from("<Q", raw, pos)
            pos += 8 + n
        elif t == 9:
            et, n = struct.unpack_from("<IQ", raw, pos)
            pos += 12
            for _ in range(n):
                skip_value(et)
        else:
            pos += sizes[t]

    alignment = 32
    for _ in range(n_kv):
        (n,) = struct.unpack_from("<Q", raw, pos)
        key = raw[pos + 8:pos + 8 + n].decode()
        pos += 8 + n
        (t,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if key == "general.alignment":
            (alignment,) = struct.unpack_from("<I", raw, pos)
        skip_value(t)
    out = bytearray(raw[:pos])
    datas, offset = [], 0
    for t in reader.tensors:
        x = np.ascontiguousarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(-1)
        assert x.size == int(np.prod(t.shape)), t.name
        name = t.name.encode()
        out += struct.pack("<Q", len(name)) + name + struct.pack("<I", len(t.shape))
        out += b"".join(struct.pack("<Q", int(d)) for d in t.shape)  # ne order, as stored
        out += struct.pack("<IQ", 0, offset)
        datas.append((offset, x))
        offset += (x.nbytes + alignment - 1) // alignment * alignment
    assert len(reader.tensors) == n_tensors
    out += b"\0" * (-len(out) % alignment)
    with open(dst, "wb") as f:
        f.write(out)
        base = len(out)
        for off, x in datas:
            f.seek(base + off)
            f.write(x.tobytes())
        f.truncate(base + offset)
    print(f"wrote {dst}: {n_tensors} tensors as F32")


if __name__ == "__main__":
    main(*sys.argv[1:])
