"""Reference trajectories for the optimisation utilities (src/core/optim.c).
Writes tests/oracle/optim.safetensors (run by `make oracle`).

AdamW: torch.optim.AdamW (single-tensor path, foreach=None on CPU) for 10
steps on N parameters, two configs. Hyperparameters are float32 values
(da_adamw holds floats; torch promotes the same values to double), so the C
side sees exactly what torch saw.

torch's CPU kernels dispatch on the CPU: with AVX2 the vector kernels fuse
some multiply-adds (FMA), with ATEN_CPU_CAPABILITY=default they do not. The
script stores both: the full trajectory from the machine's own dispatch
(ADAM.CFG.{p,m,v}, one row per step) and the final state from the portable
kernels (ADAM.CFG.portable.{p,m,v}), which dalign, built without FMA
contraction, is expected to reproduce bit for bit.

clip_grad_norm_: one gradient vector, a max_norm that clips and one that
does not; torch's norm and the clipped gradients.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

from st import load, save

N = 200          # 12 vector blocks of 16 + a tail of 8: both kernel paths
STEPS = 10
N_CLIP = 2048
CONFIGS = {
    # name: (lr, beta1, beta2, eps, weight_decay), rounded to float32 below
    "small": (1e-3, 0.9, 0.999, 1e-8, 1e-2),
    "large": (0.1, 0.9, 0.999, 1e-8, 0.1),
}


def f32(x):
    return float(np.float32(x))


def adamw_inputs():
    import torch
    g = torch.Generator().manual_seed(0)
    p0 = torch.randn(N, generator=g)
    grads = []
    for k in range(STEPS):
        # alternate large and small gradients so both the sqrt(v) and the
        # eps term of the denominator matter
        gk = torch.randn(N, generator=g) * (3.0 if k % 2 == 0 else 0.05)
        gk[:8] = 0.0            # zero gradient: only weight decay moves them
        gk[8:16] *= 1e-9        # tiny gradient: eps dominates the denominator
        grads.append(gk)
    return p0, torch.stack(grads)


def adamw_run(cfg, p0, grads):
    import torch
    lr, b1, b2, eps, wd = (f32(x) for x in cfg)
    p = p0.clone().requires_grad_(True)
    opt = torch.optim.AdamW([p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    ps, ms, vs = [], [], []
    for k in range(STEPS):
        p.grad = grads[k].clone()
        opt.step()
        st = opt.state[p]
        ps.append(p.detach().clone())
        ms.append(st["exp_avg"].clone())
        vs.append(st["exp_avg_sq"].clone())
    hp = torch.tensor([lr, b1, b2, eps, wd], dtype=torch.float32)
    return hp, torch.stack(ps), torch.stack(ms), torch.stack(vs)


def portable_child(path):
    """Runs under ATEN_CPU_CAPABILITY=default: final states only. The inputs
    come from the parent: torch.randn's own bits depend on the dispatch."""
    import torch
    inputs, _ = load(path)
    p0, grads = torch.from_numpy(inputs["p0"]), torch.from_numpy(inputs["grads"])
    out = {}
    for name, cfg in CONFIGS.items():
        _, ps, ms, vs = adamw_run(cfg, p0, grads)
        out[f"adamw.{name}.portable.p"] = ps[-1]
        out[f"adamw.{name}.portable.m"] = ms[-1]
        out[f"adamw.{name}.portable.v"] = vs[-1]
    save(path, out)


def main():
    import torch
    p0, grads = adamw_inputs()
    out = {"adamw.p0": p0, "adamw.grads": grads}
    for name, cfg in CONFIGS.items():
        hp, ps, ms, vs = adamw_run(cfg, p0, grads)
        out[f"adamw.{name}.hparams"] = hp
        out[f"adamw.{name}.p"] = ps
        out[f"adamw.{name}.m"] = ms
        out[f"adamw.{name}.v"] = vs

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "portable.safetensors")
        save(path, {"p0": p0, "grads": grads})
        env = dict(os.environ, ATEN_CPU_CAPABILITY="default")
        subprocess.run([sys.executable, os.path.abspath(__file__), "--portable", path], env=env, check=True)
        portable, _ = load(path)
    out.update(portable)

    g = torch.Generator().manual_seed(1)
    grad = torch.randn(N_CLIP, generator=g) * 0.02   # norm ~0.9
    out["clip.g"] = grad
    for name, max_norm in (("clips", 0.25), ("keeps", 5.0)):
        w = torch.nn.Parameter(torch.zeros(N_CLIP))
        w.grad = grad.clone()
        norm = torch.nn.utils.clip_grad_norm_([w], max_norm)
        out[f"clip.{name}.max_norm"] = torch.tensor([max_norm])
        out[f"clip.{name}.norm"] = norm.reshape(1)
        if name == "clips":   # the non-clipping case multiplies by 1.0: grads unchanged
            out[f"clip.{name}.out"] = w.grad
        else:
            assert torch.equal(w.grad, grad)

    save(os.path.join(os.path.dirname(os.path.abspath(__file__)), "optim.safetensors"), out,
         metadata={"torch": torch.__version__, "cpu_capability": os.environ.get("ATEN_CPU_CAPABILITY", "auto")})


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--portable":
        portable_child(sys.argv[2])
    else:
        main()
