"""Reference initial latents for src/pipeline (tests/test_pipeline.c).
Writes tests/oracle/pipeline.safetensors (run by `make oracle`).

The pipeline draws image i's x_T from its own generator seeded with
seeds[i]; a PyTorch user reproduces it with
    torch.manual_seed(seed); torch.randn(1, 4, 8, 8)
Names: latent.s<seed>  (1, 4, 8, 8), bit-exact in the C test."""
import os
import re

import torch

from st import save

# randn(n >= 16) runs a per-CPU-capability kernel; src/core/rng.c mirrors AVX2.
CAP = re.search(r"CPU capability usage: (\w+)", torch.__config__.show()).group(1)
assert CAP == "AVX2", f"rng.c mirrors PyTorch's AVX2 kernel; this torch uses {CAP}"

SEEDS = [0, 7, 1234, 2**32 + 5]  # 2^32 + 5: manual_seed keeps the low 32 bits

t = {}
for s in SEEDS:
    torch.manual_seed(s)
    t[f"latent.s{s}"] = torch.randn(1, 4, 8, 8)

save(os.path.join(os.path.dirname(os.path.abspath(__file__)), "pipeline.safetensors"), t)
