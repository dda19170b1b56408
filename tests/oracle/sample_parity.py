"""Full-sample PyTorch parity (issue 3, item 8): the text encoder, UNet and VAE
of a weights directory loaded into the PyTorch modules of model_text.py,
model_unet.py and model_vae.py, then a 20-step DDIM sample (eta 0, CFG) of
two prompts in float32, exactly as dalign's pipeline (docs/pipeline.md):

    ids = tokenize(prompt)                       (the word-level tokenizer, below)
    ctx_c = text(ids); ctx_u = text(tokenize(""))
    x_T = torch.manual_seed(seed); torch.randn(1, C, 8, 8)     per image
    per step t: eps_u, eps_c = unet([x; x], t, [ctx_u; ctx_c])  one call, uncond first
                eps = eps_u + w (eps_c - eps_u)
                x = DDIM step (diffusers DDIMScheduler, eta 0)
    image = clamp((vae.decoder(x / scale_factor) + 1) / 2, 0, 1)

Writes tests/oracle/sample_parity.safetensors: ids, keep, x_T, every step's
latent (step_latents), the final latents and the images, the text features;
metadata: the weights directory, the prompts, seeds, steps and cfg.
tests/test_sample_parity.c runs the C pipeline on the same directory.

    /usr/bin/python3 tests/oracle/sample_parity.py                  # weights/ (random if absent)
    /usr/bin/python3 tests/oracle/sample_parity.py --weights DIR
    /usr/bin/python3 tests/oracle/sample_parity.py --random DIR     # write tiny random models to DIR first

Without arguments it uses the shipped weights/. --random DIR writes tiny
random models (F16 storage) to DIR first and uses them, e.g. to check the
pipeline on models that are no eps predictors. The directory is recorded
relative to the repository root (the C test runs from there).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

from model_text import TextEncoder
from model_unet import UNet
from model_vae import VAE, perturb_norms
from st import load, save

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

PROMPTS = ["a large red circle to the left of a small blue square", "a green triangle on a black background"]
SEEDS = [7, 1234]
STEPS, CFG = 20, 3.0
LATENT_HW = 8   # DA_IMG / 4

# The tokenizer (src/data/tokenizer.c), reimplemented: the vocabulary's order
# is part of every trained text encoder. test_sample_parity.c checks these
# ids against the C tokenizer.
VOCAB = ["<pad>", "<bos>", "<eos>", "<unk>", "a", "an", "small", "large", "big",
         "red", "green", "blue", "yellow", "purple", "orange", "pink", "cyan",
         "circle", "square", "triangle", "to", "the", "left", "right", "of", "above", "below",
         "on", "with", "background", "white", "black", "gray", "grey"]
PAD, BOS, EOS, MAX_TOKENS = 0, 1, 2, 24


def tokenize(text):
    """BOS w1 .. wn EOS PAD..: lower-case, whitespace/commas/periods separate words.
    Unknown words are an error, as in da_prompt_tokens."""
    words = text.replace(",", " ").replace(".", " ").lower().split()
    if len(words) > MAX_TOKENS - 2:
        raise ValueError(f"prompt too long: {text!r}")
    ids = [BOS] + [VOCAB.index(w) for w in words] + [EOS]
    keep = [1] * len(ids) + [0] * (MAX_TOKENS - len(ids))
    return ids + [PAD] * (MAX_TOKENS - len(ids)), keep


# ---- weights directory ---------------------------------------------------------------

NOISE_DEFAULTS = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.0001, beta_end=0.02,
                      prediction_type="epsilon", timestep_spacing="leading", steps_offset=0, clip_sample=False,
                      clip_sample_range=1.0, set_alpha_to_one=True)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def load_state(model, path):
    tensors, meta = load(path)
    model.load_state_dict({k: torch.from_numpy(v.astype(np.float32)) for k, v in tensors.items()}, strict=True)
    return meta


def load_models(wdir, unet_name="unet"):
    tc = read_json(os.path.join(wdir, "text_encoder.json"))
    text = TextEncoder(**tc)
    load_state(text, os.path.join(wdir, "text_encoder.safetensors"))
    vc = read_json(os.path.join(wdir, "vae.json"))
    vae = VAE(ch=tuple(vc["channels"]), groups=vc["groups"], eps=vc["gn_eps"], latent=vc["latent_channels"],
              in_ch=vc["in_channels"])
    meta = load_state(vae, os.path.join(wdir, "vae.safetensors"))
    scale = float(meta.get("scale_factor", vc["scale_factor"]))  # the metadata wins, as in da_vae_load
    uc = read_json(os.path.join(wdir, unet_name + ".json"))
    unet = UNet(ch=tuple(uc["channels"]), groups=uc["groups"], gn_eps=uc["gn_eps"], ln_eps=uc["ln_eps"],
                heads=uc["n_heads"], ctx_dim=uc["context_dim"], freq_dim=uc["time_freq_dim"],
                time_dim=uc["time_dim"], in_ch=uc["in_channels"], out_ch=uc["out_channels"])
    load_state(unet, os.path.join(wdir, unet_name + ".safetensors"))
    noise = dict(NOISE_DEFAULTS)
    sp = os.path.join(wdir, "scheduler.json")
    if os.path.exists(sp):
        noise.update(read_json(sp))
    for m in (text, vae, unet):
        m.eval()
    return text, vae, unet, scale, noise, uc["in_channels"]


def write_random(wdir):
    """Tiny random models in dalign's layout (configs as the C readers take them)."""
    os.makedirs(wdir, exist_ok=True)
    torch.manual_seed(1234)
    tc = dict(vocab_size=len(VOCAB), context=MAX_TOKENS, d_model=16, n_layers=1, n_heads=2, mlp_ratio=2, proj_dim=8)
    vc = dict(in_channels=3, latent_channels=4, channels=[8, 8, 16], groups=4, gn_eps=1e-6, kl_weight=1e-4,
              scale_factor=1.25)
    uc = dict(in_channels=4, out_channels=4, channels=[8, 16], groups=4, gn_eps=1e-5, ln_eps=1e-5, n_heads=2,
              context_dim=16, time_freq_dim=8, time_dim=16)
    text = TextEncoder(**tc)
    vae = VAE(ch=tuple(vc["channels"]), groups=4, eps=1e-6)
    unet = UNet(ch=tuple(uc["channels"]), groups=4, heads=2, ctx_dim=16, freq_dim=8, time_dim=16)
    for m in (text, vae, unet):
        perturb_norms(m)   # off the (1, 0) affine, so a mixed-up gamma/beta would show
    for name, cfg, model, meta in (("text_encoder", tc, text, None), ("vae", vc, vae, {"model": "vae",
                                   "scale_factor": "1.25"}), ("unet", uc, unet, {"model": "unet"})):
        with open(os.path.join(wdir, name + ".json"), "w") as f:
            json.dump(cfg, f, indent=2)
            f.write("\n")
        # F16 storage (as the shipped weights may use): half the bytes, and both
        # sides then read exactly the same values
        save(os.path.join(wdir, name + ".safetensors"),
             {k: v.detach().half().numpy() for k, v in model.state_dict().items()}, meta)
    with open(os.path.join(wdir, "scheduler.json"), "w") as f:
        json.dump(NOISE_DEFAULTS, f, indent=2)
        f.write("\n")


