"""Reference outputs and gradients for linear and batched matmul.
Writes tests/oracle/ops_linear.safetensors (run by `make oracle`)."""
import torch
import torch.nn.functional as F

from st import Cases

c = Cases(seed=0)
c.case("linear", lambda x, w, b: F.linear(x, w, b),
       x=torch.randn(2, 3, 7), w=torch.randn(5, 7), b=torch.randn(5))
c.case("linear_nobias", lambda x, w: F.linear(x, w), x=torch.randn(4, 9), w=torch.randn(6, 9))
c.case("matmul", lambda a, b: a @ b, a=torch.randn(3, 4, 5), b=torch.randn(3, 5, 6))
c.save(__file__, "ops_linear")
