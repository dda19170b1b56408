"""Parity reference for the preference model (src/models/reward_net.c),
reduced config: 32x32x3 images, channels (8, 8, 16, 16), 4 groups, vocab 34,
embed 8, text_dim 16, hidden 16. Writes
tests/oracle/model_reward_net_weights.safetensors (the state_dict) and
tests/oracle/model_reward_net.safetensors:
 - model: images (B,3,32,32) in [0,1], ids (B,24) (stored as float), keep
   (B,24), r_out (B); outputs out (B) and gradients grad.<param>, grad.images
   of sum(out * r_out);
 - bt: the Bradley-Terry loss alone (tu_oracle_case layout): inputs rw, rl (N)."""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from st import Cases, save

CH, GROUPS, V, T, E, TXT, HID = [8, 8, 16, 16], 4, 34, 24, 8, 16, 16


def film(y, ss):
    """y (B, C, H, W) * (1 + scale) + shift, [scale, shift] = ss (B, 2C)"""
    scale, shift = ss.chunk(2, dim=1)
    return y * (1 + scale[:, :, None, None]) + shift[:, :, None, None]


class Block(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm = nn.GroupNorm(GROUPS, cin)
        self.film = nn.Linear(TXT, 2 * cin)
        self.conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1)

    def forward(self, x, g):
        return self.conv(F.silu(film(self.norm(x), self.film(g))))


class Visual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_in = nn.Conv2d(5, CH[0], 3, padding=1)
        self.blocks = nn.ModuleList([Block(CH[i], CH[i + 1]) for i in range(len(CH) - 1)])
        self.norm_out = nn.GroupNorm(GROUPS, CH[-1])
        self.film_out = nn.Linear(TXT, 2 * CH[-1])

    def forward(self, img, g):
        B, _, S, _ = img.shape
        c = (2 * (torch.arange(S, dtype=torch.float32) + 0.5)) / S - 1  # pixel centres in [-1, 1]
        xs = c.view(1, 1, 1, S).expand(B, 1, S, S)
        ys = c.view(1, 1, S, 1).expand(B, 1, S, S)
        h = self.conv_in(torch.cat([img * 2 - 1, xs, ys], dim=1))
        raw = F.silu(h).mean(dim=(2, 3))  # before any GroupNorm
        for b in self.blocks:
            h = b(h, g)
        return torch.cat([F.silu(film(self.norm_out(h), self.film_out(g))).mean(dim=(2, 3)), raw], dim=1)


class Text(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(V, E)
        self.fc = nn.Linear(3 * E, TXT)

    def forward(self, ids, keep):
        e = self.embedding(ids)  # (B, T, E)
        n = ids.shape[1] - 2
        tri = torch.cat([e[:, 0:n], e[:, 1:n + 1], e[:, 2:n + 2]], dim=2)
        h = F.silu(self.fc(tri))  # (B, n, TXT)
        valid = keep[:, 2:].float()  # a trigram counts when it ends on a real token
        w = valid / valid.sum(dim=1, keepdim=True).clamp(min=1)
        return (w.unsqueeze(2) * h).sum(dim=1)


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(CH[-1] + CH[0], HID)
        self.fc2 = nn.Linear(HID, 1)

    def forward(self, f):
        return self.fc2(F.silu(self.fc1(f))).squeeze(1)


class RewardNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.text = Text()
        self.visual = Visual()
        self.head = Head()

    def forward(self, img, ids, keep):
        return self.head(self.visual(img, self.text(ids, keep)))


def bt_loss(rw, rl):
    return -F.logsigmoid(rw - rl).mean()


c = Cases(seed=0)  # seeds torch
m = RewardNet()
with torch.no_grad():  # non-trivial groupnorm affines so their gradients are tested
    for name, p in m.named_parameters():
        if "norm" in name:
            p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(p))

# token rows as da_tokenize writes them: BOS w.. EOS PAD..; lengths 18, 7, 3 (the
# shortest prompt: one trigram) and 24 (no padding)
B = 4
lengths = [18, 7, 3, 24]
ids = torch.zeros(B, T, dtype=torch.long)
keep = torch.zeros(B, T, dtype=torch.long)
for b, n in enumerate(lengths):
    ids[b, 0], ids[b, n - 1] = 1, 2
    ids[b, 1:n - 1] = torch.randint(4, V, (n - 2,))
    keep[b, :n] = 1
images = torch.rand(B, 3, 32, 32).requires_grad_(True)
out = m(images, ids, keep)
r_out = torch.randn_like(out)
(out * r_out).sum().backward()

here = os.path.dirname(os.path.abspath(__file__))
save(os.path.join(here, "model_reward_net_weights.safetensors"), dict(m.state_dict()))
c.tensors.update({"images": images.detach(), "ids": ids.float(), "keep": keep.float(), "r_out": r_out,
                  "out": out.detach(), "grad.images": images.grad})
for name, p in m.named_parameters():
    c.tensors["grad." + name] = p.grad

c.case("bt", bt_loss, rw=torch.randn(6) * 3, rl=torch.randn(6) * 3)
c.save(__file__, "model_reward_net")
