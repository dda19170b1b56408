"""Reference streams of PyTorch's CPU generator for src/core/rng.c.
Writes tests/oracle/rng.safetensors (run by `make oracle`).

All tensors are F32 (the C reader takes F32/F16/BF16 only). Integers:
  - small ranges are stored directly (exact in f32);
  - large ones as two exact f32 parts: NAME.hi = v >> 20, NAME.lo = v & 0xfffff,
    where v is the value minus `low` (so v >= 0 and v < 2^44).
Names:
  randn.s<seed>.n<n>   torch.manual_seed(seed); torch.randn(n)
  rand.s<seed>.n<n>    torch.manual_seed(seed); torch.rand(n)
  seq.s0               one generator: randn of SEQ sizes in turn, concatenated
  mix.s7               one generator: randn(1), rand(3), randint(0,1000,(4,)), randn(1), randn(17)
  randint.*            see below
The randn/rand/randint values must match the C code bit for bit."""
import os
import re

import numpy as np
import torch

from st import save

SEEDS = [0, 1, 42, 2**32 + 5]           # 2^32 + 5: PyTorch keeps the low 32 bits
RANDN_N = [1, 2, 3, 15, 16, 17, 31, 32, 100, 1000]
BIG_N, BIG_SEEDS = 4096 + 7, [0, 42]      # the long case only for two seeds (file size)
SEQ = [3, 1, 20, 1, 20, 1, 2]           # exercises the cached second normal

# The n >= 16 normal kernel differs per CPU capability; rng.c mirrors AVX2.
CAP = re.search(r"CPU capability usage: (\w+)", torch.__config__.show()).group(1)
assert CAP == "AVX2", f"rng.c mirrors PyTorch's AVX2 kernel; this torch uses {CAP}"

t = {}


def split(name, v):
    v = np.asarray(v, dtype=np.int64)
    assert v.min() >= 0 and v.max() < 2**44
    t[name + ".hi"] = (v >> 20).astype(np.float32)
    t[name + ".lo"] = (v & 0xFFFFF).astype(np.float32)


for s in SEEDS:
    for n in RANDN_N + ([BIG_N] if s in BIG_SEEDS else []):
        torch.manual_seed(s)
        t[f"randn.s{s}.n{n}"] = torch.randn(n)

# manual_seed(s + 2^32) == manual_seed(s): the C side mirrors this truncation
torch.manual_seed(5)
assert torch.equal(t[f"randn.s{2**32 + 5}.n17"], torch.randn(17))

for s in [0, 42]:
    for n in [5, 100]:
        torch.manual_seed(s)
        t[f"rand.s{s}.n{n}"] = torch.rand(n)

torch.manual_seed(0)
t["seq.s0"] = torch.cat([torch.randn(n) for n in SEQ])

torch.manual_seed(7)
t["mix.s7"] = torch.cat([torch.randn(1), torch.rand(3),
                         torch.randint(0, 1000, (4,)).float(), torch.randn(1), torch.randn(17)])

# small ranges: one 32-bit draw per value, draw % range + low
for s in [0, 42]:
    torch.manual_seed(s)
    t[f"randint.s{s}.0_10"] = torch.randint(0, 10, (50,)).float()
torch.manual_seed(1)
t["randint.s1.m5_5"] = torch.randint(-5, 5, (50,)).float()
# range >= 2^32 draws random64(); 2^32 itself is the first such range
torch.manual_seed(0)
split("randint.s0.0_2p40", torch.randint(0, 2**40, (50,)))
torch.manual_seed(3)
split("randint.s3.m2p40_2p40", torch.randint(-2**40, 2**40, (20,)) + 2**40)
torch.manual_seed(4)
split("randint.s4.0_2p32", torch.randint(0, 2**32, (10,)))

# Raw 32-bit draws: randint(0, 2^32 - 1) is draw % (2^32 - 1), the draw itself
# unless it is 0xffffffff (then 0); no value here is 0, so these are the draws.
for s in [0, 5489]:
    torch.manual_seed(s)
    u = torch.randint(0, 2**32 - 1, (10,))
    assert (u != 0).all()
    split(f"u32.s{s}", u)
torch.manual_seed(5489)
assert torch.randint(0, 2**32 - 1, (1,)).item() == 3499211612  # published mt19937 value

save(os.path.join(os.path.dirname(os.path.abspath(__file__)), "rng.safetensors"), t,
     metadata={"torch": torch.__version__, "cpu_capability": CAP,
               "seq_sizes": ",".join(map(str, SEQ))})
