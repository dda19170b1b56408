"""Parity reference for the CLIP image tower and InfoNCE (src/models/clip.c),
reduced config: 32x32x3 images, channels (8, 16, 16, 16), 4 groups, embed 16.
Writes tests/oracle/model_clip_weights.safetensors (the state_dict, with the
0-d logit_scale) and tests/oracle/model_clip.safetensors:
 - full model: images (B,3,32,32), txt (B,16) text embeddings, r_emb; outputs
   emb (image embeddings) and loss = infonce(emb, txt, logit_scale); gradients
   grad.<param>, grad.images, grad.txt of loss + sum(emb * r_emb);
 - loss-only cases (tu_oracle_case layout) with the scale below and above the
   clamp at 100: loss_small (logit_scale 1.0), loss_clamped (logit_scale 5.0)."""
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from st import Cases, save

CH, GROUPS, EMBED = [8, 16, 16, 16], 4, 16


def infonce(img, txt, ls):
    img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    logits = ls.exp().clamp(max=100.0) * img @ txt.t()
    tgt = torch.arange(img.shape[0])
    return (F.cross_entropy(logits, tgt) + F.cross_entropy(logits.t(), tgt)) / 2


class Block(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm = nn.GroupNorm(GROUPS, cin)
        self.conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(F.silu(self.norm(x)))


class Visual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_in = nn.Conv2d(3, CH[0], 3, padding=1)
        self.blocks = nn.ModuleList([Block(CH[i], CH[i + 1]) for i in range(len(CH) - 1)])
        self.norm_out = nn.GroupNorm(GROUPS, CH[-1])

    def forward(self, x):
        h = self.conv_in(x)
        for b in self.blocks:
            h = b(h)
        return F.silu(self.norm_out(h)).mean(dim=(2, 3))


class CLIPImage(nn.Module):
    def __init__(self):
        super().__init__()
        self.visual = Visual()
        self.visual_projection = nn.Linear(CH[-1], EMBED, bias=False)
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))

    def forward(self, images):
        return self.visual_projection(self.visual(images))


c = Cases(seed=0)  # seeds torch
m = CLIPImage()
with torch.no_grad():  # non-trivial groupnorm affines so their gradients are tested
    for name, p in m.named_parameters():
        if "norm" in name:
            p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(p))

B = 4
images = (torch.rand(B, 3, 32, 32) * 2 - 1).requires_grad_(True)
txt = torch.randn(B, EMBED).requires_grad_(True)
emb = m(images)
loss = infonce(emb, txt, m.logit_scale)
r_emb = torch.randn_like(emb)
(loss + (emb * r_emb).sum()).backward()

here = os.path.dirname(os.path.abspath(__file__))
save(os.path.join(here, "model_clip_weights.safetensors"), {k: v for k, v in m.state_dict().items()})
c.tensors.update({"images": images.detach(), "txt": txt.detach(), "r_emb": r_emb, "emb": emb.detach(),
                  "loss": loss.detach(), "grad.images": images.grad, "grad.txt": txt.grad})
for name, p in m.named_parameters():
    c.tensors["grad." + name] = p.grad

c.case("loss_small", infonce, img=torch.randn(5, 6), txt=torch.randn(5, 6), ls=torch.tensor(1.0))
c.case("loss_clamped", infonce, img=torch.randn(5, 6), txt=torch.randn(5, 6), ls=torch.tensor(5.0))
c.save(__file__, "model_clip")
