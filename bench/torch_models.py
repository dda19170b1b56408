"""PyTorch side of bench/bench_models.c: the same text encoder, VAE and UNet
(the modules of tests/oracle/model_*.py), the same measurements, thread
count and timing method (one warm-up call, then samples of >= 50 ms, as
many as fit in DA_BENCH_BUDGET seconds (default 1), 1 to DA_BENCH_SAMPLES
(default 3); the median sample's time per call. DA_BENCH_QUICK=1: the
warm-up and one timed call). bench/run.sh repeats whole processes and takes
the median over them.

usage: /usr/bin/python3 bench/torch_models.py THREADS WEIGHTS MEASUREMENT BATCH RESULTS_FILE
  WEIGHTS      a weights directory (loaded as tests/oracle/sample_parity.py
               does), or "-": the default configs, randomly initialised
  MEASUREMENT  sample | unet-fwd | unet-train   (see bench_models.c)
Appends "name value..." lines with the names bench_models uses. One
measurement per process: resource.getrusage's ru_maxrss is the process's
high-water mark, so a shared process would share the peak. Exit status 3
when torch is missing."""
import os
import resource
import statistics
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    sys.exit(3)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "oracle"))
from model_text import TextEncoder  # noqa: E402
from model_unet import UNet  # noqa: E402
from model_vae import VAE  # noqa: E402
from sample_parity import DDIM, NOISE_DEFAULTS, VOCAB, load_models, load_state, read_json, tokenize  # noqa: E402

MAX_SAMPLES = 15   # cap of DA_BENCH_SAMPLES
MIN_SAMPLE_S = 0.05
STEPS, CFG_W = 20, 3.0
LATENT_HW = 8   # DA_IMG / 4
QUICK = os.environ.get("DA_BENCH_QUICK", "") not in ("", "0")


def _env_num(name, default, conv):
    try:
        return conv(os.environ.get(name, ""))
    except ValueError:
        return default


SAMPLES = min(MAX_SAMPLES, _env_num("DA_BENCH_SAMPLES", 3, int))
SAMPLES = SAMPLES if SAMPLES >= 1 else 3
BUDGET_S = _env_num("DA_BENCH_BUDGET", 1.0, float)
BUDGET_S = BUDGET_S if BUDGET_S >= 0 else 1.0
USED = [1, 1]   # samples, calls per sample: what time_s did, for the report line

PROMPTS = [   # bench_models.c's, cycled over the batch
    "a large red circle to the left of a small blue square",
    "a green triangle on a black background",
    "a small yellow square above a large purple circle",
    "a pink circle below a cyan triangle on a white background",
    "a large orange triangle",
    "a blue circle to the right of a red square",
    "a small green square on a gray background",
    "a purple triangle above a yellow circle",
]


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # Linux: KiB


def time_s(fn):
    """median seconds per call (bench_models.c's time_s)"""
    fn()   # warm-up
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    inner = 1 if QUICK or one >= MIN_SAMPLE_S else int(MIN_SAMPLE_S / max(one, 1e-7)) + 1
    n = 1 if QUICK else int(BUDGET_S / max(one * inner, 1e-9))
    n = max(1, min(SAMPLES, n))
    samples = [one] if inner == 1 else []   # the probing call is a sample of its own
    while len(samples) < n:
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
    USED[:] = [n, inner]
    return statistics.median(samples)


def n_params(*models):
    return sum(p.numel() for m in models for p in m.parameters())


def make_models(wdir):
    """(text, vae, unet, scale_factor, noise config, latent channels)"""
    if wdir:
        return load_models(wdir)
    text = TextEncoder(vocab_size=len(VOCAB))   # as the shipped text encoder
    vae, unet = VAE(), UNet()
    for m in (text, vae, unet):
        m.eval()
    return text, vae, unet, 1.0, dict(NOISE_DEFAULTS), 4


