"""Reference outputs and gradients for broadcasting add/sub/mul, scale and
add-scalar. Writes tests/oracle/ops_elem.safetensors (run by `make oracle`).
b is broadcast to a's shape (numpy rules), as da_add/da_sub/da_mul do."""
import torch

from st import Cases

c = Cases(seed=0)
r = torch.randn

# equal shapes (the flat fast path)
c.case("add_same", lambda a, b: a + b, a=r(2, 3, 4), b=r(2, 3, 4))
c.case("sub_same", lambda a, b: a - b, a=r(2, 3, 4), b=r(2, 3, 4))
c.case("mul_same", lambda a, b: a * b, a=r(2, 3, 4), b=r(2, 3, 4))
# bias (C) over (N, T, C)
c.case("add_bias", lambda a, b: a + b, a=r(2, 3, 4), b=r(4))
c.case("sub_bias", lambda a, b: a - b, a=r(2, 3, 4), b=r(4))
c.case("mul_bias", lambda a, b: a * b, a=r(2, 3, 4), b=r(4))
# per-channel (C, 1, 1) over (N, C, H, W)
c.case("mul_chan", lambda a, b: a * b, a=r(2, 3, 4, 5), b=r(3, 1, 1))
# timestep embedding (N, C, 1, 1) over (N, C, H, W)
c.case("add_temb", lambda a, b: a + b, a=r(2, 3, 4, 5), b=r(2, 3, 1, 1))
c.case("mul_temb", lambda a, b: a * b, a=r(2, 3, 4, 5), b=r(2, 3, 1, 1))
# per-sample scalars (N, 1, 1, 1)
c.case("mul_sample", lambda a, b: a * b, a=r(2, 3, 4, 5), b=r(2, 1, 1, 1))
c.case("sub_sample", lambda a, b: a - b, a=r(2, 3, 4, 5), b=r(2, 1, 1, 1))
# leading 1 in b, 2-D
c.case("mul_row", lambda a, b: a * b, a=r(2, 3), b=r(1, 3))
# scalar-like (1): one element broadcast everywhere
c.case("add_one", lambda a, b: a + b, a=r(2, 3, 4), b=r(1))
c.case("mul_one", lambda a, b: a * b, a=r(2, 3, 4), b=r(1))
# alternating broadcast dims (2, 1, 4, 1) over (2, 3, 4, 5)
c.case("mul_alt", lambda a, b: a * b, a=r(2, 3, 4, 5), b=r(2, 1, 4, 1))
# constant b (no gradient wanted)
c.case("mul_const", lambda a, b: a * b, no_grad=("b",), a=r(2, 3, 4), b=r(3, 1))
# scalars: 0.37 is not exact in binary; PyTorch rounds it to f32 first
c.case("scale", lambda x: x * 0.37, x=r(2, 3, 4))
c.case("add_scalar", lambda x: x + (-0.3), x=r(2, 3, 4))
c.save(__file__, "ops_elem")
