"""CTEG: continuous text-to-expression generator (EmoAva, EMNLP 2025), with the reference's defects fixed.

A frozen text encoder's token states are the memory of a transformer decoder over expression frames
`[BOS, y_1 .. y_T]`. At each step t a latent z_t is drawn, from the posterior q(z | h_t, h_{t+1})
(which has seen the target frame y_{t+1}) in training and from the prior p(z | h_t) when sampling;
`head(h_t, z_t)` gives y_{t+1}. The jaw dims are predicted by an expression-wise attention over the
expression dims. Fixes against the reference: that attention is causal (it used a whole-sequence mean),
the KL is averaged over real frames only (it averaged over padding), and a learned stop ends sequences
(the reference always decoded 254 frames)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class CTEGConfig:
    D: int
    text_dim: int
    jaw_dims: list[int] = field(default_factory=list)
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 256
    d_latent: int = 16
    d_att: int = 32
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


def sinusoid(positions: torch.Tensor, d: int) -> torch.Tensor:
    """(..., d) sinusoidal position codes for integer positions (any length, computed on the fly)."""
    half = d // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    ang = positions.float()[..., None] * freq
    pe = torch.cat([ang.sin(), ang.cos()], -1)
    return F.pad(pe, (0, d - 2 * half))


class Attention(nn.Module):
    def __init__(self, d: int, h: int, dropout: float):
        super().__init__()
        assert d % h == 0, f"d_model {d} must be divisible by n_heads {h}"
        self.h, self.dk, self.p = h, d // h, dropout
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.o = nn.Linear(d, d)

    def split(self, x):
        B, T, _ = x.shape
        return x.view(B, T, self.h, self.dk).transpose(1, 2)

    def kv_of(self, src):
        k, v = self.kv(src).chunk(2, -1)
        return self.split(k), self.split(v)

    def forward(self, x, k, v, mask=None, causal=False):
        q = self.split(self.q(x))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                           dropout_p=self.p if self.training else 0.0)
        B, _, T, _ = y.shape
        return self.o(y.transpose(1, 2).reshape(B, T, -1))


class DecoderLayer(nn.Module):
    """Pre-LN: causal self-attention over frames, cross-attention to text, feed-forward."""

    def __init__(self, d, h, d_ff, dropout):
        super().__init__()
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_att = Attention(d, h, dropout)
        self.cross = Attention(d, h, dropout)
        self.ff = nn.Sequential(nn.Linear(d, d_ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ff, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mem_kv, mem_mask, cache=None):
        """`cache` (incremental decoding): dict holding this layer's past self-attention keys/values."""
        y = self.ln1(x)
        k, v = self.self_att.kv_of(y)
        if cache is not None:
            # keys/values live in a preallocated buffer (doubled when full), so a step costs no copy of the past
            n0 = cache.get("n", 0)
            n1 = n0 + k.shape[2]
            if x.shape[1] > 1 and n0:
                raise ValueError("incremental decoding feeds one position at a time after the first call")
            if "k" not in cache or cache["k"].shape[2] < n1:
                cap = max(64, 2 * n1)
                K, V = k.new_empty(*k.shape[:2], cap, k.shape[3]), v.new_empty(*v.shape[:2], cap, v.shape[3])
                if n0:
                    K[:, :, :n0], V[:, :, :n0] = cache["k"][:, :, :n0], cache["v"][:, :, :n0]
                cache["k"], cache["v"] = K, V
            cache["k"][:, :, n0:n1], cache["v"][:, :, n0:n1] = k, v
            cache["n"] = n1
            k, v = cache["k"][:, :, :n1], cache["v"][:, :, :n1]
            # a single new query position sees every cached (past) position: no mask needed
            causal = x.shape[1] > 1
        else:
            causal = True
        x = x + self.drop(self.self_att(y, k, v, causal=causal))
        x = x + self.drop(self.cross(self.ln2(x), *mem_kv, mask=mem_mask))
        return x + self.drop(self.ff(self.ln3(x)))


