"""Reference outputs and gradients for groupnorm and layernorm.
Writes tests/oracle/ops_norm.safetensors (run by `make oracle`)."""
import torch
import torch.nn.functional as F

from st import Cases

EPS = 1e-5  # the eps every C test passes too


def gn(groups):
    return lambda x, gamma=None, beta=None: F.group_norm(x, groups, gamma, beta, EPS)


c = Cases(seed=0)
# non-zero means and non-unit scales, so a missing mean/variance term shows up
c.case("gn_2d", gn(3), x=torch.randn(2, 6, 3, 3) * 2 + 0.5,
       gamma=torch.randn(6), beta=torch.randn(6))
c.case("gn_s1", gn(2), x=torch.randn(3, 8) * 1.5 - 0.3,
       gamma=torch.randn(8), beta=torch.randn(8))
c.case("gn_1d", gn(2), x=torch.randn(2, 4, 5) + 1.0,
       gamma=torch.randn(4), beta=torch.randn(4))
c.case("gn_noaffine", gn(2), x=torch.randn(2, 4, 2, 3) * 3)
c.case("ln", lambda x, gamma, beta: F.layer_norm(x, (8,), gamma, beta, EPS),
       x=torch.randn(2, 3, 8) * 2 - 1, gamma=torch.randn(8), beta=torch.randn(8))
c.save(__file__, "ops_norm")
