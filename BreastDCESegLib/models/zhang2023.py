"""The published network of Zhang et al., *Patterns* 2023, checkpoint-compatible.

``TranRUnet(in_dim, out_dim, num_filters, trans_param)`` re-implements, from the authors'
MIT-licensed code (``ZhangJD-ong/AI-assistant-for-breast-tumor-segmentation``,
``Inference-code/Model/Models.py``) and their paper, the network whose trained weights they
published (``best_model.pth``, key ``"model"``). Constructor arguments, ``state_dict()`` key
names and shapes and the forward computation are theirs, so their checkpoint loads with
``strict=True`` and gives the same outputs (checked against their code in
``Testing/test_zhang2023.py``):

* one residual 3-D encoder (``encoder_post``, 16-32-64-128-256 channels for
  ``num_filters=16``, BatchNorm, LeakyReLU 0.2) shared by the six phases, each entering as
  the two channels ``[phase, phase - pre]``;
* the bottleneck (stride 16: 2 x 6 x 6 = 72 tokens for a 32 x 96 x 96 window) projected to
  ``hidden_size`` by a 1x1x1 convolution and multiplied by the phase's availability
  (``time_M``, 0 for a missing phase);
* two pre-norm ViT stacks run in parallel and summed: a spatial one over the 72 tokens of
  each phase (learnt position embeddings) and a temporal one over the 6 phases of each
  token (learnt time embeddings);
* the six summed token maps concatenated (channel ``c * 6 + t``) into a residual U-Net
  decoder whose skips are the encoder maps of phase 2 (the second post-contrast phase);
* a 3x3x3 convolution, BatchNorm and a sigmoid: the output is a probability, not a logit.

The published configuration is ``TranRUnet(1, 1, 16, PUBLISHED_TRANS_PARAM)`` (hidden 768,
MLP 2048, 12 heads, 12 layers): 175,606,467 parameters. It takes windows of exactly
32 x 96 x 96 voxels (slices x rows x columns) because the 72 position embeddings are fixed.

Usage::

    from BreastDCESegLib.models import zhang2023
    net = zhang2023.build_network("published")                 # or build_network({...})
    net.load_state_dict(zhang2023.load_checkpoint("best_model.pth"), strict=True)
    prob = net(x0, x1, x2, x3, x4, x5, time_M)                 # each (B, 1, 32, 96, 96); time_M (B, 6)
    prob = net.forward_phases(x, time_M)                       # x (B, 6, 32, 96, 96)
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Union

import torch
import torch.nn.functional as F
from torch import nn

MIN_PHASES = 2
INPUT = "phases"
N_PHASES = 6                 # the network always takes six phases (missing ones flagged in time_M)
N_TOKENS = 72                # 2 x 6 x 6 bottleneck tokens of a 32 x 96 x 96 window
WINDOW = (32, 96, 96)        # slices, rows, columns
SKIP_PHASE = 2               # decoder skips come from this phase's encoder maps
PARAMETERS_PUBLISHED = 175_606_467
PUBLISHED_TRANS_PARAM: dict[str, Any] = {
    "hidden_size": 768, "MLP_dim": 2048, "Num_heads": 12,
    "Dropout_rate": 0.1, "Attention_dropout_rate": 0.0, "Trans_num_layers": 12}
CONFIGS: dict[str, dict[str, Any]] = {
    "published": {"in_dim": 1, "out_dim": 1, "num_filters": 16, "trans_param": PUBLISHED_TRANS_PARAM},
    "tiny": {"in_dim": 1, "out_dim": 1, "num_filters": 4,
             "trans_param": {"hidden_size": 16, "MLP_dim": 32, "Num_heads": 2, "Dropout_rate": 0.1,
                             "Attention_dropout_rate": 0.0, "Trans_num_layers": 1}},
}


# ----------------------------------------------------------------------------- conv blocks
def _act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


def _conv_bn_act(cin: int, cout: int, act: nn.Module) -> nn.Sequential:
    """3x3x3 convolution, BatchNorm, activation (keys ``0.*``, ``1.*``)."""
    return nn.Sequential(nn.Conv3d(cin, cout, 3, padding=1), nn.BatchNorm3d(cout), act)


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    """conv-BN-act then conv-BN, no final activation (keys ``0.0``, ``0.1``, ``1``, ``2``)."""
    return nn.Sequential(_conv_bn_act(cin, cout, _act()), nn.Conv3d(cout, cout, 3, padding=1), nn.BatchNorm3d(cout))


def _up(cin: int, cout: int) -> nn.Sequential:
    """Transposed 3x3x3 convolution (stride 2, doubles the size), BatchNorm, activation."""
    return nn.Sequential(nn.ConvTranspose3d(cin, cout, 3, stride=2, padding=1, output_padding=1),
                         nn.BatchNorm3d(cout), _act())


class ResidualEncoder(nn.Module):
    """Five levels, each ``double_conv(x) + conv_bn_act(x)``; max-pooling between levels.

    Submodules ``down_k``/``res_k``/``pool_k`` (k = 1..4) and ``bridge``/``res_bridge``.
    Returns the four skip maps and the bottleneck (16 x ``num_filters`` channels, stride 16).
    """

    def __init__(self, in_dim: int, num_filters: int):
        super().__init__()
        widths = [in_dim] + [num_filters * 2 ** k for k in range(5)]
        for level in range(1, 5):
            self.add_module(f"down_{level}", _double_conv(widths[level - 1], widths[level]))
            self.add_module(f"res_{level}", _conv_bn_act(widths[level - 1], widths[level], _act()))
            self.add_module(f"pool_{level}", nn.MaxPool3d(2, 2))
        self.bridge = _double_conv(widths[4], widths[5])
        self.res_bridge = _conv_bn_act(widths[4], widths[5], _act())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for level in range(1, 5):
            f = getattr(self, f"down_{level}")(x) + getattr(self, f"res_{level}")(x)
            features.append(f)
            x = getattr(self, f"pool_{level}")(f)
        features.append(self.res_bridge(x) + self.bridge(x))
        return features


class ResidualDecoder(nn.Module):
    """``ins`` (token channels -> 16 filters), then four x2 up-steps with skip concatenation.

    Up-steps 2-4 are residual (``up_k`` + ``res_upk``), the last (``up_5``) is not; ``out``
    is conv-BN-sigmoid.
    """

    def __init__(self, in_dim: int, out_dim: int, num_filters: int):
        super().__init__()
        n = num_filters
        self.ins = _conv_bn_act(in_dim, 16 * n, _act())
        for step, (cin, skip) in zip(range(2, 6), ((16 * n, 8 * n), (8 * n, 4 * n), (4 * n, 2 * n), (2 * n, n))):
            cout = cin // 2
            self.add_module(f"trans_{step}", _up(cin, cin))
            self.add_module(f"up_{step}", _double_conv(cin + skip, cout))
            if step < 5:
                self.add_module(f"res_up{step}", _conv_bn_act(cin + skip, cout, _act()))
        self.out = _conv_bn_act(n, out_dim, nn.Sigmoid())

    def forward(self, f1, f2, f3, f4, bottleneck) -> torch.Tensor:
        x = self.ins(bottleneck)
        for step, skip in zip(range(2, 6), (f4, f3, f2, f1)):
            joined = torch.cat([getattr(self, f"trans_{step}")(x), skip], dim=1)
            x = getattr(self, f"up_{step}")(joined)
            if step < 5:
                x = x + getattr(self, f"res_up{step}")(joined)
        return self.out(x)


# ----------------------------------------------------------------------------- transformer
class Attention(nn.Module):
    """Multi-head self-attention with separate ``query``/``key``/``value``/``out`` projections."""

    def __init__(self, heads: int, hidden: int, dropout: float):
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        inner = self.heads * self.head_dim
        self.query, self.key, self.value = nn.Linear(hidden, inner), nn.Linear(hidden, inner), nn.Linear(hidden, inner)
        self.out = nn.Linear(hidden, hidden)
        self.attn_dropout, self.proj_dropout = dropout, nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, self.head_dim).transpose(1, 2)

        context = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(x)), split(self.value(x)),
                                                 dropout_p=self.attn_dropout if self.training else 0.0)
        return self.proj_dropout(self.out(context.transpose(1, 2).reshape(b, n, -1)))


class Mlp(nn.Module):
    """``fc1`` -> GELU -> dropout -> ``fc2`` -> dropout."""

    def __init__(self, hidden: int, mlp_dim: int, dropout: float):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(hidden, mlp_dim), nn.Linear(mlp_dim, hidden)
        self.dropout = nn.Dropout(dropout)
        for layer in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.normal_(layer.bias, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.dropout(F.gelu(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer layer (LayerNorm eps 1e-6): x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, hidden: int, mlp_dim: int, heads: int, dropout: float, attention_dropout: float):
        super().__init__()
        self.attention_norm = nn.LayerNorm(hidden, eps=1e-6)
        self.ffn_norm = nn.LayerNorm(hidden, eps=1e-6)
        self.ffn = Mlp(hidden, mlp_dim, dropout)
        self.attn = Attention(heads, hidden, attention_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attention_norm(x))
        return x + self.ffn(self.ffn_norm(x))


class Transformer(nn.Module):
    """``layer`` (a list of :class:`Block`) then ``encoder_norm``."""

    def __init__(self, hidden: int, mlp_dim: int, heads: int, dropout: float, attention_dropout: float,
                 layers: int):
        super().__init__()
        self.layer = nn.ModuleList(Block(hidden, mlp_dim, heads, dropout, attention_dropout) for _ in range(layers))
        self.encoder_norm = nn.LayerNorm(hidden, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.layer:
            x = block(x)
        return self.encoder_norm(x)


# ----------------------------------------------------------------------------- network
class TranRUnet(nn.Module):
    """The authors' spatial-temporal transformer U-Net (see the module docstring).

    Args:
        in_dim: channels per phase image (1); the encoder takes ``in_dim + 1`` ([phase, phase - pre]).
        out_dim: output channels (1: tumor probability).
        num_filters: encoder width at full resolution (16 in the published model).
        trans_param: ``hidden_size``, ``MLP_dim``, ``Num_heads``, ``Dropout_rate``,
            ``Attention_dropout_rate``, ``Trans_num_layers``.
    """

    def __init__(self, in_dim: int, out_dim: int, num_filters: int, trans_param: Mapping[str, Any]):
        super().__init__()
        p = dict(trans_param)
        hidden = int(p["hidden_size"])
        self.hidden = hidden
        self.encoder_post = ResidualEncoder(in_dim + 1, num_filters)
        self.decoder = ResidualDecoder(hidden * N_PHASES, out_dim, num_filters)

        def stack() -> Transformer:
            return Transformer(hidden, int(p["MLP_dim"]), int(p["Num_heads"]), float(p["Dropout_rate"]),
                               float(p["Attention_dropout_rate"]), int(p["Trans_num_layers"]))

        self.spatial_transformer = stack()
        self.temporal_transformer = stack()
        # the reference fixes the input width to 256 = 16 x num_filters for num_filters = 16
        self.patch_embeddings = nn.Conv3d(16 * num_filters, hidden, kernel_size=1)
        self.position_embeddings = nn.Parameter(torch.zeros(1, N_TOKENS, hidden))
        self.time_embeddings = nn.Parameter(torch.zeros(1, N_PHASES, hidden))
        self.dropout = nn.Dropout(float(p["Dropout_rate"]))

    def forward(self, x0, x1, x2, x3, x4, x5, time_M: torch.Tensor) -> torch.Tensor:
        """Tumor probability (B, out_dim, D, H, W) from six phases (B, in_dim, D, H, W) and
        their availability ``time_M`` (B, 6), as the reference's ``forward``."""
        return self.forward_phases(torch.stack([x0, x1, x2, x3, x4, x5], dim=1), time_M)

    def forward_phases(self, x: torch.Tensor, time_M: torch.Tensor) -> torch.Tensor:
        """The same from one tensor ``x`` (B, 6, D, H, W) or (B, 6, in_dim, D, H, W).

        The phases go through the shared encoder one after the other; only phase 2's
        full-resolution maps are kept (the decoder's skips), the others' are freed at once.
        A phase absent from the whole batch (``time_M`` 0) is not encoded: its tokens are
        multiplied by 0 anyway; when phase 2 is absent and repeats phase 1 (as the authors'
        loader makes it), phase 1's maps are its skips. Both give the same numbers as
        encoding every phase."""
        if x.dim() == 5:
            x = x.unsqueeze(2)
        b, t = x.shape[:2]
        if t != N_PHASES:
            raise ValueError(f"TranRUnet takes {N_PHASES} phases (missing ones flagged in time_M); got {t}.")
        present = (time_M != 0).any(dim=0).tolist()
        if not any(present):
            present = [True] * t
        reuse = not present[SKIP_PHASE] and present[1] and torch.equal(x[:, SKIP_PHASE], x[:, 1])
        bottlenecks, skips, kept = [], None, None
        for k in range(t):
            if not present[k] and k != SKIP_PHASE:
                bottlenecks.append(None)
                continue
            if k == SKIP_PHASE and reuse:
                skips, feats = kept, None
            else:
                feats = self.encoder_post(torch.cat([x[:, k], x[:, k] - x[:, 0]], dim=1))
            if present[k]:
                bottlenecks.append(self.patch_embeddings(feats[4]))
            else:
                bottlenecks.append(None)
            if k == 1 and reuse:
                kept = feats[:4]
            if k == SKIP_PHASE and not reuse:
                skips = feats[:4]
            del feats
        reference = next(z for z in bottlenecks if z is not None)
        z = torch.stack([zk if zk is not None else torch.zeros_like(reference) for zk in bottlenecks], dim=1)
        z = z * time_M.to(z.dtype).view(b, t, 1, 1, 1, 1)                   # (B, 6, hidden, h, w, l)
        grid = z.shape[3:]
        tokens = z.flatten(3)                                                # (B, 6, hidden, N)
        spatial = tokens.flatten(0, 1).transpose(1, 2)                       # (B*6, N, hidden)
        spatial = self.spatial_transformer(self.dropout(spatial + self.position_embeddings))
        spatial = spatial.unflatten(0, (b, t))                               # (B, 6, N, hidden)
        temporal = tokens.permute(0, 3, 1, 2).flatten(0, 1)                  # (B*N, 6, hidden)
        temporal = self.temporal_transformer(self.dropout(temporal + self.time_embeddings))
        temporal = temporal.unflatten(0, (b, -1)).transpose(1, 2)            # (B, 6, N, hidden)
        fused = (spatial + temporal).permute(0, 3, 1, 2)                     # (B, hidden, 6, N)
        fused = fused.reshape(b, self.hidden * t, *grid)                     # channel = c * 6 + t
        return self.decoder(*skips, fused)