def bench_sample(wdir, B):
    """dalign's pipeline (docs/pipeline.md), as sample_parity.sample without
    the trajectory: encode, x_T per seed, 20 DDIM steps with one 2B UNet call
    each (uncond first), CFG, VAE decode to [0, 1]"""
    text, vae, unet, scale, noise, C = make_models(wdir)
    rows = [tokenize(PROMPTS[b % len(PROMPTS)]) for b in range(B)]
    ids = torch.tensor([r[0] for r in rows])
    keep = torch.tensor([r[1] for r in rows])
    u_ids, u_keep = tokenize("")
    u_ids, u_keep = torch.tensor([u_ids]), torch.tensor([u_keep])

    def run():
        with torch.no_grad():
            ctx_c = text.features(ids, keep)
            ctx_u = text.features(u_ids, u_keep)
            xs = []
            for s in range(B):
                torch.manual_seed(s)
                xs.append(torch.randn(1, C, LATENT_HW, LATENT_HW))
            x = torch.cat(xs)
            ddim = DDIM(noise, STEPS)
            ctx = torch.cat([ctx_u.expand(B, -1, -1), ctx_c])
            kp = torch.cat([u_keep.expand(B, -1), keep]).bool()
            for t in ddim.timesteps:
                e = unet(torch.cat([x, x]), torch.full((2 * B,), float(t)), ctx, kp)
                eps_u, eps_c = e[:B], e[B:]
                x = ddim.step(eps_u + CFG_W * (eps_c - eps_u), t, x)
            return ((vae.decoder(x / scale) + 1) / 2).clamp(0, 1)

    return time_s(run), n_params(text, vae, unet)


def unet_inputs(unet, B):
    """bench_models.c's: latents, timesteps, random token features with the
    prompts' padding masks, a target eps"""
    C, D = unet.conv_in.in_channels, unet.down[0].attn.attn2.to_k.in_features
    x = torch.randn(B, C, LATENT_HW, LATENT_HW)
    target = torch.randn_like(x)
    ctx = torch.randn(B, 24, D)
    t = torch.randint(0, 1000, (B,)).float()
    keep = torch.tensor([tokenize(PROMPTS[b % len(PROMPTS)])[1] for b in range(B)]).bool()
    return x, t, ctx, keep, target


def make_unet(wdir):
    """the UNet alone (its config keys as in sample_parity.load_models)"""
    if not wdir:
        return UNet()
    uc = read_json(os.path.join(wdir, "unet.json"))
    unet = UNet(ch=tuple(uc["channels"]), groups=uc["groups"], gn_eps=uc["gn_eps"], ln_eps=uc["ln_eps"],
                heads=uc["n_heads"], ctx_dim=uc["context_dim"], freq_dim=uc["time_freq_dim"],
                time_dim=uc["time_dim"], in_ch=uc["in_channels"], out_ch=uc["out_channels"])
    load_state(unet, os.path.join(wdir, "unet.safetensors"))
    return unet


def bench_unet_fwd(wdir, B):
    unet = make_unet(wdir).eval()
    x, t, ctx, keep, _ = unet_inputs(unet, B)

    def run():
        with torch.no_grad():
            return unet(x, t, ctx, keep)

    return time_s(run), n_params(unet)


def bench_unet_train(wdir, B):
    unet = make_unet(wdir).train()
    x, t, ctx, keep, target = unet_inputs(unet, B)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)

    def run():
        opt.zero_grad(set_to_none=True)
        F.mse_loss(unet(x, t, ctx, keep), target).backward()
        opt.step()

    return time_s(run), n_params(unet)


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    threads, wdir, what, B, out_path = sys.argv[1:]
    threads, B = int(threads), int(B)
    wdir = None if wdir == "-" else wdir
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rss_start = peak_rss_mib()
    if what == "sample":
        sec, n = bench_sample(wdir, B)
        name = f"sample.b{B}"
        label = f"sample b{B}: text encoder + {STEPS} DDIM steps, CFG {CFG_W:g} (UNet batch {2 * B}) + VAE decode"
    elif what == "unet-fwd":
        sec, n = bench_unet_fwd(wdir, B)
        name, label = f"unet_fwd.b{B}", f"UNet forward b{B} (no gradients)"
    elif what == "unet-train":
        sec, n = bench_unet_train(wdir, B)
        name, label = f"unet_train.b{B}", f"UNet train step b{B}: zero grads, forward, MSE, backward, AdamW"
    else:
        sys.exit(__doc__)
    rss = peak_rss_mib()
    print(f"{label:<72} {sec * 1e3:10.2f} ms {B / sec:9.2f} images/s  peak RSS {rss:7.1f} MiB "
          f"({rss_start:.1f} at start)  {n} params  ({threads} thread{'' if threads == 1 else 's'}, "
          f"median of {USED[0]} x {USED[1]} call{'' if USED[1] == 1 else 's'})")
    with open(out_path, "a") as f:
        f.write(f"model.{name} {sec * 1e3:.6f} {B}\nrss.{name} {rss:.3f} {rss_start:.3f}\n")


if __name__ == "__main__":
    main()
