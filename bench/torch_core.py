"""PyTorch side of bench/bench_core.c: same shapes, same thread count, same
timing method (one warm-up call, 7 samples of >= 50 ms, median per call).

usage: /usr/bin/python3 bench/torch_core.py THREADS RESULTS_FILE
Writes "name ms" lines with the names bench_core uses. Exit status 3 when
torch is missing (bench/run.sh then skips the column)."""
import math
import statistics
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    sys.exit(3)

N_SAMPLES = 7
MIN_SAMPLE_S = 0.05


def time_ms(fn):
    fn()
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    inner = 1 if one >= MIN_SAMPLE_S else int(MIN_SAMPLE_S / max(one, 1e-7)) + 1
    samples = []
    for _ in range(N_SAMPLES):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
    return statistics.median(samples) * 1e3


def uniform(*shape):
    return torch.rand(*shape) * 2 - 1


def bench_gemm(key, M, N, K):
    a, b, c = uniform(M, K), uniform(K, N), torch.empty(M, N)
    return {f"gemm.{key}": time_ms(lambda: torch.mm(a, b, out=c))}


def bench_conv(key, N, C, H, W, O, k, stride, pad):
    x = uniform(N, C, H, W).requires_grad_()
    w = uniform(O, C, k, k).requires_grad_()
    b = uniform(O).requires_grad_()
    OH, OW = (H + 2 * pad - k) // stride + 1, (W + 2 * pad - k) // stride + 1
    dout = uniform(N, O, OH, OW)

    def fwd():
        with torch.no_grad():
            F.conv2d(x, w, b, stride=stride, padding=pad)

    def fwd_bwd():
        x.grad = w.grad = b.grad = None
        F.conv2d(x, w, b, stride=stride, padding=pad).backward(dout)

    return {f"conv.{key}.fwd": time_ms(fwd), f"conv.{key}.fwd_bwd": time_ms(fwd_bwd)}


def attention(q, k, v, H):
    """softmax(q_h k_h^T / sqrt(hd)) v_h per head, heads as column blocks of D"""
    B, Tq, D = q.shape
    Tk, hd = k.shape[1], D // H
    qh = q.view(B, Tq, H, hd).transpose(1, 2)
    kh = k.view(B, Tk, H, hd).transpose(1, 2)
    vh = v.view(B, Tk, H, hd).transpose(1, 2)
    att = torch.softmax((qh @ kh.transpose(-2, -1)) * (1.0 / math.sqrt(hd)), dim=-1)
    return (att @ vh).transpose(1, 2).reshape(B, Tq, D)


def bench_attn(key, B, Tq, Tk, D, H):
    q = uniform(B, Tq, D).requires_grad_()
    k = uniform(B, Tk, D).requires_grad_()
    v = uniform(B, Tk, D).requires_grad_()
    dout = uniform(B, Tq, D)

    def fwd():
        with torch.no_grad():
            attention(q, k, v, H)

    def fwd_bwd():
        q.grad = k.grad = v.grad = None
        attention(q, k, v, H).backward(dout)

    return {f"attn.{key}.fwd": time_ms(fwd), f"attn.{key}.fwd_bwd": time_ms(fwd_bwd)}


def main():
    threads, out_path = int(sys.argv[1]), sys.argv[2]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    print(f"== PyTorch {torch.__version__}: {torch.get_num_threads()} threads")
    res = {}
    for n in (64, 128, 256, 512, 1024):
        res.update(bench_gemm(str(n), n, n, n))
    res.update(bench_gemm("conv_c64_32x32", 64, 1024, 576))
    res.update(bench_gemm("conv_c128_8x8", 128, 64, 1152))
    res.update(bench_conv("c64_32x32", 16, 64, 32, 32, 64, 3, 1, 1))
    res.update(bench_conv("c128_8x8", 16, 128, 8, 8, 128, 3, 1, 1))
    res.update(bench_attn("self_T64", 16, 64, 64, 128, 4))
    res.update(bench_attn("cross_T64x24", 16, 64, 24, 128, 4))
    with open(out_path, "w") as f:
        for name, ms in res.items():
            f.write(f"{name} {ms:.6f}\n")


if __name__ == "__main__":
    main()
