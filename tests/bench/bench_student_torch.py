#!/usr/bin/python3
"""PyTorch twin of `retort bench student`: the same distillation step on the
same shapes, printing the same JSON keys.

    /usr/bin/python3 tests/bench/bench_student_torch.py --layers 4 --dim 256 \\
        --heads 4 --ff 1024 --vocab 8192 --seq 256 --batch 8 --steps 10 [--bf16] [--json]

Step: forward of GPT-2 (Hugging Face GPT2LMHeadModel semantics, written out
in plain torch: no transformers package here), loss = alpha*T^2*KL(p_T||q_T)
+ (1-alpha)*CE against random dense teacher soft labels prepared once,
backward, clip_grad_norm_(1.0), AdamW (decay only on matmul weights, like
retort), zero_grad. --bf16 runs forward and loss under
torch.autocast('cpu', dtype=torch.bfloat16) (PyTorch's mixed precision on
CPU; master weights stay f32). Threads: OMP_NUM_THREADS (torch.set_num_threads).

Phases: forward = model to logits; loss = the loss's forward only; backward
= loss.backward() (PyTorch fuses the loss's backward into it); optimizer =
clip + AdamW step + zero_grad. FLOPs are counted with the same formula as
retort: 6*N*tokens (N without wpe) + 12*L*B*T^2*C.
"""
import argparse
import json
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, C, H, FF):
        super().__init__()
        self.H = H
        self.ln_1 = nn.LayerNorm(C, eps=1e-5)
        self.c_attn_w = nn.Parameter(torch.randn(C, 3 * C) * 0.02)  # Conv1D [in, out]
        self.c_attn_b = nn.Parameter(torch.zeros(3 * C))
        self.c_proj_w = nn.Parameter(torch.randn(C, C) * 0.02)
        self.c_proj_b = nn.Parameter(torch.zeros(C))
        self.ln_2 = nn.LayerNorm(C, eps=1e-5)
        self.fc_w = nn.Parameter(torch.randn(C, FF) * 0.02)
        self.fc_b = nn.Parameter(torch.zeros(FF))
        self.fcp_w = nn.Parameter(torch.randn(FF, C) * 0.02)
        self.fcp_b = nn.Parameter(torch.zeros(C))

    def forward(self, x, mask):
        B, T, C = x.shape
        hs = C // self.H
        qkv = torch.addmm(self.c_attn_b, self.ln_1(x).view(-1, C), self.c_attn_w).view(B, T, 3 * C)
        q, k, v = (t.view(B, T, self.H, hs).transpose(1, 2) for t in qkv.split(C, dim=2))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
        att = att.masked_fill(mask[:T, :T], float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B * T, C)
        x = x + torch.addmm(self.c_proj_b, y, self.c_proj_w).view(B, T, C)
        h = F.gelu(torch.addmm(self.fc_b, self.ln_2(x).view(-1, C), self.fc_w), approximate="tanh")
        return x + torch.addmm(self.fcp_b, h, self.fcp_w).view(B, T, C)


class GPT2(nn.Module):
    def __init__(self, L, C, H, FF, V, T):
        super().__init__()
        self.wte = nn.Parameter(torch.randn(V, C) * 0.02)
        self.wpe = nn.Parameter(torch.randn(T, C) * 0.02)
        self.h = nn.ModuleList(Block(C, H, FF) for _ in range(L))
        self.ln_f = nn.LayerNorm(C, eps=1e-5)
        self.register_buffer("mask", ~torch.tril(torch.ones(T, T, dtype=torch.bool)))

    def forward(self, idx):
        T = idx.shape[1]
        x = self.wte[idx] + self.wpe[:T]
        for blk in self.h:
            x = blk(x, self.mask)
        return self.ln_f(x) @ self.wte.t()  # LM head tied to wte


def main():
    ap = argparse.ArgumentParser(description="PyTorch twin of `retort bench student`")
    for name, d in (("layers", 4), ("dim", 256), ("heads", 4), ("ff", 1024), ("vocab", 8192),
                    ("seq", 256), ("batch", 8), ("steps", 10), ("warmup", 2), ("seed", 1234)):
        ap.add_argument("--" + name, type=int, default=d)
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    threads = int(os.environ.get("OMP_NUM_THREADS", os.cpu_count()))
    torch.set_num_threads(threads)
    torch.manual_seed(a.seed)
    L, C, H, FF, V, T, B = a.layers, a.dim, a.heads, a.ff, a.vocab, a.seq, a.batch
    model = GPT2(L, C, H, FF, V, T)
    decay = [p for n, p in model.named_parameters() if n.endswith("_w")]
    no_decay = [p for n, p in model.named_parameters() if not n.endswith("_w")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
    tokens = torch.randint(0, V, (B, T))
    targets = torch.randint(0, V, (B * T,))
    temp, alpha = a.temperature, a.alpha
    teacher_logp = torch.log_softmax(2.0 * torch.randn(B * T, V) / temp, dim=-1)  # dense soft labels

    ph = {"forward": 0.0, "loss": 0.0, "backward": 0.0, "optimizer": 0.0}
    total, loss_v = 0.0, float("nan")
    for s in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            logits = model(tokens).view(B * T, V)
            t1 = time.perf_counter()
            z = logits.float()
            ce = F.cross_entropy(z, targets)
            kl = F.kl_div(F.log_softmax(z / temp, dim=-1), teacher_logp, log_target=True,
                          reduction="sum") / (B * T)
            loss = (1 - alpha) * ce + alpha * temp * temp * kl
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        loss_v = loss.item()
        if s >= a.warmup:
            for k, (u, v) in zip(ph, ((t0, t1), (t1, t2), (t2, t3), (t3, t4))):
                ph[k] += v - u
            total += t4 - t0

    n_params = sum(p.numel() for p in model.parameters())
    step_s = total / a.steps
    flops = 6.0 * (n_params - T * C) * B * T + 12.0 * L * B * T * T * C
    out = {"target": "student", "impl": "torch", "torch": torch.__version__,
           "precision": "bf16" if a.bf16 else "f32", "layers": L, "dim": C, "heads": H, "ff": FF,
           "vocab": V, "seq": T, "batch": B, "steps": a.steps, "warmup": a.warmup,
           "threads": threads, "topk": V, "params": n_params, "tokens_per_step": B * T,
           "step_ms": round(1e3 * step_s, 3), "tokens_per_s": round(B * T / step_s, 1),
           "gflop_per_step": round(flops * 1e-9, 3), "gflop_per_s": round(flops * 1e-9 / step_s, 1),
           "phase_ms": {k: round(1e3 * v / a.steps, 3) for k, v in ph.items()}, "loss": round(loss_v, 6)}
    if a.json:
        print(json.dumps(out))
    else:
        print(f"torch bench student ({out['precision']}, {threads} threads): step {out['step_ms']:.1f} ms, "
              f"{out['tokens_per_s']:.0f} tokens/s, {out['gflop_per_s']:.1f} GFLOP/s")
        for k, v in out["phase_ms"].items():
            print(f"  {k:<10} {v:8.2f} ms")


if __name__ == "__main__":
    main()
