"""safetensors interop between dalign and an independent implementation
(struct + json + numpy + torch's own dtype conversions; Debian's torch 1.13
has no `safetensors` package).

(a) Writes tests/oracle/st_from_torch.safetensors: F32, F16 and BF16 tensors
    whose values tests/test_safetensors.c recomputes, with a header that
    stresses the reader (keys not in offset order, \\uXXXX escapes including a
    surrogate pair, an odd header length so the data section is unaligned).
(b) Checks tests/oracle/st_from_dalign.safetensors, a file written by
    da_st_write (regenerated with DA_ST_REGEN=1 ./build/default/tests/test_safetensors;
    the C test asserts it still writes exactly these bytes), with two readers:
    st.load and a direct struct/json/numpy parse. Exits non-zero on mismatch.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

from st import load

HERE = os.path.dirname(os.path.abspath(__file__))


def f16_bytes(values):
    # torch's float -> half conversion (round to nearest even), little-endian
    return torch.tensor(values, dtype=torch.float32).to(torch.float16).view(torch.int16).numpy().astype("<i2").tobytes()


def bf16_bytes(values):
    return torch.tensor(values, dtype=torch.float32).to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()


def f32_bytes(values):
    return np.asarray(values, dtype="<f4").tobytes()


def write_from_torch(path):
    # values the C test recomputes: every one exact in its dtype
    blobs = [  # (name, dtype, shape, bytes), in data-section order
        ("bf16.arange", "BF16", [4, 4], bf16_bytes([(i - 8) * 0.5 for i in range(16)])),
        ("f32.arange", "F32", [2, 3, 4], f32_bytes([(i - 10) * 0.25 for i in range(24)])),
        ("empty", "F32", [0, 3], b""),
        ("f16.special", "F16", [9], f16_bytes([1.0, -2.5, 65504.0, 2.0 ** -24, 2.0 ** -14, math.inf,
                                              -math.inf, math.nan, -0.0])),
        ("f16.arange", "F16", [3, 5], f16_bytes([(i - 7) / 8 for i in range(15)])),
        ("bf16.special", "BF16", [6], bf16_bytes([1.0, -2.5, 2.0 ** -133, 3.3895313892515355e38,
                                                 math.inf, math.nan])),
        ("scalar", "F32", [], f32_bytes([42.5])),
    ]
    header, offset = {}, 0
    for name, dtype, shape, raw in blobs:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    # header keys in reverse-name order (not offset order), metadata last
    header = {k: header[k] for k in sorted(header, reverse=True)}
    header["__metadata__"] = {"format": "pt", "note": "h\u00e9llo \"q\"\n\t\U0001F600", "empty": ""}
    h = json.dumps(header, indent=1).encode()   # ensure_ascii: \u00e9 and \ud83d\ude00 escapes
    h += b" " * (1 - len(h) % 2)                # odd length: the data section starts unaligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(raw for _, _, _, raw in blobs))


# The content dalign writes (keep in sync with dalign_fixture() in test_safetensors.c).
QUOTED = "name \"q\" \\ \u00e9"
EXPECT_TENSORS = {
    "layer.0.weight": np.array([i * 0.5 - 2 for i in range(12)], np.float32).reshape(3, 4),
    "layer.0.bias": np.array([(i + 1) * 0.125 for i in range(4)], np.float32),
    "special": np.array([0.0, -0.0, 1.0, -2.5, 2.0 ** -149, np.finfo(np.float32).max, np.inf, -np.inf, np.nan],
                        np.float32),
    "empty": np.zeros((0, 3), np.float32),
    "scalar": np.array(42.5, np.float32),
    QUOTED: np.array([1.0, 2.0], np.float32),
}
EXPECT_META = {"format": "pt", "note": "line1\nline2\t\"q\" \u00e9 \U0001F600", "empty": ""}


def same(a, b):
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def check_from_dalign(path):
    errors = []
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    text = raw[8:8 + n].decode("utf-8")
    header = json.loads(text)
    if n % 8:
        errors.append(f"header length {n} is not a multiple of 8")
    if text.rstrip(" ") != text.strip():
        errors.append("header padding is not spaces only")
    keys = list(header)
    if keys != ["__metadata__"] + sorted(EXPECT_TENSORS):
        errors.append(f"header keys {keys} not __metadata__ then sorted names")
    if header["__metadata__"] != EXPECT_META:
        errors.append(f"metadata {header['__metadata__']!r} != {EXPECT_META!r}")
    pos, base = 0, 8 + n
    for name in keys[1:]:
        info = header[name]
        if set(info) != {"dtype", "shape", "data_offsets"} or info["dtype"] != "F32":
            errors.append(f"{name}: bad entry {info}")
            continue
        lo, hi = info["data_offsets"]
        if lo != pos:
            errors.append(f"{name}: begins at {lo}, previous range ends at {pos}")
        pos = hi
        arr = np.frombuffer(raw[base + lo:base + hi], dtype="<f4").reshape(info["shape"])
        if not same(arr.astype(np.float32), EXPECT_TENSORS[name]):
            errors.append(f"{name}: direct read {arr} != expected {EXPECT_TENSORS[name]}")
    if base + pos != len(raw):
        errors.append(f"file has {len(raw)} bytes, ranges end at {base + pos}")
    tensors, meta = load(path)   # the second reader
    if meta != EXPECT_META:
        errors.append(f"st.load metadata {meta!r}")
    if set(tensors) != set(EXPECT_TENSORS):
        errors.append(f"st.load names {sorted(tensors)}")
    for name, want in EXPECT_TENSORS.items():
        if name in tensors and not same(tensors[name].astype(np.float32), want):
            errors.append(f"{name}: st.load {tensors[name]} != expected {want}")
    return errors


write_from_torch(os.path.join(HERE, "st_from_torch.safetensors"))
errs = check_from_dalign(os.path.join(HERE, "st_from_dalign.safetensors"))
for e in errs:
    print("st_from_dalign.safetensors:", e, file=sys.stderr)
if errs:
    sys.exit(1)
print("st_from_dalign.safetensors: OK (", len(EXPECT_TENSORS), "tensors,", len(EXPECT_META), "metadata entries )")
