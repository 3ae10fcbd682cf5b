"""``attumamba-seg serve``: the HTTP backend on uvicorn (127.0.0.1 by default)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

DEFAULT_TOKEN_FILE = Path("~/.attumamba/token")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="run the HTTP backend the Slicer module talks to",
        description="Serves /v1 (DESIGN.md §2). A fresh random token is written to --token-file (mode 0600) "
                    "unless ATTUMAMBA_TOKEN is set; binding beyond loopback needs ATTUMAMBA_TOKEN.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    parser.add_argument("--token-file", type=Path, default=DEFAULT_TOKEN_FILE,
                        help=f"where the token is written (default {DEFAULT_TOKEN_FILE})")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="device the jobs run on")
    parser.add_argument("--max-upload-mb", type=int, default=2048, help="largest accepted volume file (MiB)")
    parser.add_argument("--study-cache-mb", type=int, default=8192, help="memory for kept studies (MiB)")
    parser.add_argument("--study-ttl-min", type=float, default=240.0, help="drop studies unused this long")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from ..devices import resolve_device
    from .app import ServerState, create_app
    from .auth import check_bind, new_token, write_token_file
    from .studies import Limits

    explicit = os.environ.get("ATTUMAMBA_TOKEN", "").strip()
    check_bind(args.host, bool(explicit))
    token = explicit or new_token()
    token_file = write_token_file(token, args.token_file)
    device = resolve_device(args.device).type
    limits = Limits(max_upload_bytes=args.max_upload_mb << 20, max_studies_bytes=args.study_cache_mb << 20,
                    study_ttl_s=args.study_ttl_min * 60.0)
    app = create_app(ServerState(token=token, limits=limits, devices=(device,)))
    print(f"AttUMambaSeg backend on http://{args.host}:{args.port} ({device}); token in {token_file}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=10)
    return 0
