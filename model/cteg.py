"""CTEG: continuous text-to-expression generator (EmoAva, EMNLP 2025), with the reference's defects fixed.

A frozen text encoder's token states are the memory of a transformer decoder over expression frames
`[BOS, y_1 .. y_T]`. At each step t a latent z_t is drawn, from the posterior q(z | h_t, h_{t+1})
(which has seen the target frame y_{t+1}) in training and from the prior p(z | h_t) when sampling.
Two placements of the latent (`CTEGConfig.latent`):
- `head`: one small z_t fused with the last layer's h_t in the output head (cheap; the `small` preset);
- `layer`: the reference's placement: in every layer a z_t (d_latent = d_model in the `paper` preset) is
  added to the residual stream after self-attention, before cross-attention.
A separate one-step prior head decodes y_{t+1} from the prior sample alone (the reference's `pri_ffn` +
`trg_word_prj_one_step`), so the prior loss never teaches the main head to ignore z.
The jaw dims are predicted by an expression-wise attention over the expression dims. Fixes against
the reference: that attention is causal (it used a whole-sequence mean), the KL is averaged over real
frames only (it averaged over padding), and the length is learned (the reference always decoded 254
frames): a length head on the text draws each sequence's length, and a stop head is kept beside it."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT_NOISE_REFERENCE = math.exp(0.5)  # EmoAva's `-second_sample one`: N(0, e^1) on each layer's output


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
    latent: str = "head"      # "head" | "layer"
    out_noise: float = 0.0    # std of the noise added to each layer's output (reference: e^0.5); 0 = off

    def __post_init__(self):
        if self.latent not in ("head", "layer"):
            raise ValueError(f"model latent {self.latent!r}: choose 'head' or 'layer'")

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
    """Pre-LN: causal self-attention over frames | (latent, in `layer` mode) | cross-attention to text, FFN."""

    def __init__(self, d, h, d_ff, dropout):
        super().__init__()
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_att = Attention(d, h, dropout)
        self.cross = Attention(d, h, dropout)
        self.ff = nn.Sequential(nn.Linear(d, d_ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ff, d))
        self.drop = nn.Dropout(dropout)

    def self_block(self, x, cache=None):
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
        return x + self.drop(self.self_att(y, k, v, causal=causal))

    def cross_block(self, x, mem_kv, mem_mask):
        x = x + self.drop(self.cross(self.ln2(x), *mem_kv, mask=mem_mask))
        return x + self.drop(self.ff(self.ln3(x)))


class Latent(nn.Module):
    """Prior p(z_t | s_t) and posterior q(z_t | s_t, s_{t+1}) as diagonal Gaussians over d_latent dims."""

    def __init__(self, d_in: int, d_latent: int):
        super().__init__()
        self.prior = nn.Sequential(nn.Linear(d_in, d_in), nn.GELU(), nn.Linear(d_in, 2 * d_latent))
        self.post = nn.Sequential(nn.Linear(2 * d_in, d_in), nn.GELU(), nn.Linear(d_in, 2 * d_latent))

    @staticmethod
    def gauss(params):
        mu, logv = params.float().chunk(2, -1)
        return mu, logv.clamp(-12.0, 8.0)

    def p(self, s):
        return self.gauss(self.prior(s))

    def q(self, s_prev, s_next):
        return self.gauss(self.post(torch.cat([s_prev, s_next], -1)))


def kl_diag(mu_q, lv_q, mu_p, lv_p):
    """KL(q || p) per latent dim (…, k), in nats."""
    return 0.5 * (lv_p - lv_q + (lv_q.exp() + (mu_q - mu_p) ** 2) / lv_p.exp() - 1.0)


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
        d, D, k = cfg.d_model, cfg.D, cfg.d_latent
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
        if cfg.latent == "layer":
            self.lat_ln = nn.ModuleList(nn.LayerNorm(d) for _ in range(cfg.n_layers))
            self.lat = nn.ModuleList(Latent(d, k) for _ in range(cfg.n_layers))
            self.lat_up = nn.ModuleList(nn.Identity() if k == d else nn.Linear(k, d, bias=False)
                                        for _ in range(cfg.n_layers))
        else:
            self.lat = nn.ModuleList([Latent(d, k)])
            self.fuse = nn.Sequential(nn.Linear(d + k, d), nn.GELU(), nn.Linear(d, d))
        self.ln_g = nn.LayerNorm(d)
        # the one-step prior head reads the prior sample only (EmoAva's pri_ffn + trg_word_prj_one_step)
        self.prior_head = nn.Sequential(nn.Linear(k, d), nn.GELU(), nn.Linear(d, D))
        self.exp_out = nn.Linear(d, len(exp)) if exp else None
        self.jaw_att = ExpressionWiseAttention(d, len(exp), len(jaw), cfg.d_att) if jaw and exp else None
        self.jaw_lin = nn.Linear(d, len(jaw)) if jaw and not exp else None
        self.stop = nn.Linear(d, 1)
        # length head: text → Gaussian over log(frames)
        self.length = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, 2))

    # ------------------------------------------------------------ pieces
    def memory(self, txt, tmask):
        mem = self.txt(txt)
        kv = [layer.cross.kv_of(mem) for layer in self.layers]
        m = tmask.to(mem.dtype)[..., None]
        pooled = (mem * m).sum(1) / m.sum(1).clamp_min(1.0)
        return kv, tmask[:, None, None, :], pooled

    def length_params(self, pooled):
        mu, lv = self.length(pooled).float().unbind(-1)
        return mu + 3.5, lv.clamp(-8.0, 4.0)  # offset: log(33 frames), a typical utterance at 25 fps

    def decode(self, frames, mem_kv, mem_mask, start: int = 0, caches=None, zmode: str = "prior",
               eps=None, noise=None, temperature: float = 1.0, eps_q=None, post_mask=None):
        """frames (B,T,D) at positions start..start+T-1 -> hidden (B,T,d) and the latent statistics.

        `layer` latents: zmode "post" (teacher forcing: z_t from q(z | s_t, s_{t+1}); the last position,
        which has no successor, from the prior) or "prior". eps: per layer (B,T,k) standard normals, or
        None to draw them (eps_q likewise for the posterior); noise: per layer (B,T,d) for the output
        noise, or None to draw. post_mask (B,T-1): where the posterior applies (its target frame is real;
        elsewhere the prior, so padding never reaches a real frame's state)."""
        pos = torch.arange(start, start + frames.shape[1], device=frames.device)
        x = self.inp(frames) + sinusoid(pos, self.cfg.d_model)
        stats = []
        for i, layer in enumerate(self.layers):
            x = layer.self_block(x, None if caches is None else caches[i])
            if self.cfg.latent == "layer":
                s = self.lat_ln[i](x)
                mu_p, lv_p = self.lat[i].p(s)
                e = torch.randn_like(mu_p) if eps is None else eps[i]
                z_p = mu_p + temperature * (0.5 * lv_p).exp() * e
                st = {"mu_p": mu_p, "lv_p": lv_p, "z_p": z_p}
                z = z_p
                if zmode == "post":
                    mu_q, lv_q = self.lat[i].q(s[:, :-1], s[:, 1:])
                    eq = torch.randn_like(mu_q) if eps_q is None else eps_q[i][:, :mu_q.shape[1]]
                    z_q = mu_q + (0.5 * lv_q).exp() * eq
                    if post_mask is not None:
                        z_q = torch.where(post_mask[..., None], z_q, z_p[:, :-1])
                    z = torch.cat([z_q, z_p[:, -1:]], 1)
                    st.update(mu_q=mu_q, lv_q=lv_q)
                stats.append(st)
                x = x + self.lat_up[i](z.to(x.dtype))
            x = layer.cross_block(x, mem_kv[i], mem_mask)
            if self.cfg.out_noise > 0:
                x = x + self.cfg.out_noise * (torch.randn_like(x) if noise is None else noise[i].to(x.dtype))
        return self.ln(x), stats

    def head(self, h, z=None, prev_sum=None, prev_count: int = 0):
        """Frame from hidden (+ latent in `head` mode): expression dims linearly, jaw dims by
        expression-wise attention."""
        g = self.ln_g(h + self.fuse(torch.cat([h, z.to(h.dtype)], -1))) if z is not None else self.ln_g(h)
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

    # ------------------------------------------------------------ training
    def forward(self, x, m, txt, tmask, use_prior: bool = False, noise=None):
        """Teacher-forced pass. x (B,T,D) targets, m (B,T) real-frame mask, txt (B,L,H), tmask (B,L).

        Returns pred (B,T+1,D): the frame after each input position (position t predicts y_{t+1};
        position T, after the last frame, is what the reference scores against its zero EOS frame),
        decoded with posterior latents, or prior ones when `use_prior`; pred_prior (B,T,D) from the
        one-step prior head; kl (B,T,k) per latent dim (mean over layers); stop logits (B,T) (the logit
        at t says whether frame t is the last); len_mu, len_lv (B,) the length head's log-normal.
        `noise` (tests, seeded evaluation): (e_q, e_p), each (n_latents, B, ≥T+1, k) standard normals."""
        B, T, D = x.shape
        mem_kv, mem_mask, pooled = self.memory(txt, tmask)
        inp = torch.cat([self.bos.to(x.dtype).expand(B, 1, D), x], 1)
        if self.cfg.latent == "layer":
            e_q, e_p = (None, None) if noise is None else ([e[:, :T + 1] for e in noise[0]], [e[:, :T + 1] for e in noise[1]])
            h, stats = self.decode(inp, mem_kv, mem_mask, zmode="prior" if use_prior else "post", eps=e_p, eps_q=e_q,
                                   post_mask=m)
            pred, _ = self.head(h)
            z_p = sum(st["z_p"][:, :T] for st in stats)
            kl = None
            if not use_prior:
                kl = sum(kl_diag(st["mu_q"], st["lv_q"], st["mu_p"][:, :T], st["lv_p"][:, :T]) for st in stats)
                kl = kl / len(stats)
        else:
            h, _ = self.decode(inp, mem_kv, mem_mask)
            mu_p, lv_p = self.lat[0].p(h)
            e_p = torch.randn_like(mu_p) if noise is None else noise[1][0][:, :T + 1]
            z_p = mu_p + (0.5 * lv_p).exp() * e_p
            if use_prior:
                z, kl = z_p, None
            else:
                mu_q, lv_q = self.lat[0].q(h[:, :T], h[:, 1:])
                e_q = torch.randn_like(mu_q) if noise is None else noise[0][0][:, :T]
                z_q = mu_q + (0.5 * lv_q).exp() * e_q
                z = torch.cat([torch.where(m[..., None], z_q, z_p[:, :T]), z_p[:, T:]], 1)
                kl = kl_diag(mu_q, lv_q, mu_p[:, :T], lv_p[:, :T])
            pred, _ = self.head(h, z)
            z_p = z_p[:, :T]
        pred_prior = self.prior_head(z_p.to(h.dtype))
        stop = self.stop(h[:, 1:]).squeeze(-1)
        len_mu, len_lv = self.length_params(pooled)
        return {"pred": pred, "pred_prior": pred_prior, "kl": kl, "stop": stop, "len_mu": len_mu, "len_lv": len_lv}

    # ------------------------------------------------------------ sampling
    @torch.no_grad()
    def generate(self, txt, tmask, max_frames: int, min_frames: int = 1, temperature: float = 1.0,
                 generator: torch.Generator | list | None = None, stop: str = "length") -> list[torch.Tensor]:
        """Sample one sequence per row, incrementally (cached keys/values: each step costs one position).

        `generator`: one torch.Generator for the batch, or one per row (a row's sample then depends on
        its own stream only, not on the batch it shares). `stop`: "length" draws each row's length from
        the length head first; "hazard" ends at the first stop drawn from the stop head after a frame.
        Returns a list of (T_i, D) tensors in the model's value space."""
        B, D, dev = txt.shape[0], self.cfg.D, txt.device
        cfg = self.cfg
        n_lat = cfg.n_layers if cfg.latent == "layer" else 1
        gens = generator if isinstance(generator, (list, tuple)) else None

        def normal(*shape):  # (B, *shape) standard normals, row i from its own stream when given
            if gens is None:
                return torch.randn((B, *shape), generator=generator, device="cpu" if generator is None
                                   else generator.device).to(dev)
            return torch.stack([torch.randn(shape, generator=g, device=g.device) for g in gens]).to(dev)

        def uniform(*shape):
            if gens is None:
                return torch.rand((B, *shape), generator=generator, device="cpu" if generator is None
                                  else generator.device).to(dev)
            return torch.stack([torch.rand(shape, generator=g, device=g.device) for g in gens]).to(dev)

        # every random number a row will use is drawn up front, from that row's stream, in a fixed order
        u_len = normal()
        eps = normal(max_frames, n_lat, cfg.d_latent)
        u_stop = uniform(max_frames)
        noise = normal(max_frames, cfg.n_layers, cfg.d_model) if cfg.out_noise > 0 else None
        mem_kv, mem_mask, pooled = self.memory(txt, tmask)
        if stop == "length":
            mu, lv = self.length_params(pooled)
            n = torch.exp(mu + temperature * (0.5 * lv).exp() * u_len).round().long()
            lengths = n.clamp(min_frames, max_frames)
        elif stop == "hazard":
            lengths = torch.full((B,), max_frames, dtype=torch.long, device=dev)
        else:
            raise ValueError(f"stop {stop!r}: choose 'length' or 'hazard'")
        steps = int(lengths.max()) if stop == "length" else max_frames
        caches = [dict() for _ in self.layers]

        def step_decode(frame, t):
            e = [eps[:, t:t + 1, i] for i in range(n_lat)]
            nz = None if noise is None else [noise[:, t:t + 1, i] for i in range(cfg.n_layers)]
            h, _ = self.decode(frame, mem_kv, mem_mask, t, caches, "prior", e, nz, temperature)
            return h

        h = step_decode(self.bos.expand(B, 1, D), 0)
        run_sum = None
        frames = []
        done = torch.zeros(B, dtype=torch.bool, device=dev)
        for t in range(steps):
            z = None
            if cfg.latent == "head":
                mu, lv = self.lat[0].p(h)
                z = mu + temperature * (0.5 * lv).exp() * eps[:, t:t + 1, 0]
            y, run_sum = self.head(h, z, run_sum, t)
            frames.append(y)
            if t + 1 == steps:
                break
            h = step_decode(y, t + 1)
            if stop == "hazard":
                p_stop = torch.sigmoid(self.stop(h).float()).reshape(B)
                s = (u_stop[:, t] < p_stop) & (t + 1 >= min_frames) & ~done
                lengths[s] = t + 1
                done |= s
                if bool(done.all()):
                    break
        seq = torch.cat(frames, 1).float()
        return [seq[i, :int(lengths[i].clamp(max=seq.shape[1]))] for i in range(B)]


def masked_mean(v: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Mean of v over the real (m True) entries only: padding never dilutes a loss."""
    m = m.to(v.dtype)
    return (v * m).sum() / m.sum().clamp_min(1.0)


def loss_weights(D: int, jaw_dims, jaw_weight: float, scale=None) -> torch.Tensor:
    """Per-dim weights of the frame distance. EmoAva weights the jaw ×5 on *raw* values (FLAME jaw
    angles are ~20× smaller than expression coefficients); `scale` (the normaliser's std over a
    reference std) carries that into normalised space: w_d = jaw_weight_d · std_d / mean expression std,
    the reference's raw-unit distance up to one constant factor."""
    w = torch.ones(D)
    if len(jaw_dims):
        w[list(jaw_dims)] = jaw_weight
    if scale is not None:
        w = w * torch.as_tensor(scale, dtype=torch.float32)
    return w


def cteg_loss(out: dict, x, m, weights, kl_weight=1.0, prior_weight=1.0, stop_weight=1.0, length_weight=0.1,
              free_bits=0.0, ends=None):
    """EmoAva's loss: per-frame Euclidean distance (weighted dims) + KL + the one-step prior loss; +
    our stop and length losses. The KL is a *mean* over latent dims (the reference's scaling); with
    `free_bits` λ each dim's batch-mean KL costs max(λ, KL_d), so dims below λ nats are free to carry
    information. `ends` (B,) bool: False for a sequence truncated to the frame cap (no end inside)."""
    w = weights.to(x.device)
    T = x.shape[1]

    def dist(p):
        return (((p.float() - x) * w) ** 2).sum(-1).clamp_min(1e-12).sqrt()

    recon = masked_mean(dist(out["pred"][:, :T]), m)
    prior = masked_mean(dist(out["pred_prior"]), m)
    mf = m.to(torch.float32)[..., None]
    kl_d = (out["kl"].float() * mf).sum((0, 1)) / mf.sum().clamp_min(1.0)       # (k,) nats per dim
    kl = kl_d.mean()
    kl_obj = kl_d.clamp_min(free_bits).mean() if free_bits > 0 else kl
    lengths = m.sum(1)
    tgt = torch.zeros_like(m, dtype=torch.float32)
    keep = lengths > 0 if ends is None else (lengths > 0) & ends.to(lengths.device)
    rows = torch.nonzero(keep).squeeze(1)
    tgt[rows, lengths[rows] - 1] = 1.0
    stop = masked_mean(F.binary_cross_entropy_with_logits(out["stop"].float(), tgt, reduction="none"), m)
    # length NLL of log(frames) under the head's Gaussian, for sequences whose end is inside the window
    logn = lengths.clamp_min(1).float().log()
    nll = 0.5 * (out["len_lv"] + (logn - out["len_mu"]) ** 2 / out["len_lv"].exp())
    length = masked_mean(nll, keep)
    total = recon + kl_weight * kl_obj + prior_weight * prior + stop_weight * stop + length_weight * length
    parts = {"loss": total, "recon": recon, "kl": kl, "prior": prior, "stop": stop, "length": length,
             "active": (kl_d > 0.01).sum()}
    return total, {k: v.detach() for k, v in parts.items()}
