"""The speed helpers of the zhang2023 fast path compute what the code they replace computes.

The whole fast path against the exact path on a phantom study is in ``test_zhang2023.py``
(``test_exact_path_equals_the_authors_loop_and_fast_path_keeps_the_mask``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from BreastDCESegLib import metrics  # noqa: E402
from BreastDCESegLib.models import zhang2023  # noqa: E402
from BreastDCESegLib.models import zhang2023_fast as zf  # noqa: E402
from BreastDCESegLib.models import zhang2023_pipeline as zp  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "zhang2023"
torch.set_num_threads(2)


@pytest.fixture(scope="module")
def golden_net():
    """The golden small configuration of the authors' network (trained BatchNorm statistics)."""
    g = torch.load(DATA / "golden_tiny.pt", weights_only=True)
    net = zhang2023.build_network(g["config"])
    net.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in g["state_dict"].items()})
    return net.eval()


@pytest.mark.slow
def test_fold_batchnorm_gives_the_same_outputs_and_leaves_the_network_alone(golden_net):
    torch.manual_seed(1)
    x = torch.rand(1, 6, 32, 96, 96)
    time_m = torch.tensor([[1.0, 1, 1, 0, 1, 0]])          # phases 3 and 5 missing: not encoded
    before = {k: v.clone() for k, v in golden_net.state_dict().items()}
    folded = zf.fold_batchnorm(golden_net)
    assert sum(isinstance(m, torch.nn.BatchNorm3d) for m in golden_net.modules()) == 32
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in folded.modules())   # 4 after transposed convs
    assert all(torch.equal(v, golden_net.state_dict()[k]) for k, v in before.items())
    with torch.inference_mode():
        y = golden_net.forward_phases(x, time_m)
        y_folded = folded.forward_phases(x, time_m)
        y_cl = folded.to(memory_format=torch.channels_last_3d).forward_phases(
            x.contiguous(memory_format=torch.channels_last_3d), time_m)
    err = max((y_folded - y).abs().max().item(), (y_cl - y).abs().max().item())
    assert err < 1e-5, err                                 # measured 1.5e-7
    assert torch.equal(y_cl >= 0.5, y >= 0.5)
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        y_bf16 = folded.forward_phases(x.contiguous(memory_format=torch.channels_last_3d), time_m).float()
    votes, votes_bf16 = (y[0, 0] >= 0.5).numpy(), (y_bf16[0, 0] >= 0.5).numpy()
    print(f"bfloat16: max error {(y_bf16 - y).abs().max().item():.4f}, "
          f"{int((votes != votes_bf16).sum())} of {votes.sum()} votes flipped")
    assert (y_bf16 - y).abs().max().item() < 0.01                    # measured 0.0025
    assert 0.995 <= metrics.dice(votes_bf16, votes) < 1.0          # measured 0.998 (56 of 14835 votes flipped)


def test_the_fast_path_autocasts_on_cuda_only_unless_asked():
    assert zp.resolve_options({"fast": True}, "cpu")["amp"] is False       # float32: the exact path's mask
    assert zp.resolve_options({"fast": True}, "cuda")["amp"] is True
    assert zp.resolve_options({"fast": True, "amp": True}, "cpu")["amp"] is True
    assert zp.resolve_options({}, "cpu")["amp"] is False and zp.resolve_options({}, "cuda")["amp"] is False


def test_channels_last_batches_hold_the_same_windows():
    rng = np.random.default_rng(2)
    x = rng.random((6, 40, 100, 150)).astype(np.float32)
    padded = zp.padded_shape(x.shape[1:])
    volume = zf.channels_last_volume(x, padded)
    starts = zp.window_starts(x.shape[1:])[1:4]
    batch = zf.window_batch(volume, starts, zp.WINDOW)
    assert batch.shape == (3, 6, 32, 96, 96) and batch.is_contiguous(memory_format=torch.channels_last_3d)
    full = np.zeros((6, *padded), np.float32)
    full[:, :40, :100, :150] = x
    for k, (a, b, c) in enumerate(starts):
        assert np.array_equal(batch[k].numpy(), full[:, a:a + 32, b:b + 96, c:c + 96])
