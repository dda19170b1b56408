"""Reference outputs and gradients for reshape, permute, concat and narrow.
Writes tests/oracle/ops_shape.safetensors (run by `make oracle`)."""
import torch

from st import Cases

c = Cases(seed=0)
r = torch.randn

c.case("reshape", lambda x: x.reshape(6, 4), x=r(2, 3, 4))
# a view followed by another op: the gradient reaches x through the view
c.case("reshape_mul", lambda x, w: x.reshape(4, -1) * w, x=r(2, 3, 4), w=r(6))
c.case("permute_2d", lambda x: x.permute(1, 0).contiguous(), x=r(3, 5))
c.case("permute_021", lambda x: x.permute(0, 2, 1).contiguous(), x=r(2, 3, 4))
c.case("permute_0231", lambda x: x.permute(0, 2, 3, 1).contiguous(), x=r(2, 3, 4, 5))
c.case("permute_3102", lambda x: x.permute(3, 1, 0, 2).contiguous(), x=r(2, 3, 4, 5))
c.case("concat_0", lambda a, b: torch.cat([a, b], 0), a=r(2, 3, 4), b=r(1, 3, 4))
c.case("concat_1", lambda a, b: torch.cat([a, b], 1), a=r(2, 3, 4), b=r(2, 2, 4))
c.case("concat_last", lambda a, b: torch.cat([a, b], -1), a=r(2, 3, 4), b=r(2, 3, 5))
c.case("concat_const", lambda a, b: torch.cat([a, b], 1), no_grad=("a",), a=r(2, 3, 4), b=r(2, 1, 4))
c.case("narrow_1", lambda x: x.narrow(1, 1, 3), x=r(2, 5, 4, 3))
c.case("narrow_2", lambda x: x.narrow(2, 2, 2), x=r(2, 5, 4, 3))
c.case("narrow_0", lambda x: x.narrow(0, 1, 2), x=r(3, 4))
c.case("narrow_last", lambda x: x.narrow(-1, 0, 2), x=r(2, 3, 4))
c.save(__file__, "ops_shape")
