"""Reference values for src/diffusion (schedules and samplers).
Writes tests/oracle/schedule.safetensors (run by `make oracle`).

diffusers is not installed here, so the scheduler math below is written out
in torch float32, one op per diffusers op (DDIMScheduler, DDPMScheduler,
EulerDiscreteScheduler); the diffusers test-suite's own numbers, checked in
tests/test_samplers.c, are the independent check of these semantics.

Names:
  linspace.K, linspace.K.args      torch.linspace(start, end, n, float32); args = [start, end, n]
  sched.NAME.{betas,alphas,alphas_cumprod}   for the configs in SCHEDULES (bit-exact in C)
  euler.{timesteps,sigmas}         T = 1100, 10 steps (diffusers' Euler test config)
  loop.NAME                        final sample of a sampling loop from dummy_sample_deter
  logprob.{model_out,x_prev,sample,logp,dout,grad}   DDIM log-probability in float64
"""
import math

import numpy as np
import torch

from st import save

t = {}

# ---- torch.linspace ------------------------------------------------------
LINSPACE = [(0.0001, 0.02, n) for n in (1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 100, 999, 1000, 1100)]
LINSPACE += [(0.00085 ** 0.5, 0.012 ** 0.5, 1000), (0.3, -1.7, 37), (1e-3, 7.0, 65), (-2.5, 2.5, 250)]
for k, (a, b, n) in enumerate(LINSPACE):
    t[f"linspace.{k}"] = torch.linspace(a, b, n, dtype=torch.float32)
    t[f"linspace.{k}.args"] = torch.tensor([a, b, n], dtype=torch.float32)

# ---- schedules (same table in tests/test_samplers.c) ---------------------
SCHEDULES = {
    "linear": ("linear", 1000, 0.0001, 0.02),
    "linear_b01": ("linear", 1000, 0.01, 0.02),
    "linear_T1100": ("linear", 1100, 0.0001, 0.02),
    "scaled_linear": ("scaled_linear", 1000, 0.00085, 0.012),
    "scaled_linear_T77": ("scaled_linear", 77, 0.0001, 0.02),
}


def betas_for(kind, T, b0, b1):
    if kind == "linear":
        return torch.linspace(b0, b1, T, dtype=torch.float32)
    return torch.linspace(b0 ** 0.5, b1 ** 0.5, T, dtype=torch.float32) ** 2


def schedule(name):
    betas = betas_for(*SCHEDULES[name])
    alphas = 1.0 - betas
    return betas, alphas, torch.cumprod(alphas, dim=0)


for name in SCHEDULES:
    betas, alphas, ac = schedule(name)
    t[f"sched.{name}.betas"], t[f"sched.{name}.alphas"], t[f"sched.{name}.alphas_cumprod"] = betas, alphas, ac


# ---- the diffusers test fixtures -----------------------------------------
def arange_deter(flip):
    k = torch.arange(4 * 3 * 8 * 8)
    if flip:
        k = k.flip(-1)
    return (k.reshape(3, 8, 8, 4) / (4 * 3 * 8 * 8)).permute(3, 0, 1, 2)


def dummy_model(x, step):
    step = torch.as_tensor(step).to(torch.float32)
    return x * step / (step + 1)


def shifted_model(x, step):
    """dummy_model at step + 1: a "sample" prediction that is not 0 at t = 0"""
    return dummy_model(x, step + 1)


def predict(pred, a, m, x):
    b = 1 - a
    if pred == "epsilon":
        return (x - b ** 0.5 * m) / a ** 0.5, m
    if pred == "v_prediction":
        return a ** 0.5 * x - b ** 0.5 * m, a ** 0.5 * m + b ** 0.5 * x
    return m, (x - a ** 0.5 * m) / b ** 0.5


