"""Minimal safetensors reader/writer for the oracle scripts (numpy only, so it
runs with Debian's python3-torch, which has no `safetensors` package)."""
import json
import struct

import numpy as np

_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}


def save(path, tensors, metadata=None):
    """tensors: dict name -> array-like (torch tensors are converted). Written
    in sorted-name order, F32 unless the array is float16/float64/int."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name in sorted(tensors):
        a = tensors[name]
        if hasattr(a, "detach"):
            a = a.detach().cpu().numpy()
        a = np.array(a, order="C")  # keeps 0-d scalars 0-d (ascontiguousarray would not)
        if a.dtype not in _NAMES:
            a = a.astype(np.float32)
        raw = a.tobytes()
        header[name] = {"dtype": _NAMES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)  # align the data section to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load(path):
    """Returns (dict name -> numpy array, metadata dict)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, info in header.items():
        lo, hi = info["data_offsets"]
        dt = {"BF16": None}.get(info["dtype"], _DTYPES.get(info["dtype"]))
        if info["dtype"] == "BF16":
            u = np.frombuffer(data[base + lo:base + hi], dtype=np.uint16).astype(np.uint32) << 16
            arr = u.view(np.float32)
        else:
            arr = np.frombuffer(data[base + lo:base + hi], dtype=dt)
        out[name] = arr.reshape(info["shape"]).copy()
    return out, meta


class Cases:
    """Collects op test cases: inputs, output, a random upstream gradient dout
    and every input's gradient under y.backward(dout), under the names
    CASE.INPUT, CASE.out, CASE.dout, CASE.grad.INPUT (read by tu_oracle_case)."""

    def __init__(self, seed=0):
        import torch
        torch.manual_seed(seed)
        self.tensors = {}

    def case(self, name, fn, no_grad=(), **inputs):
        import torch
        leaves = {k: v.clone().requires_grad_(k not in no_grad) for k, v in inputs.items()}
        y = fn(**leaves)
        dout = torch.randn_like(y)
        y.backward(dout)
        for k, v in inputs.items():
            self.tensors[f"{name}.{k}"] = v
            if k not in no_grad:
                self.tensors[f"{name}.grad.{k}"] = leaves[k].grad
        self.tensors[f"{name}.out"] = y.detach()
        self.tensors[f"{name}.dout"] = dout

    def save(self, script_file, stem):
        import os
        save(os.path.join(os.path.dirname(os.path.abspath(script_file)), stem + ".safetensors"), self.tensors)