# ----------------------------------------------------------------------------- building, loading
def build_network(config: Union[str, Mapping[str, Any]] = "published", **overrides: Any) -> TranRUnet:
    """``TranRUnet`` of a named configuration (``"published"``, ``"tiny"``) or of a dict with
    ``in_dim``, ``out_dim``, ``num_filters``, ``trans_param``; ``overrides`` replace entries
    (``trans_param`` entries may be given as a partial dict)."""
    from ..errors import ModelError

    if isinstance(config, str):
        if config not in CONFIGS:
            raise ModelError(f"family 'zhang2023' has no configuration {config!r}; choose one of {', '.join(CONFIGS)}.")
        config = CONFIGS[config]
    args = {**dict(config), **{k: v for k, v in overrides.items() if k != "trans_param"}}
    args["trans_param"] = {**dict(config.get("trans_param", {})), **dict(overrides.get("trans_param") or {})}
    unknown = set(args) - {"in_dim", "out_dim", "num_filters", "trans_param"}
    if unknown:
        raise ModelError(f"unknown zhang2023 network arguments: {', '.join(sorted(unknown))}.")
    return TranRUnet(int(args["in_dim"]), int(args["out_dim"]), int(args["num_filters"]), args["trans_param"])


def build(config: str = "published", **overrides: Any) -> TranRUnet:
    """Family-module entry point used by :func:`BreastDCESegLib.models.build_network`."""
    return build_network(config, **overrides)


