"""Model registry: schema, merging user models, checksums before loading, safe loading, download."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from BreastDCESegLib.errors import ModelError
from BreastDCESegLib.models import registry as reg

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")


def _entry(model_id: str, path: str, sha: str, size: int, **kw) -> dict:
    entry = {
        "id": model_id, "family": "breast_unet", "version": "1", "title": "test model", "description": "",
        "config": "small", "task": "tumor", "inputs": {"min_phases": 1, "non_contrast": True},
        "preprocessing": {"spacing": [2.0, 2.0, 2.0], "normalization": "patterns_minmax"},
        "patch_size": [16, 32, 32], "overlap": 0.25,
        "weights": {"path": path, "sha256": sha, "bytes": size},
        "licence": "Apache-2.0", "training_data": "none", "intended_use": reg.DEMO_USE, "demo": True,
        "training": None, "seconds_per_case": {"cpu": None, "gpu": None},
    }
    entry.update(kw)
    return entry


@pytest.fixture()
def weights_registry(tmp_path):
    """A registry JSON in tmp_path with one real (randomly initialised) breast_unet."""
    from BreastDCESegLib.models import build_network

    torch.manual_seed(0)
    net = build_network("breast_unet", "small")
    path = tmp_path / "net.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    doc = {"default": "net", "models": [_entry("net", "net.safetensors", reg.sha256_file(path), path.stat().st_size)]}
    (tmp_path / "models.json").write_text(json.dumps(doc))
    return tmp_path / "models.json", net


@pytest.mark.slow
def test_shipped_registry_is_valid_and_every_entry_loads():
    document = json.loads(reg.DEFAULT_PATH.read_text(encoding="utf-8"))
    reg.validate(document)
    registry = reg.load_registry(reg.DEFAULT_PATH, include_user=False)
    assert registry.default_id in registry
    assert "kinetic" in registry and registry.get("kinetic").weights is None
    for spec in registry.list():
        if spec.is_kinetic:
            continue
        if spec.needs_import:  # published weights the user downloads: listed, refused with the import command
            assert not spec.weights_available() and spec.needs_import["command"].startswith("breastdceseg models import")
            with pytest.raises(ModelError, match="breastdceseg models import"):
                reg.load_weights(spec, "cpu")
            continue
        assert spec.weights_available(), spec.id
        assert reg.sha256_file(spec.weights) == spec.sha256
        assert Path(spec.weights).stat().st_size == spec.bytes
        if spec.demo:
            assert spec.intended_use == "trained on synthetic phantoms — not for clinical use"
        net = reg.load_weights(spec, "cpu")
        assert not net.training
    table = reg.format_model_table(registry)
    assert registry.default_id in table and "kinetic" in table


def test_schema_rejects_bad_entries(tmp_path):
    good = _entry("a", "a.safetensors", "0" * 64, 10)
    reg.validate({"models": [good]})
    for bad in (dict(good, family="unet9"), dict(good, weights=None), dict(good, intended_use="anything"),
                dict(good, id="Bad Id"), {k: v for k, v in good.items() if k != "licence"},
                dict(good, weights={"path": "a", "sha256": "xyz", "bytes": 10})):
        with pytest.raises(ModelError, match="does not follow"):
            reg.validate({"models": [bad]})


def test_unknown_id_lists_valid_ids(weights_registry):
    registry = reg.load_registry(weights_registry[0], include_user=False)
    with pytest.raises(ModelError) as err:
        registry.get("nope")
    assert "net" in str(err.value) and "nope" in str(err.value)


def test_env_override_and_user_models_merge(weights_registry, tmp_path, monkeypatch):
    path, _ = weights_registry
    user_dir = tmp_path / "user"
    user_dir.mkdir()
    (user_dir / "mine.safetensors").write_bytes((tmp_path / "net.safetensors").read_bytes())
    sha = reg.sha256_file(user_dir / "mine.safetensors")
    user = {"default": "mine", "models": [_entry("mine", "mine.safetensors", sha, 5, title="my model")]}
    (user_dir / "models.json").write_text(json.dumps(user))
    monkeypatch.setenv("BREASTDCESEG_MODELS", str(path))
    monkeypatch.setenv("BREASTDCESEG_USER_MODELS", str(user_dir / "models.json"))
    registry = reg.load_registry()
    assert set(registry.ids()) == {"net", "mine"} and registry.default_id == "mine"
    assert Path(registry.get("mine").weights) == (user_dir / "mine.safetensors").resolve()
    assert len(registry.sources) == 2


def test_load_weights_roundtrip(weights_registry):
    path, net = weights_registry
    spec = reg.load_registry(path, include_user=False).get("net")
    loaded = reg.load_weights(spec, "cpu")
    for (k, a), b in zip(net.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k


def test_checksum_mismatch_refused_before_loading(weights_registry):
    path, _ = weights_registry
    weights = path.parent / "net.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    spec = reg.load_registry(path, include_user=False).get("net")
    with pytest.raises(ModelError, match="SHA-256") as err:
        reg.load_weights(spec, "cpu")
    assert str(weights) in str(err.value) and spec.sha256 in str(err.value)


def test_missing_weights_file_message(weights_registry):
    path, _ = weights_registry
    (path.parent / "net.safetensors").unlink()
    spec = reg.load_registry(path, include_user=False).get("net")
    assert not spec.weights_available()
    with pytest.raises(ModelError, match="not found") as err:
        reg.load_weights(spec, "cpu")
    assert "net.safetensors" in str(err.value) and "breastdceseg train" in str(err.value)
    assert "MISSING" in reg.format_model_table(reg.load_registry(path, include_user=False))


class Payload:
    """An object whose unpickling would need this module's code."""

    def __init__(self):
        self.x = 1


