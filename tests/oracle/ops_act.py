"""Reference outputs and gradients for the elementwise activations.
Writes tests/oracle/ops_act.safetensors (run by `make oracle`).

Each input is a (4, 16) tensor: 48 values from randn*3 plus 16 fixed values
that include large magnitudes (+-30, +-100) where a naive log(sigmoid(x)) or
x * sigmoid(x) overflows or loses every digit."""
import torch
import torch.nn.functional as F

from st import Cases

EXTREME = [-100.0, -30.0, -10.0, -5.0, -1e-3, 0.0, 1e-3, 5.0, 10.0, 30.0, 100.0,
           -3.0, 3.0, -0.5, 0.5, 2.0]


def inputs():
    x = torch.cat([torch.randn(48) * 3, torch.tensor(EXTREME)])
    return x.reshape(4, 16)


c = Cases(seed=0)
c.case("silu", lambda x: F.silu(x), x=inputs())
c.case("gelu", lambda x: F.gelu(x), x=inputs())
c.case("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"), x=inputs())
c.case("log_sigmoid", lambda x: F.logsigmoid(x), x=inputs())
c.save(__file__, "ops_act")
