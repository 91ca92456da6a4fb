"""The ``breastdceseg serve`` command: build the settings, start uvicorn.

Usage::

    breastdceseg serve --host 127.0.0.1 --port 8765 --token-file /etc/breastdceseg/token \\
        --device cuda --workers 2 [--ssl-certfile cert.pem --ssl-keyfile key.pem]
    breastdceseg serve --write-openapi Resources/openapi.json      # the schema, then exit
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from ..errors import BreastDCESegError
from .config import Limits, ServerConfig, read_token

MiB = 1 << 20


def build_parser() -> argparse.ArgumentParser:
    from ..console import HelpFormatter

    p = argparse.ArgumentParser(prog="breastdceseg serve", description="HTTP inference server (bearer token).",
                                formatter_class=HelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on; 127.0.0.1 is this machine only (loopback)")
    p.add_argument("--port", type=int, default=8765, help="TCP port to listen on")
    p.add_argument("--token-file", help="file whose first line is the bearer token (>= 16 characters)")
    p.add_argument("--device", default="auto", help="device of every job: auto, cpu, cuda, cuda:1")
    p.add_argument("--workers", type=int, default=1, help="warm worker processes (jobs at the same time)")
    p.add_argument("--max-queue", type=int, default=16, help="jobs waiting for a worker before 503")
    p.add_argument("--work-dir", default=None, help="job directories (default: a new temporary folder)")
    p.add_argument("--job-ttl", type=float, default=3600.0, help="seconds a finished job is kept")
    p.add_argument("--retry-after", type=int, default=15, help="seconds a client is told to wait after a 503")
    p.add_argument("--max-upload-mb", type=float, default=2048.0, help="largest request body")
    p.add_argument("--max-decompressed-mb", type=float, default=4096.0, help="largest unzipped DICOM study")
    p.add_argument("--max-dimension", type=int, default=2048, help="most voxels along any axis")
    p.add_argument("--python", default=None, help="interpreter of the workers (default: this one)")
    p.add_argument("--ssl-certfile", default=None, help="TLS certificate (PEM); else use a reverse proxy")
    p.add_argument("--ssl-keyfile", default=None, help="TLS private key (PEM)")
    p.add_argument("--allow-debug-options", action="store_true", help="accept the worker's debug_sleep_* test options")
    p.add_argument("--write-openapi", default=None, metavar="PATH", help="write the OpenAPI schema and exit")
    p.add_argument("--log-level", default="info", help="uvicorn log level: critical, error, warning, info, debug")
    return p


def build_config(args: argparse.Namespace) -> ServerConfig:
    """The :class:`ServerConfig` of parsed arguments (reads the token file)."""
    if not args.token_file:
        raise BreastDCESegError("breastdceseg serve needs --token-file (a file with a token of >= 16 characters).")
    work_dir = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="breastdceseg-serve-"))
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * MiB),
                    max_decompressed_bytes=int(args.max_decompressed_mb * MiB), max_dimension=args.max_dimension)
    return ServerConfig(token=read_token(args.token_file), work_dir=work_dir, device=args.device,
                        workers=max(args.workers, 1), max_queue=max(args.max_queue, 1), job_ttl_s=args.job_ttl,
                        retry_after_s=max(args.retry_after, 1),
                        python=args.python, allow_debug_options=args.allow_debug_options, limits=limits)


def write_openapi(path: str | Path) -> Path:
    """Write the app's OpenAPI schema as JSON (sorted keys, stable for version control)."""
    from .app import openapi_document

    path = Path(path)
    path.write_text(json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def serve_main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the server until interrupted; returns the exit code."""
    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        import uvicorn

        from .app import create_app
    except ImportError as exc:
        print(f"error: the server needs FastAPI and uvicorn ({exc}); pip install 'breastdceseg[server]'",
              file=sys.stderr)
        return 1
    if args.write_openapi:
        print(f"wrote {write_openapi(args.write_openapi)}")
        return 0
    try:
        config = build_config(args)
    except BreastDCESegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        print("error: give both --ssl-certfile and --ssl-keyfile (or neither, behind a TLS reverse proxy)",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.ssl_certfile:
        logging.getLogger("breastdceseg.server").warning(
            "listening on %s without TLS: put a TLS reverse proxy in front or pass --ssl-certfile/--ssl-keyfile",
            args.host)
    uvicorn.run(create_app(config), host=args.host, port=args.port, ssl_certfile=args.ssl_certfile,
                ssl_keyfile=args.ssl_keyfile, log_level=args.log_level, access_log=True,
                timeout_graceful_shutdown=5)
    return 0
