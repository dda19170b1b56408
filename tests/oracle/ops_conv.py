"""Reference outputs and gradients for conv2d, nearest upsample x2 and 2x2
average-pool downsample. Writes tests/oracle/ops_conv.safetensors (run by
`make oracle`). Every case has a batch of at least 2 (dweight sums over images)
and H != W, C != O."""
import torch
import torch.nn.functional as F

from st import Cases


def conv(stride, pad):
    return lambda x, w, b=None: F.conv2d(x, w, b, stride=stride, padding=pad)


c = Cases(seed=0)
r = torch.randn
c.case("conv_k3s1p1", conv(1, 1), x=r(2, 3, 5, 6), w=r(4, 3, 3, 3), b=r(4))
c.case("conv_k3s2p1", conv(2, 1), x=r(2, 3, 7, 6), w=r(5, 3, 3, 3), b=r(5))  # odd H, stride 2
c.case("conv_k1s1p0", conv(1, 0), x=r(2, 5, 4, 3), w=r(3, 5, 1, 1))          # pointwise, no bias
c.case("conv_k3s1p0", conv(1, 0), x=r(3, 2, 5, 7), w=r(3, 2, 3, 3), b=r(3))  # valid conv
c.case("conv_k1s2p0", conv(2, 0), x=r(2, 3, 6, 5), w=r(4, 3, 1, 1), b=r(4))  # strided 1x1 (shortcut)
c.case("conv_k5s1p2", conv(1, 2), x=r(2, 2, 6, 5), w=r(3, 2, 5, 5), b=r(3))  # general k
c.case("conv_constx", conv(1, 1), no_grad=("x",), x=r(2, 3, 4, 5), w=r(4, 3, 3, 3), b=r(4))
c.case("conv_wide", conv(1, 1), x=r(2, 16, 8, 7), w=r(12, 16, 3, 3), b=r(12))  # UNet-like reductions
c.case("upsample", lambda x: F.interpolate(x, scale_factor=2, mode="nearest"), x=r(2, 3, 3, 4))
c.case("downsample", lambda x: F.avg_pool2d(x, 2), x=r(2, 3, 4, 6))
c.save(__file__, "ops_conv")