class ExpressionWiseAttention(nn.Module):
    """Jaw dims attend over the expression dims.

    Each expression dim is a token built from its value at frame t and its running mean over frames
    ≤ t (causal: the reference used the mean over the whole sequence, leaking the future). Each jaw dim
    queries those tokens from the frame's hidden state; a direct linear path is added."""

    def __init__(self, d_model: int, n_exp: int, n_jaw: int, d_att: int):
        super().__init__()
        self.n_jaw, self.d_att = n_jaw, d_att
        self.tok = nn.Linear(2, d_att)
        self.exp_emb = nn.Parameter(torch.randn(n_exp, d_att) * 0.02)
        self.q = nn.Linear(d_model, n_jaw * d_att)
        self.jaw_emb = nn.Parameter(torch.randn(n_jaw, d_att) * 0.02)
        self.out = nn.Linear(d_att, 1)
        self.direct = nn.Linear(d_model, n_jaw)

    def forward(self, g, exp, prev_sum=None, prev_count: int = 0):
        """g (B,T,d), exp (B,T,E) -> jaw (B,T,J), running sum of exp up to the last frame (B,E)."""
        B, T, E = exp.shape
        csum = exp.float().cumsum(1)  # float32 running sum: bf16 would drift over 250 frames
        if prev_sum is not None:
            csum = csum + prev_sum[:, None]
        cnt = torch.arange(1, T + 1, device=exp.device, dtype=torch.float32) + prev_count
        run = csum / cnt[None, :, None]
        # token_e = W0·exp_e + W1·run_e + (b + emb_e); the scores and the attended token are computed
        # in factorised form, never materialising the (B, T, E, d_att) token tensor
        W0, W1 = self.tok.weight[:, 0], self.tok.weight[:, 1]
        base = self.tok.bias + self.exp_emb                                   # (E, a)
        q = self.q(g).view(B, T, self.n_jaw, self.d_att) + self.jaw_emb      # (B,T,J,a)
        scores = (exp[:, :, None, :] * (q @ W0)[..., None] + run[:, :, None, :] * (q @ W1)[..., None]
                  + q @ base.t())                                             # (B,T,J,E)
        att = torch.softmax(scores / math.sqrt(self.d_att), -1)
        ctx = ((att * exp[:, :, None]).sum(-1, keepdim=True) * W0 + (att * run[:, :, None]).sum(-1, keepdim=True) * W1
               + att @ base)                                                  # (B,T,J,a)
        jaw = self.out(ctx).squeeze(-1) + self.direct(g)
        return jaw, csum[:, -1]


