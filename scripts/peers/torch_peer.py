# Copied from the project design notes (shared/peers/torch_peer.py) so that the side-by-side
# measurement runs from a clone: scripts/cpu-peer.sh (CPU), scripts/gpu-check.sh (GPU).
"""PyTorch peer of lpc-bench's training step, for side-by-side GPU timing.

Same shapes as lpc-bench's model: pre-LN causal transformer (ReLU FFN, d_ff = 4d), token and
position embeddings, LM head; a DPO step over B pairs (2B rows: chosen, rejected), reference
log-probs cached (constants); LPC adds a prior MLP (separator state), a posterior MLP (last states
of both rows), Gumbel-softmax code added to the response states before the LM head, KL(q||p).
Adam, grad clipping. Prints one JSON line per case: median step ms over timed steps.

python3 torch_peer.py --d 512 --layers 6 --heads 8 --prompt 64 --resp 64 --batch 64
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d, h, sdpa):
        super().__init__()
        self.h, self.sdpa = h, sdpa
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.f1, self.f2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x, mask):
        n, l, d = x.shape
        a = self.ln1(x)
        sp = lambda t: t.view(n, l, self.h, d // self.h).transpose(1, 2)
        q, k, v = sp(self.q(a)), sp(self.k(a)), sp(self.v(a))
        if self.sdpa:
            c = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            s = q @ k.transpose(-1, -2) / math.sqrt(d // self.h) + mask
            c = s.softmax(-1) @ v
        x = x + self.o(c.transpose(1, 2).reshape(n, l, d))
        return x + self.f2(F.relu(self.f1(self.ln2(x))))


class Policy(nn.Module):
    def __init__(self, V, L, d, layers, h, sdpa, K):
        super().__init__()
        self.tok, self.pos = nn.Embedding(V, d), nn.Embedding(L, d)
        self.blocks = nn.ModuleList(Block(d, h, sdpa) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, V)
        self.codebook = nn.Parameter(0.5 * torch.randn(K, d))
        self.prior = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, K))
        self.post = nn.Sequential(nn.Linear(2 * d, d), nn.ReLU(), nn.Linear(d, K))
        self.register_buffer("mask", torch.triu(torch.full((L, L), -1e9), 1))

    def hidden(self, ids):
        x = self.tok(ids) + self.pos.weight[: ids.shape[1]]
        for b in self.blocks:
            x = b(x, self.mask)
        return self.ln(x)


def step_fn(pol, opt, ids, P, R, lpc, beta=0.1, lam=1.0):
    n2 = ids.shape[0]
    n = n2 // 2
    h = pol.hidden(ids)  # [2N, L, d]
    hr = h[:, P:P + R]  # states predicting response tokens
    tgt = ids[:, P + 1:P + 1 + R]
    kl = 0.0
    if lpc:
        q = pol.post(torch.cat([h[:n, -1], h[n:, -1]], 1))
        p = pol.prior(h[:n, P])
        w = F.gumbel_softmax(q, tau=1.0)
        z = w @ pol.codebook
        hr = hr + torch.cat([z, z], 0)[:, None, :]
        kl = (q.softmax(-1) * (q.log_softmax(-1) - p.log_softmax(-1))).sum(-1).mean()
    lp = pol.head(hr).log_softmax(-1).gather(-1, tgt[..., None]).squeeze(-1).sum(-1)
    ref = torch.zeros_like(lp)  # cached reference log-probs: constants
    m = beta * ((lp[:n] - ref[:n]) - (lp[n:] - ref[n:]))
    loss = -F.logsigmoid(m).mean() + lam * kl
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(pol.parameters(), 1.0)
    opt.step()
    return loss


def sync(dev):
    if dev == "cuda":
        torch.cuda.synchronize()


def bench(a, lpc, mode):
    dev = a.device
    torch.manual_seed(0)
    L = a.prompt + 1 + a.resp
    pol = Policy(a.vocab, L, a.d, a.layers, a.heads, mode.get("sdpa", False), 8).to(dev)
    opt = torch.optim.Adam(pol.parameters(), lr=1e-4, fused=mode.get("fused", False))
    ids = torch.randint(0, a.vocab, (2 * a.batch, L), device=dev)
    torch.backends.cuda.matmul.allow_tf32 = mode.get("tf32", False)
    torch.backends.cudnn.allow_tf32 = mode.get("tf32", False)
    fn = step_fn
    if mode.get("compile"):
        fn = torch.compile(step_fn)
    ctx = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if mode.get("bf16") else (
        lambda: torch.autocast("cuda", enabled=False))
    for _ in range(a.warm):
        with ctx():
            fn(pol, opt, ids, a.prompt, a.resp, lpc)
    sync(a.device)
    ms = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        with ctx():
            fn(pol, opt, ids, a.prompt, a.resp, lpc)
        sync(a.device)
        ms.append((time.perf_counter() - t0) * 1e3)
    ms.sort()
    return ms[len(ms) // 2], ms[0]


def main():
    ap = argparse.ArgumentParser()
    for k, v in dict(d=512, layers=6, heads=8, prompt=64, resp=64, batch=64, vocab=17, warm=5,
                     steps=30).items():
        ap.add_argument(f"--{k}", type=int, default=v)
    ap.add_argument("--modes", default="f32,tf32,bf16,bf16-sdpa")
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args()
    modes = {
        "f32": {},
        "tf32": {"tf32": True},
        "bf16": {"bf16": True},
        "bf16-sdpa": {"bf16": True, "sdpa": True, "fused": True},
        "bf16-sdpa-compile": {"bf16": True, "sdpa": True, "fused": True, "compile": True},
    }
    for name in a.modes.split(","):
        for method, lpc in (("dpo", False), ("lpc-dpo", True)):
            med, mn = bench(a, lpc, modes[name])
            print(json.dumps(dict(peer="pytorch-" + torch.__version__, mode=name, method=method,
                                  d=a.d, layers=a.layers, tokens=a.prompt + 1 + a.resp,
                                  batch=a.batch, median_ms=round(med, 3), min_ms=round(mn, 3))),
                  flush=True)


if __name__ == "__main__":
    main()