def load_checkpoint(path: Union[str, os.PathLike]) -> dict[str, torch.Tensor]:
    """The network state dict of a zhang2023 checkpoint, read without executing code.

    Accepts the authors' ``best_model.pth`` (a dict whose ``"model"`` entry is the state
    dict), a ``{"state_dict": ...}`` file, a bare state dict, or ``.safetensors``. Torch
    files are read with ``torch.load(weights_only=True)``: a file that needs anything but
    tensors and plain containers is refused with :class:`~BreastDCESegLib.errors.ModelError`.
    The keys are not checked here; :func:`check_state_dict` does that.
    """
    import pickle

    from ..errors import ModelError

    path = os.fspath(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return dict(load_file(path, device="cpu"))
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelError(f"The checkpoint {path} needs Python code to be executed to load it, which is refused "
                         f"for safety ({str(exc).splitlines()[0]}). Use the authors' original best_model.pth, or "
                         "save its 'model' state dict with safetensors.") from exc
    except (OSError, RuntimeError, EOFError) as exc:
        raise ModelError(f"Could not read the checkpoint {path}: {exc}. Is it a PyTorch .pth file?") from exc
    if isinstance(ckpt, dict):
        for key in ("model", "state_dict"):
            if isinstance(ckpt.get(key), dict):
                ckpt = ckpt[key]
                break
    if not isinstance(ckpt, dict) or not ckpt or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise ModelError(f"The checkpoint {path} does not hold a state dict of tensors (found "
                         f"{type(ckpt).__name__}); expected the authors' best_model.pth with a 'model' entry.")
    return {str(k).removeprefix("module."): v for k, v in ckpt.items()}


def check_state_dict(state: Mapping[str, torch.Tensor], config: Union[str, Mapping[str, Any]] = "published"
                     ) -> TranRUnet:
    """Build ``config`` and load ``state`` with ``strict=True``; a mismatch raises ModelError
    naming the first missing/unexpected keys or shapes. Returns the network (eval mode)."""
    from ..errors import ModelError

    network = build_network(config)
    expected = network.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        parts = [f"{name}: {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}"
                 for name, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if items]
        raise ModelError("The state dict does not fit the zhang2023 network "
                         f"({config if isinstance(config, str) else 'custom'} configuration): " + "; ".join(parts))
    network.load_state_dict(state, strict=True)
    return network.eval()


def make_loss():
    """Training is not offered for this family: it runs the authors' published weights."""
    from ..errors import ModelError

    raise ModelError("The zhang2023 family runs the authors' published checkpoint; it is not trained here.")
