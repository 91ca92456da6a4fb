"""Network families: shapes, variable phases, losses with gradients, paper sizes, VQ-VAE clustering.

Paper configurations are built on the meta device (no memory, no compute) for the
parameter counts, FLOP counts and the (48, 96, 96) patch shape check.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from BreastDCESegLib.errors import BadInputError, ModelError  # noqa: E402
from BreastDCESegLib.models import FAMILIES, build_network, family_module  # noqa: E402
from BreastDCESegLib.models.blocks import count_flops, count_parameters  # noqa: E402

torch.set_num_threads(2)
PATCH = (16, 32, 32)
PAPER_PARAMS = {"st_transformer": 175.5e6, "tsesnet": 103.58e6, "rst2g": 85.24e6}
TSESNET_GMACS = 98.66


def _phases(p: int, patch=PATCH, b: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, p, *patch, generator=g) * 0.1
    x[:, 1:, 4:10, 10:20, 10:20] += torch.linspace(1.0, 0.6, p - 1).view(1, -1, 1, 1, 1) if p > 1 else 0
    return x


def _target(patch=PATCH, b: int = 1) -> torch.Tensor:
    """A 12x16x16 box: tumor and background at every deep-supervision level."""
    t = torch.zeros(b, 1, *patch)
    t[:, :, 2:14, 8:24, 8:24] = 1.0
    return t


def _phase_counts(family: str) -> list[int]:
    return [1, 2, 3, 6] if family_module(family).MIN_PHASES == 1 else [2, 3, 6]


def test_every_family_follows_the_module_contract():
    assert set(FAMILIES) == {"breast_unet", "st_transformer", "tsesnet", "rst2g", "resunet", "heterogeneity"}
    for family in FAMILIES:
        mod = family_module(family)
        assert {"small", "paper"} <= set(mod.CONFIGS)
        assert mod.INPUT in ("phases", "pre")
        assert callable(mod.build) and callable(mod.make_loss)
    assert family_module("breast_unet").INPUT == "pre" and family_module("heterogeneity").INPUT == "pre"
    assert family_module("resunet").MIN_PHASES == 2 and family_module("breast_unet").MIN_PHASES == 1


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_small_forward_shapes_for_each_phase_count(family):
    torch.manual_seed(0)
    net = build_network(family, "small").eval()
    for p in _phase_counts(family):
        with torch.no_grad():
            out = net(_phases(p))
        assert out.shape == (1, 1, *PATCH), (family, p)
        assert torch.isfinite(out).all()


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_forward_train_loss_is_finite_with_gradients(family):
    torch.manual_seed(0)
    net = build_network(family, "small").train()
    out = net.forward_train(_phases(3, b=2))
    assert out["logits"].shape == (2, 1, *PATCH)
    loss = family_module(family).make_loss()(out, _target(b=2))
    assert loss.ndim == 0 and math.isfinite(loss.item()) and loss.item() > 0
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing, missing[:5]
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())
    assert sum(float(p.grad.abs().sum()) for p in net.parameters()) > 0


@pytest.mark.parametrize("family", list(FAMILIES))
def test_small_configs_are_small(family):
    n = count_parameters(build_network(family, "small"))
    assert 0.5e6 <= n <= 3.0e6, n


@pytest.mark.parametrize("family", list(FAMILIES))
def test_paper_config_takes_the_paper_patch_on_meta(family):
    with torch.device("meta"):
        net = build_network(family, "paper")
        out = net(torch.zeros(1, 6, 48, 96, 96))
        small = build_network(family, "small")(torch.zeros(1, 3, 32, 64, 64))
    assert out.shape == (1, 1, 48, 96, 96) and out.device.type == "meta"
    assert small.shape == (1, 1, 32, 64, 64)
    if family in PAPER_PARAMS:
        n = count_parameters(net)
        assert abs(n - PAPER_PARAMS[family]) / PAPER_PARAMS[family] < 0.05, (family, n)


def test_tsesnet_compute_matches_the_paper():
    with torch.device("meta"):
        net = build_network("tsesnet", "paper")
        flops = count_flops(net, torch.zeros(1, 6, 48, 96, 96))
    gmacs = flops / 2e9
    assert abs(gmacs - TSESNET_GMACS) / TSESNET_GMACS < 0.10, gmacs


@pytest.mark.slow
@pytest.mark.parametrize("family", ["st_transformer", "tsesnet"])
def test_padded_and_masked_phases_are_ignored(family):
    torch.manual_seed(0)
    net = build_network(family, "small").eval()
    x3 = _phases(3)
    garbage = torch.randn(1, 1, *PATCH) * 5
    with torch.no_grad():
        ref = net(x3)
        padded = net(torch.cat([x3, garbage], 1), phase_mask=torch.tensor([[True, True, True, False]]))
        unmasked = net(torch.cat([x3, garbage], 1))
        x4 = torch.cat([x3[:, :1], garbage, x3[:, 1:]], 1)
        m = torch.tensor([[True, False, True, True]])
        a = net(x4, phase_mask=m)
        b = net(torch.cat([x3[:, :1], -garbage, x3[:, 1:]], 1), phase_mask=m)
    assert torch.allclose(ref, padded, atol=1e-4)
    assert (ref - unmasked).abs().max() > 1e-3          # the mask is what removes the phase
    assert torch.allclose(a, b, atol=1e-4)
    with pytest.raises(BadInputError):
        net(x3, phase_mask=torch.tensor([[False, True, True]]))


def test_input_checks_and_config_errors():
    net = build_network("rst2g", "small")
    with pytest.raises(BadInputError, match="at least 2"):
        net(torch.zeros(1, 1, *PATCH))
    with pytest.raises(BadInputError, match="multiple of 16"):
        net(torch.zeros(1, 2, 16, 30, 32))
    with pytest.raises(ModelError):
        build_network("unet9000")
    with pytest.raises(ModelError):
        build_network("tsesnet", "small", widths=(1, 2))


def test_rst2g_uses_first_or_peak_post_phase():
    from BreastDCESegLib.models.rst2g import select_post

    x = torch.zeros(2, 4, 2, 2, 2)
    x[:, 1] = 1.0
    x[0, 3] = 3.0
    x[1, 2] = 2.0
    assert torch.equal(select_post(x, "first"), x[:, 1:2])
    peak = select_post(x, "peak")
    assert peak[0].max() == 3.0 and peak[1].max() == 2.0


def test_losses_reward_the_right_answer():
    from BreastDCESegLib.models.rst2g import sobel_boundary_loss
    from BreastDCESegLib.models.tsesnet import tsc_loss

    target = _target(b=2)
    good, bad = (target * 2 - 1) * 20, (1 - target * 2) * 20
    assert sobel_boundary_loss(good, target) < 1e-3 < sobel_boundary_loss(bad, target)
    emb = torch.nn.functional.normalize(torch.stack([1 - target[:, 0], target[:, 0]], 1), dim=1)
    noise = torch.nn.functional.normalize(torch.randn(2, 2, *PATCH), dim=1)
    assert tsc_loss([emb], target) < 1e-3 < tsc_loss([noise], target)


def _tic_curves(n_per: int, n_points: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, n_points)
    washout = torch.where(t < 0.25, t / 0.25, 1 - 0.4 * (t - 0.25) / 0.75)
    shapes = torch.stack([washout, t.clone(), torch.zeros_like(t)])        # washout, persistent, flat
    labels = torch.arange(3).repeat_interleave(n_per)
    amp = 0.7 + 0.6 * torch.rand(len(labels), 1, generator=g)
    base = 2.0 + torch.rand(len(labels), 1, generator=g)                   # pre-contrast signal
    return base + shapes[labels] * amp + 0.03 * torch.randn(len(labels), n_points, generator=g), labels


@pytest.mark.slow
def test_vqvae_separates_washout_persistent_and_flat_curves():
    from BreastDCESegLib.models.heterogeneity import TICVQVAE, normalize_curves

    torch.manual_seed(0)
    curves, _ = _tic_curves(500, 6, seed=1)
    curves = normalize_curves(curves, "case")
    vq = TICVQVAE(curve_length=16, num_codes=10)
    opt = torch.optim.Adam(vq.parameters(), 2e-3)
    for _ in range(300):
        out = vq(curves[torch.randint(0, len(curves), (256,))])
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert out["recon_loss"].item() < 0.01
    test, labels = _tic_curves(200, 9, seed=2)              # another curve length: resampled
    codes = vq.eval().encode(normalize_curves(test, "case"))
    assert codes.shape == (600,) and int(codes.max()) < 10
    code_sets = [set(codes[labels == k].tolist()) for k in range(3)]
    assert not (code_sets[0] & code_sets[1] or code_sets[0] & code_sets[2] or code_sets[1] & code_sets[2])


def test_heterogeneity_targets_from_all_phases_inference_from_pre_only():
    torch.manual_seed(0)
    net = build_network("heterogeneity", "small").train()
    out = net.forward_train(_phases(4))
    t = out["cluster_target"]
    assert t.shape == (1, *PATCH) and t.dtype == torch.long and 0 <= int(t.min()) and int(t.max()) < 10
    assert out["cluster_logits"].shape == (1, 10, *PATCH)
    assert len(torch.unique(t)) >= 2                         # enhancing block vs background
    net.eval()
    with torch.no_grad():
        a = net(_phases(4))
        b = net(_phases(4)[:, :1])
    assert torch.allclose(a, b)                              # post-contrast phases are not used
    assert "cluster_target" not in net.train().forward_train(_phases(1))
