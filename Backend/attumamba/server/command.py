"""``attumamba-seg serve``: the HTTP backend on uvicorn (127.0.0.1 by default).

Every rule a start must pass is checked before the port is bound, and the token file is written
only once the port accepts connections: a client that finds the file finds this server.
"""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path

from ..errors import InputError

DEFAULT_TOKEN_FILE = Path("~/.attumamba/token")
INSTANCE_VARIABLE = "ATTUMAMBA_INSTANCE_ID"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="run the HTTP backend the Slicer module talks to",
        description="Serves /v1 (DESIGN.md §2). A fresh random token is written to --token-file (mode 0600) once "
                    "the port listens, unless ATTUMAMBA_TOKEN holds one you chose (32 characters or more). "
                    "Binding beyond loopback needs ATTUMAMBA_TOKEN and --tls-cert/--tls-key (or --insecure-http).")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    parser.add_argument("--token-file", type=Path, default=DEFAULT_TOKEN_FILE,
                        help=f"where the token is written (default {DEFAULT_TOKEN_FILE})")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="device the jobs run on")
    parser.add_argument("--max-upload-mb", type=int, default=2048, help="largest accepted volume file (MiB)")
    parser.add_argument("--study-cache-mb", type=int, default=8192,
                        help="memory for everything held: uploaded studies and job results (MiB)")
    parser.add_argument("--study-ttl-min", type=float, default=240.0, help="drop studies and results unused this long")
    parser.add_argument("--max-concurrent-uploads", type=int, default=2,
                        help="uploads received at a time; more are answered 503 with Retry-After (default 2)")
    parser.add_argument("--tls-cert", type=Path, metavar="FILE", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--tls-key", type=Path, metavar="FILE", help="the private key of --tls-cert (PEM)")
    parser.add_argument("--insecure-http", action="store_true",
                        help="allow plain HTTP on a non-loopback --host (patient data in clear text on the network)")
    parser.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                        help="a Host name clients may use besides the loopback names and --host (repeatable; e.g. "
                             "the name in the TLS certificate)")
    parser.add_argument("--parent-pid", type=_process_id, metavar="PID",
                        help="exit when process PID ends (the Slicer module passes its own, so that a backend it "
                             "started never outlives it, even after a crash)")
    parser.set_defaults(func=run)


def _process_id(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a process id (a positive whole number)")
    return int(text)


def run(args: argparse.Namespace) -> int:
    from .auth import check_bind, check_chosen_token, check_transport, new_token
    from .gate import allowed_host_names
    from .listening import check_tls_files, listen

    if getattr(args, "parent_pid", None):
        from .parent_watch import watch_parent

        watch_parent(args.parent_pid)
    chosen = os.environ.get("ATTUMAMBA_TOKEN", "").strip()
    if chosen:
        check_chosen_token(chosen)
    check_bind(args.host, bool(chosen))
    tls = check_tls_files(args.tls_cert, args.tls_key)
    check_transport(args.host, tls is not None, args.insecure_http)
    allowed_hosts = allowed_host_names(args.host, args.allowed_host)
    if args.max_concurrent_uploads < 1:
        raise InputError("--max-concurrent-uploads must be 1 or more")
    listener = listen(args.host, args.port)
    return _serve(args, listener, tls, chosen or new_token(), allowed_hosts)


def _serve(args: argparse.Namespace, listener, tls, token: str, allowed_hosts: tuple[str, ...]) -> int:
    from ..devices import resolve_device
    from .app import ServerState, create_app
    from .auth import write_token_file
    from .listening import serve
    from .studies import Limits

    device = resolve_device(args.device).type
    limits = Limits(max_upload_bytes=args.max_upload_mb << 20, max_studies_bytes=args.study_cache_mb << 20,
                    study_ttl_s=args.study_ttl_min * 60.0)
    instance = os.environ.get(INSTANCE_VARIABLE, "").strip() or secrets.token_hex(16)
    app = create_app(ServerState(token=token, limits=limits, devices=(device,), allowed_hosts=allowed_hosts,
                                 upload_slots=args.max_concurrent_uploads, instance=instance))

    def announce(port: int) -> None:
        token_file = write_token_file(token, args.token_file)
        scheme, host = ("https" if tls else "http"), (f"[{args.host}]" if ":" in args.host else args.host)
        print(f"AttUMambaSeg backend on {scheme}://{host}:{port} ({device}); token in {token_file}", flush=True)

    serve(app, listener, tls, announce)
    return 0