def test_pickle_needing_code_is_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"weight": torch.zeros(2), "payload": Payload()}, str(bad))
    doc = {"default": "bad", "models": [_entry("bad", "bad.pt", reg.sha256_file(bad), bad.stat().st_size)]}
    (tmp_path / "models.json").write_text(json.dumps(doc))
    spec = reg.load_registry(tmp_path / "models.json", include_user=False).get("bad")
    with pytest.raises(ModelError, match="refused"):
        reg.load_weights(spec, "cpu")


def test_plain_torch_state_dict_loads(weights_registry, tmp_path):
    _, net = weights_registry
    pt = tmp_path / "net.pt"
    torch.save(net.state_dict(), str(pt))
    doc = {"default": "pt", "models": [_entry("pt", "net.pt", reg.sha256_file(pt), pt.stat().st_size)]}
    (tmp_path / "pt.json").write_text(json.dumps(doc))
    spec = reg.load_registry(tmp_path / "pt.json", include_user=False).get("pt")
    assert reg.load_weights(spec, "cpu") is not None


def test_url_download_to_cache(weights_registry, tmp_path, monkeypatch):
    import functools
    import http.server
    import threading

    path, net = weights_registry
    cache = tmp_path / "cache"
    monkeypatch.setenv("BREASTDCESEG_CACHE", str(cache))
    src = path.parent / "net.safetensors"
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(src.parent))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)  # weights URLs are http(s) only
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    doc = json.loads(path.read_text())
    doc["models"][0]["weights"]["path"] = f"{base}/net.safetensors"
    url_json = tmp_path / "url.json"
    url_json.write_text(json.dumps(doc))
    spec = reg.load_registry(url_json, include_user=False).get("net")
    assert spec.is_url
    loaded = reg.load_weights(spec, "cpu")
    cached = list(cache.iterdir())
    assert len(cached) == 1 and cached[0].read_bytes() == src.read_bytes()
    assert torch.equal(next(iter(loaded.state_dict().values())), next(iter(net.state_dict().values())))
    # a URL whose content does not match the registry's checksum is not kept
    doc["models"][0]["weights"]["sha256"] = "1" * 64
    url_json.write_text(json.dumps(doc))
    spec = reg.load_registry(url_json, include_user=False).get("net")
    with pytest.raises(ModelError, match="not kept"):
        reg.load_weights(spec, "cpu")
    assert len(list(cache.iterdir())) == 1
    # an unreachable URL gives a download error
    doc["models"][0]["weights"]["path"] = f"{base}/absent.safetensors"
    url_json.write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="Could not download"):
        reg.load_weights(reg.load_registry(url_json, include_user=False).get("net"), "cpu")
    httpd.shutdown()