class CTEG(nn.Module):
    def __init__(self, cfg: CTEGConfig, bos):
        super().__init__()
        self.cfg = cfg
        d, D = cfg.d_model, cfg.D
        jaw = sorted(set(cfg.jaw_dims))
        exp = [i for i in range(D) if i not in jaw]
        self.register_buffer("jaw_idx", torch.tensor(jaw, dtype=torch.long), persistent=False)
        self.register_buffer("exp_idx", torch.tensor(exp, dtype=torch.long), persistent=False)
        self.register_buffer("perm", torch.argsort(torch.tensor(exp + jaw, dtype=torch.long)), persistent=False)
        self.register_buffer("bos", torch.as_tensor(bos, dtype=torch.float32).reshape(D))
        self.inp = nn.Linear(D, d)
        self.txt = nn.Linear(cfg.text_dim, d)
        self.layers = nn.ModuleList(DecoderLayer(d, cfg.n_heads, cfg.d_ff, cfg.dropout) for _ in range(cfg.n_layers))
        self.ln = nn.LayerNorm(d)
        self.prior = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, 2 * cfg.d_latent))
        self.post = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, 2 * cfg.d_latent))
        self.fuse = nn.Sequential(nn.Linear(d + cfg.d_latent, d), nn.GELU(), nn.Linear(d, d))
        self.ln_g = nn.LayerNorm(d)
        self.exp_out = nn.Linear(d, len(exp)) if exp else None
        self.jaw_att = ExpressionWiseAttention(d, len(exp), len(jaw), cfg.d_att) if jaw and exp else None
        self.jaw_lin = nn.Linear(d, len(jaw)) if jaw and not exp else None
        self.stop = nn.Linear(d, 1)

    # ------------------------------------------------------------ pieces
    def memory(self, txt, tmask):
        mem = self.txt(txt)
        kv = [layer.cross.kv_of(mem) for layer in self.layers]
        return kv, tmask[:, None, None, :]

    def decode(self, frames, mem_kv, mem_mask, start: int = 0, caches=None):
        """frames (B,T,D) at positions start..start+T-1 -> hidden (B,T,d)."""
        pos = torch.arange(start, start + frames.shape[1], device=frames.device)
        x = self.inp(frames) + sinusoid(pos, self.cfg.d_model)
        for i, layer in enumerate(self.layers):
            x = layer(x, mem_kv[i], mem_mask, None if caches is None else caches[i])
        return self.ln(x)

    def head(self, h, z, prev_sum=None, prev_count: int = 0):
        """Frame from hidden + latent: expression dims linearly, jaw dims by expression-wise attention."""
        g = self.ln_g(h + self.fuse(torch.cat([h, z], -1)))
        run = None
        if self.exp_out is None:
            return self.jaw_lin(g), run
        e = self.exp_out(g)
        if self.jaw_att is None:
            return e, run
        jaw, run = self.jaw_att(g, e, prev_sum, prev_count)
        # [expression dims, jaw dims] back into the dataset's column order
        y = torch.cat([e, jaw], -1)[..., self.perm]
        return y, run

    @staticmethod
    def gauss(params):
        mu, logv = params.float().chunk(2, -1)
        return mu, logv.clamp(-12.0, 8.0)

    # ------------------------------------------------------------ training
    def forward(self, x, m, txt, tmask, noise=None, use_prior: bool = False):
        """Teacher-forced pass. x (B,T,D) targets, m (B,T) real-frame mask, txt (B,L,H), tmask (B,L).

        Returns pred (posterior z; prior z when `use_prior`), pred_prior (prior z), kl (B,T) per frame,
        stop logits (B,T): the logit at t says whether frame t is the sequence's last."""
        B, T, D = x.shape
        mem_kv, mem_mask = self.memory(txt, tmask)
        inp = torch.cat([self.bos.to(x.dtype).expand(B, 1, D), x], 1)
        h = self.decode(inp, mem_kv, mem_mask)
        h_prev, h_next = h[:, :T], h[:, 1:]
        mu_p, lv_p = self.gauss(self.prior(h_prev))
        mu_q, lv_q = self.gauss(self.post(torch.cat([h_prev, h_next], -1)))
        if noise is None:
            e_q, e_p = torch.randn_like(mu_q), torch.randn_like(mu_p)
        else:
            e_q, e_p = noise
        z_q = mu_q + (0.5 * lv_q).exp() * e_q
        z_p = mu_p + (0.5 * lv_p).exp() * e_p
        pred_prior, _ = self.head(h_prev, z_p.to(h_prev.dtype))
        pred = pred_prior if use_prior else self.head(h_prev, z_q.to(h_prev.dtype))[0]
        kl = 0.5 * (lv_p - lv_q + (lv_q.exp() + (mu_q - mu_p) ** 2) / lv_p.exp() - 1.0).sum(-1)
        stop = self.stop(h_next).squeeze(-1)
        return {"pred": pred, "pred_prior": pred_prior, "kl": kl, "stop": stop}

    # ------------------------------------------------------------ sampling
    @torch.no_grad()
    def generate(self, txt, tmask, max_frames: int, min_frames: int = 1, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Sample one sequence per row, incrementally (cached keys/values: each step costs one position).

        Returns a list of (T_i, D) tensors in the model's value space; T_i ends at the first sampled stop."""
        B, D = txt.shape[0], self.cfg.D
        dev = txt.device
        mem_kv, mem_mask = self.memory(txt, tmask)
        caches = [dict() for _ in self.layers]
        h = self.decode(self.bos.expand(B, 1, D), mem_kv, mem_mask, 0, caches)
        run_sum = None
        frames = []
        lengths = torch.full((B,), max_frames, dtype=torch.long, device=dev)
        done = torch.zeros(B, dtype=torch.bool, device=dev)
        for t in range(max_frames):
            mu, lv = self.gauss(self.prior(h))
            eps = torch.randn(mu.shape, generator=generator, device=dev)
            z = mu + temperature * (0.5 * lv).exp() * eps
            y, run_sum = self.head(h, z.to(h.dtype), run_sum, t)
            frames.append(y)
            if t + 1 == max_frames:
                break
            h = self.decode(y, mem_kv, mem_mask, t + 1, caches)
            p_stop = torch.sigmoid(self.stop(h).float()).reshape(B)
            u = torch.rand(B, generator=generator, device=dev)
            stop = (u < p_stop) & (t + 1 >= min_frames) & ~done
            lengths[stop] = t + 1
            done |= stop
            if bool(done.all()):
                break
        seq = torch.cat(frames, 1).float()
        return [seq[i, :int(lengths[i].clamp(max=seq.shape[1]))] for i in range(B)]


def masked_mean(v: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Mean of v over the real (m True) entries only: padding never dilutes a loss."""
    m = m.to(v.dtype)
    return (v * m).sum() / m.sum().clamp_min(1.0)


def cteg_loss(out: dict, x, m, jaw_dims, jaw_weight=5.0, kl_weight=1.0, prior_weight=1.0, stop_weight=1.0,
              ends=None):
    """EmoAva's loss: per-frame Euclidean distance with the jaw dims scaled ×jaw_weight, + KL + the
    one-step prior loss (the same distance for frames decoded from the prior); + our stop loss.
    `ends` (B,) bool: False for a sequence truncated to the frame cap, whose last kept frame is not its end."""
    w = torch.ones(x.shape[-1], device=x.device)
    if len(jaw_dims):
        w[list(jaw_dims)] = jaw_weight

    def dist(p):
        return (((p.float() - x) * w) ** 2).sum(-1).clamp_min(1e-12).sqrt()

    recon = masked_mean(dist(out["pred"]), m)
    prior = masked_mean(dist(out["pred_prior"]), m)
    kl = masked_mean(out["kl"].float(), m)
    lengths = m.sum(1)
    tgt = torch.zeros_like(m, dtype=torch.float32)
    keep = lengths > 0 if ends is None else (lengths > 0) & ends.to(lengths.device)
    rows = torch.nonzero(keep).squeeze(1)
    tgt[rows, lengths[rows] - 1] = 1.0
    stop = masked_mean(F.binary_cross_entropy_with_logits(out["stop"].float(), tgt, reduction="none"), m)
    total = recon + kl_weight * kl + prior_weight * prior + stop_weight * stop
    return total, {"loss": float(total.detach()), "recon": float(recon.detach()), "kl": float(kl.detach()),
                   "prior": float(prior.detach()), "stop": float(stop.detach())}