# ---- DDIM (diffusers DDIMScheduler, float32) -------------------------------------------

class DDIM:
    def __init__(self, noise, steps):
        T = noise["num_train_timesteps"]
        if noise["beta_schedule"] == "linear":
            betas = torch.linspace(noise["beta_start"], noise["beta_end"], T, dtype=torch.float32)
        else:   # scaled_linear
            betas = torch.linspace(noise["beta_start"] ** 0.5, noise["beta_end"] ** 0.5, T, dtype=torch.float32) ** 2
        self.ac = torch.cumprod(1.0 - betas, dim=0)
        self.final = torch.tensor(1.0) if noise["set_alpha_to_one"] else self.ac[0]
        self.T, self.steps, self.noise = T, steps, noise
        spacing, off = noise["timestep_spacing"], noise["steps_offset"]
        if spacing == "leading":
            ts = (np.arange(0, steps) * (T // steps)).round()[::-1].astype(np.int64) + off
        elif spacing == "trailing":
            ts = np.round(np.arange(T, 0, -T / steps)).astype(np.int64) - 1
        else:
            ts = np.linspace(0, T - 1, steps).round()[::-1].astype(np.int64)
        self.timesteps = [int(t) for t in ts]

    def step(self, out, t, x):
        prev_t = t - self.T // self.steps
        a_t = self.ac[t]
        a_prev = self.ac[prev_t] if prev_t >= 0 else self.final
        b_t = 1 - a_t
        if self.noise["prediction_type"] == "epsilon":
            x0, eps = (x - b_t ** 0.5 * out) / a_t ** 0.5, out
        else:   # v_prediction
            x0, eps = a_t ** 0.5 * x - b_t ** 0.5 * out, a_t ** 0.5 * out + b_t ** 0.5 * x
        if self.noise["clip_sample"]:   # eps stays the model's (use_clipped_model_output=False)
            r = self.noise["clip_sample_range"]
            x0 = x0.clamp(-r, r)
        return a_prev ** 0.5 * x0 + (1 - a_prev) ** 0.5 * eps   # eta 0: no variance term


# ---- the sample --------------------------------------------------------------------------

def sample(wdir, prompts, seeds, steps, w):
    text, vae, unet, scale, noise, C = load_models(wdir)
    rows = [tokenize(p) for p in prompts]
    ids = torch.tensor([r[0] for r in rows])
    keep = torch.tensor([r[1] for r in rows])
    u_ids, u_keep = tokenize("")
    B = len(prompts)
    with torch.no_grad():
        ctx_c = text.features(ids, keep)
        ctx_u = text.features(torch.tensor([u_ids]), torch.tensor([u_keep]))
        x_T = []
        for s in seeds:
            torch.manual_seed(s)
            x_T.append(torch.randn(1, C, LATENT_HW, LATENT_HW))
        x = torch.cat(x_T)
        ddim = DDIM(noise, steps)
        ctx = torch.cat([ctx_u.expand(B, -1, -1), ctx_c])
        kp = torch.cat([torch.tensor([u_keep] * B), keep]).bool()
        trajectory = []
        for t in ddim.timesteps:
            tt = torch.full((2 * B,), float(t))
            e = unet(torch.cat([x, x]), tt, ctx, kp)
            eps_u, eps_c = e[:B], e[B:]
            x = ddim.step(eps_u + w * (eps_c - eps_u), t, x)
            trajectory.append(x)
        img = ((vae.decoder(x / scale) + 1) / 2).clamp(0, 1)
    return dict(ids=ids.float(), keep=keep.float(), x_T=torch.cat(x_T), latents=x,
                step_latents=torch.stack(trajectory), images=img, context_cond=ctx_c, context_uncond=ctx_u)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", help="weights directory (default: weights/)")
    ap.add_argument("--random", metavar="DIR", help="write tiny random models to DIR and use them")
    ap.add_argument("--out", default=os.path.join(HERE, "sample_parity.safetensors"))
    a = ap.parse_args()
    if a.random:
        wdir = os.path.abspath(a.random)
        write_random(wdir)
    elif a.weights:
        wdir = os.path.abspath(a.weights)
    else:
        wdir = os.path.join(ROOT, "weights")
        if not os.path.exists(os.path.join(wdir, "unet.safetensors")):
            sys.exit("sample_parity: weights/ has no unet.safetensors: run make weights, or pass --weights/--random")
    out = sample(wdir, PROMPTS, SEEDS, STEPS, CFG)
    # the C test runs from the repository root: record the directory relative to it
    rel = os.path.relpath(wdir, ROOT)
    meta = {"weights": wdir if rel.startswith("..") else rel, "unet": "unet",
            "n": str(len(PROMPTS)), "steps": str(STEPS), "cfg": repr(CFG), "sampler": "ddim", "eta": "0"}
    for i, (p, s) in enumerate(zip(PROMPTS, SEEDS)):
        meta[f"prompt.{i}"] = p
        meta[f"seed.{i}"] = str(s)
    save(a.out, out, meta)
    print(f"sample_parity: {meta['weights']} -> {os.path.relpath(a.out, ROOT)}: latents max |x| "
          f"{out['latents'].abs().max():.4f}")


if __name__ == "__main__":
    main()