def leading(T, n, offset):
    return [i * (T // n) + offset for i in range(n)][::-1]


# ---- DDIM ------------------------------------------------------------------
def ddim_loop(sched, n, eta, pred="epsilon", clip=True, set_alpha_to_one=True, offset=0, clipped_eps=False):
    model = shifted_model if pred == "sample" else dummy_model
    T = len(sched[2])
    ac = sched[2]
    final = torch.tensor(1.0) if set_alpha_to_one else ac[0]
    gen = torch.manual_seed(0)
    x = arange_deter(False)
    for step in leading(T, n, offset):
        m = model(x, step)
        prev = step - T // n
        a, ap = ac[step], (ac[prev] if prev >= 0 else final)
        x0, eps = predict(pred, a, m, x)
        if clip:
            x0 = x0.clamp(-1.0, 1.0)
        var = ((1 - ap) / (1 - a)) * (1 - a / ap)
        std = eta * var ** 0.5
        if clipped_eps:
            eps = (x - a ** 0.5 * x0) / (1 - a) ** 0.5
        x = ap ** 0.5 * x0 + (1 - ap - std ** 2) ** 0.5 * eps
        if eta > 0:
            x = x + std * torch.randn(m.shape, generator=gen, dtype=torch.float32)
    return x


t["loop.ddim_eta"] = ddim_loop(schedule("linear"), 10, 0.8, set_alpha_to_one=False)
t["loop.ddim_v_eta"] = ddim_loop(schedule("scaled_linear"), 25, 1.0, pred="v_prediction",
                                 set_alpha_to_one=False, offset=1, clipped_eps=True)
t["loop.ddim_sample_noclip"] = ddim_loop(schedule("linear"), 20, 0.0, pred="sample", clip=False,
                                         set_alpha_to_one=False)


# ---- DDPM ------------------------------------------------------------------
def ddpm_loop(n, pred="epsilon", variance="fixed_small", clip=True):
    model = shifted_model if pred == "sample" else dummy_model
    ac = schedule("linear")[2]
    T = len(ac)
    one = torch.tensor(1.0)
    gen = torch.manual_seed(0)
    x = arange_deter(False)
    for step in leading(T, n, 0):
        m = model(x, step)
        prev = step - T // n
        a, ap = ac[step], (ac[prev] if prev >= 0 else one)
        b, bp = 1 - a, 1 - ap
        cur_a = a / ap
        cur_b = 1 - cur_a
        x0, _ = predict(pred, a, m, x)
        if clip:
            x0 = x0.clamp(-1.0, 1.0)
        mean = ((ap ** 0.5 * cur_b) / b) * x0 + (cur_a ** 0.5 * bp / b) * x
        if step > 0:
            z = torch.randn(m.shape, generator=gen, dtype=torch.float32)
            var = torch.clamp(bp / b * cur_b, min=1e-20)
            if variance == "fixed_small":
                std = var ** 0.5
            elif variance == "fixed_small_log":
                std = torch.exp(0.5 * torch.log(var))
            else:
                std = cur_b ** 0.5
            mean = mean + std * z
        x = mean
    return x


t["loop.ddpm"] = ddpm_loop(1000)
t["loop.ddpm50_large_v"] = ddpm_loop(50, pred="v_prediction", variance="fixed_large")
t["loop.ddpm50_smalllog_sample"] = ddpm_loop(50, pred="sample", variance="fixed_small_log", clip=False)


# ---- Euler -----------------------------------------------------------------
def euler_setup(T, n):
    ac = schedule("linear_T1100")[2] if T == 1100 else schedule("linear")[2]
    full = (((1 - ac) / ac) ** 0.5).numpy()
    ts = np.linspace(0, T - 1, n, dtype=np.float32)[::-1].copy()
    sig = np.interp(ts, np.arange(0, T), full)
    sig = np.concatenate([sig, [0.0]]).astype(np.float32)
    return torch.from_numpy(ts), torch.from_numpy(sig)


def euler_loop(pred):
    ts, sig = euler_setup(1100, 10)
    x = arange_deter(False) * sig.max()
    for i, step in enumerate(ts):
        s = sig[i]
        x = x / ((s ** 2 + 1) ** 0.5)  # the diffusers test keeps the scaled sample
        m = dummy_model(x, step)
        if pred == "epsilon":
            x0 = x - s * m
        else:
            x0 = m * (-s / (s ** 2 + 1) ** 0.5) + (x / (s ** 2 + 1))
        d = (x - x0) / s
        x = x + d * (sig[i + 1] - s)
    return x


t["euler.timesteps"], t["euler.sigmas"] = euler_setup(1100, 10)
t["loop.euler"] = euler_loop("epsilon")
t["loop.euler_v"] = euler_loop("v_prediction")


# ---- DDIM log-probability (design §6) in float64, with its gradient --------
def logprob_case():
    torch.manual_seed(3)
    ac = schedule("linear")[2].double()
    T, n, step, eta = 1000, 50, 500, 1.0
    prev = step - T // n
    a, ap = ac[step], ac[prev]
    # inputs are float32 values (what the C side reads), the math is float64;
    # x0_hat = (x - sqrt(1-a) m)/sqrt(a) lands on both sides of the clip range
    m = (torch.randn(2, 4, 4, 4) * 0.5).double()
    x = (torch.randn(2, 4, 4, 4) * 0.5).double()
    x_prev = (torch.randn(2, 4, 4, 4) * 0.7).double()
    mm = m.clone().requires_grad_(True)
    x0 = ((x - (1 - a) ** 0.5 * mm) / a ** 0.5).clamp(-1, 1)
    std = eta * (((1 - ap) / (1 - a)) * (1 - a / ap)) ** 0.5
    mean = ap ** 0.5 * x0 + (1 - ap - std ** 2) ** 0.5 * mm
    lp = (-(x_prev - mean) ** 2 / (2 * std ** 2) - torch.log(std) - math.log(math.sqrt(2 * math.pi)))
    lp = lp.mean(dim=(1, 2, 3))
    dout = torch.tensor([0.7, -1.3], dtype=torch.float64)
    lp.backward(dout)
    for k, v in dict(model_out=m, x_prev=x_prev, sample=x, logp=lp.detach(), dout=dout, grad=mm.grad).items():
        t[f"logprob.{k}"] = v.float()


logprob_case()

import os  # noqa: E402

save(os.path.join(os.path.dirname(os.path.abspath(__file__)), "schedule.safetensors"), t)
