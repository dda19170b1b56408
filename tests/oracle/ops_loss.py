"""Reference outputs and gradients for reductions, losses and embedding.
Writes tests/oracle/ops_loss.safetensors (run by `make oracle`).

Integer inputs (embedding ids, cross-entropy targets) are stored as F32
tensors holding small exact integers (CASE.ids, CASE.targets, marked no_grad);
the C test reads them, checks each is integral and converts to int."""
import torch
import torch.nn.functional as F

from st import Cases

c = Cases(seed=0)

# sum / mean keeping the first `keep` dims (keep = 0: all dims, a scalar)
x = torch.randn(2, 3, 4, 5)
for keep in (0, 1, 2, 3):
    dims = tuple(range(keep, x.dim()))
    c.case(f"sum_k{keep}", lambda x, d=dims: x.sum(dim=d), x=x)
    c.case(f"mean_k{keep}", lambda x, d=dims: x.mean(dim=d), x=x)

# mse, gradient to both sides and with a constant target
c.case("mse", lambda a, b: F.mse_loss(a, b), a=torch.randn(3, 4, 5), b=torch.randn(3, 4, 5))
c.case("mse_const", lambda a, b: F.mse_loss(a, b), no_grad=("b",),
       a=torch.randn(2, 7), b=torch.randn(2, 7))

# embedding: V = 7, D = 5, ids (3, 4) with repeats (3 four times, 0 twice)
ids = torch.tensor([[3, 0, 6, 3], [1, 3, 5, 0], [3, 2, 4, 1]], dtype=torch.float32)
c.case("embedding", lambda table, ids: F.embedding(ids.long(), table), no_grad=("ids",),
       table=torch.randn(7, 5), ids=ids)

# cross-entropy: N = 6 rows, C = 5 classes; row 2 and 4 ignored (-100)
logits = torch.randn(6, 5) * 2
targets = torch.tensor([1, 4, -100, 0, -100, 4], dtype=torch.float32)
c.case("ce_ignore", lambda logits, targets: F.cross_entropy(logits, targets.long(), ignore_index=-100),
       no_grad=("targets",), logits=logits, targets=targets)
# no ignored row, large logits (the max subtraction matters: exp(90) overflows f32)
logits = torch.randn(4, 3) * 3
logits[1] += 90.0
targets = torch.tensor([2, 0, 1, 1], dtype=torch.float32)
c.case("ce_plain", lambda logits, targets: F.cross_entropy(logits, targets.long(), ignore_index=-100),
       no_grad=("targets",), logits=logits, targets=targets)
# ignore_index that is also a valid class id (a PAD token = 0)
logits = torch.randn(5, 4)
targets = torch.tensor([0, 3, 0, 2, 1], dtype=torch.float32)
c.case("ce_pad0", lambda logits, targets: F.cross_entropy(logits, targets.long(), ignore_index=0),
       no_grad=("targets",), logits=logits, targets=targets)
c.save(__file__, "ops_loss")
