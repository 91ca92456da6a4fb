"""Registry limits: declared size before hashing, capped downloads, http(s) only, paths inside the registry."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest

from BreastDCESegLib.errors import ModelError
from BreastDCESegLib.models import registry as reg

PAYLOAD = bytes(range(256)) * 64  # 16 KiB of "weights"
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def _entry(path: str, sha: str = SHA, size: int = len(PAYLOAD)) -> dict:
    return {"id": "net", "family": "breast_unet", "version": "1", "title": "test", "description": "", "config": "small",
            "task": "tumor", "inputs": {"min_phases": 1, "non_contrast": True},
            "preprocessing": {"spacing": None, "normalization": "patterns_minmax"}, "patch_size": [16, 32, 32],
            "overlap": 0.25, "weights": {"path": path, "sha256": sha, "bytes": size}, "licence": "MIT",
            "training_data": "none", "intended_use": reg.DEMO_USE, "demo": True, "training": None,
            "seconds_per_case": {"cpu": None, "gpu": None}}


def _spec(folder: Path, path: str, **kw) -> reg.ModelSpec:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "models.json").write_text(json.dumps({"default": "net", "models": [_entry(path, **kw)]}))
    return reg.load_registry(folder / "models.json", include_user=False).get("net")


class _Handler(http.server.BaseHTTPRequestHandler):
    """/ok: the payload; /big: the payload twice (honest length); /endless: no length, never ends."""

    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(200)
        if self.path.startswith("/endless"):
            self.end_headers()
            try:
                for _ in range(50):
                    self.wfile.write(PAYLOAD)
            except OSError:
                pass  # the client stopped reading
            return
        body = PAYLOAD if self.path.startswith("/ok") else PAYLOAD * 2
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BREASTDCESEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BREASTDCESEG_USER_MODELS", str(tmp_path / "user" / "models.json"))
    return tmp_path / "cache"


def test_http_download_within_the_declared_size(server, tmp_path, cache):
    path = reg.resolve_weights(_spec(tmp_path / "r", f"{server}/ok/net.safetensors"))
    assert path.parent == cache and path.read_bytes() == PAYLOAD
    assert reg.resolve_weights(_spec(tmp_path / "r", f"{server}/ok/net.safetensors")) == path  # cached


def test_downloads_are_capped_at_the_declared_size(server, tmp_path, cache):
    with pytest.raises(ModelError, match=f"announces {2 * len(PAYLOAD)} bytes.*declares {len(PAYLOAD)}"):
        reg.resolve_weights(_spec(tmp_path / "r", f"{server}/big/net.safetensors"))
    with pytest.raises(ModelError, match=f"exceeds the {len(PAYLOAD)} bytes"):
        reg.resolve_weights(_spec(tmp_path / "r", f"{server}/endless/net.safetensors"))
    assert not [p for p in cache.iterdir()]  # nothing kept, no partial file


@pytest.mark.parametrize("url", ["file:///dev/zero", "ftp://example.org/net.pt", "FILE:///etc/passwd"])
def test_only_http_urls(url, tmp_path, cache):
    with pytest.raises(ModelError, match="only http\\(s\\) URLs"):
        reg.resolve_weights(_spec(tmp_path / "r", url))
    assert not cache.exists() or not list(cache.iterdir())


def test_paths_must_stay_inside_the_registry_or_user_folder(tmp_path, cache):
    outside = tmp_path / "elsewhere" / "net.safetensors"
    outside.parent.mkdir()
    outside.write_bytes(PAYLOAD)
    for path in ("../elsewhere/net.safetensors", str(outside), "../../../../../../etc/passwd"):
        with pytest.raises(ModelError, match="outside its registry folder"):
            reg.resolve_weights(_spec(tmp_path / "r", path))
    inside = tmp_path / "r" / "w" / "net.safetensors"
    inside.parent.mkdir(parents=True)
    inside.write_bytes(PAYLOAD)
    assert reg.resolve_weights(_spec(tmp_path / "r", "w/net.safetensors")) == inside.resolve()
    user = tmp_path / "user" / "models" / "net" / "net.safetensors"  # the user model folder is allowed too
    user.parent.mkdir(parents=True)
    user.write_bytes(PAYLOAD)
    assert reg.resolve_weights(_spec(tmp_path / "r", str(user))) == user.resolve()


def test_declared_size_is_checked_before_hashing(tmp_path, cache, monkeypatch):
    weights = tmp_path / "r" / "net.safetensors"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(PAYLOAD + b"tail")
    hashed = []
    monkeypatch.setattr(reg, "sha256_file", lambda p, *a: hashed.append(p) or SHA)
    with pytest.raises(ModelError, match=f"has {len(PAYLOAD) + 4} bytes, but the registry declares {len(PAYLOAD)}"):
        reg.resolve_weights(_spec(tmp_path / "r", "net.safetensors"))
    assert hashed == []


def test_garbage_torch_file_is_named_as_such(tmp_path):
    pytest.importorskip("torch")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"GARBAGE" * 100)
    with pytest.raises(ModelError, match="is not a PyTorch weights file"):
        reg.read_state_dict(junk)


def test_segment_refuses_a_weights_path_outside_the_registry_before_running(tmp_path, cache, monkeypatch, capsys):
    from BreastDCESegLib import cli

    user = tmp_path / "user" / "models.json"
    user.parent.mkdir(parents=True)
    entry = _entry("../../../../../../../../etc/passwd")
    entry["id"] = "evil"
    user.write_text(json.dumps({"models": [entry]}))
    assert cli.main(["segment", "--input", str(tmp_path), "--output", str(tmp_path / "o"), "--model", "evil"]) == 2
    err = capsys.readouterr().err
    assert "outside its registry folder" in err and err.count("\n") == 1


def test_incomplete_worker_outputs_are_not_loaded(tmp_path):
    from BreastDCESegLib.runner import WorkerError, load_outputs

    (tmp_path / "result.json").write_text("{}")
    done = {"event": "done", "outputs": {"label": "tumor.nrrd", "result": "result.json"}}
    with pytest.raises(WorkerError, match="incomplete.*tumor.nrrd"):
        load_outputs(done, tmp_path)
    (tmp_path / "tumor.nrrd").write_bytes(b"half a file")
    with pytest.raises(WorkerError, match="cannot be read"):
        load_outputs(done, tmp_path)
