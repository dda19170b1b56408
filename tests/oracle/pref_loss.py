"""PyTorch reference for the preference losses (src/train/pref_loss.c)
through the tiny UNet of model_unet.py: Diffusion-DPO, SFT, Diffusion-RPO
(weight inside and outside the log-sigmoid) and Diffusion-KTO.

The policy is model_unet_weights.safetensors; the frozen reference is the
same network with every weight moved by 0.02 * N(0, 1)
(pref_loss_ref_weights.safetensors), so policy != reference and every term
of the losses is live. Inputs (rows [0, B) winners / liked, [B, 2B) losers
/ disliked): x_t, eps (shared by a pair for DPO/SFT/RPO; its own for KTO:
eps_kto), timesteps, a context with padding, RPO weights w from random unit
embeddings at tau = 0.5. Writes pref_loss.safetensors: for each case
CASE.loss, CASE.m (policy MSEs), r, and CASE.grad.<param> for every policy
parameter.
Run with /usr/bin/python3 (torch 1.13); `make oracle`.
"""
import os

import torch

from model_unet import CTX_LEN, TEST_CONFIG, UNet
from st import load, save

B = 3
BETA = 500.0
TAU = 0.5


def per_sample_mse(pred, eps):
    return ((pred - eps) ** 2).mean(dim=(1, 2, 3))


def dpo(m, r):
    inside = -(BETA / 2) * ((m[:B] - r[:B]) - (m[B:] - r[B:]))
    return -torch.nn.functional.logsigmoid(inside).mean()


def sft(m, r):
    return m[:B].mean()


def rpo(m, r, w, outside):
    d_w = (m[:B] - r[:B])[:, None]
    d_l = (m[B:] - r[B:])[None, :]
    logits = -(BETA / 2) * (d_w - d_l)            # (B, B): preferred i vs dispreferred j
    if outside:
        return (-(w * torch.nn.functional.logsigmoid(logits))).sum(1).mean()
    return (-torch.nn.functional.logsigmoid(w * logits)).mean()


def kto(m, r, y):
    g = r - m
    z = g.mean().detach()
    return (1 - torch.sigmoid(y * BETA * (g - z))).mean()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    weights, _ = load(os.path.join(here, "model_unet_weights.safetensors"))
    torch.manual_seed(11)
    policy, ref = UNet(**TEST_CONFIG), UNet(**TEST_CONFIG)
    policy.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    ref.load_state_dict({k: torch.from_numpy(v) + 0.02 * torch.randn(v.shape) for k, v in weights.items()})

    N = 2 * B
    xt = torch.randn(N, 4, 8, 8)
    eps_pair = torch.randn(B, 4, 8, 8)
    eps = torch.cat([eps_pair, eps_pair])
    eps_kto = torch.randn(N, 4, 8, 8)
    t = torch.tensor([3.0, 250.0, 990.0, 3.0, 250.0, 990.0])
    ctx = torch.randn(N, CTX_LEN, TEST_CONFIG["ctx_dim"])
    keep = torch.ones(N, CTX_LEN, dtype=torch.bool)
    keep[0, 5:] = False
    keep[4, 3:] = False
    e_w = torch.nn.functional.normalize(torch.randn(B, 16), dim=1)
    e_l = torch.nn.functional.normalize(torch.randn(B, 16), dim=1)
    w = torch.softmax(-(1 - e_w @ e_l.T) / TAU, dim=1)
    y = torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0, -1.0])

    with torch.no_grad():
        ref_pred = ref(xt, t, ctx, keep)
    out = {"xt": xt, "eps": eps, "eps_kto": eps_kto, "t": t, "context": ctx, "keep": keep.float(),
           "e_w": e_w, "e_l": e_l, "w": w, "y": y, "beta": torch.tensor(BETA), "tau": torch.tensor(TAU),
           "r": per_sample_mse(ref_pred, eps), "r_kto": per_sample_mse(ref_pred, eps_kto)}
    cases = {
        "dpo": lambda m, r: dpo(m, r),
        "sft": lambda m, r: sft(m, r),
        "rpo": lambda m, r: rpo(m, r, w, False),
        "rpo_outside": lambda m, r: rpo(m, r, w, True),
        "kto": lambda m, r: kto(m, r, y),
    }
    for name, fn in cases.items():
        policy.zero_grad()
        e = eps_kto if name == "kto" else eps
        m = per_sample_mse(policy(xt, t, ctx, keep), e)
        loss = fn(m, per_sample_mse(ref_pred, e))
        loss.backward()
        out[name + ".loss"] = loss.detach().reshape(1)
        out[name + ".m"] = m.detach()
        for pname, p in policy.named_parameters():
            out[name + ".grad." + pname] = p.grad.clone()
        print(f"{name}: loss {loss.item():.6f}")
    save(os.path.join(here, "pref_loss_ref_weights.safetensors"),
         {k: v.detach().float() for k, v in ref.state_dict().items()})
    save(os.path.join(here, "pref_loss.safetensors"), out)


if __name__ == "__main__":
    main()
