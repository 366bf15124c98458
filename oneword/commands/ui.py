"""`oneword ui`: the web app (learn, watch, generate, edit, share and evaluate words in a browser; oneword.ui)."""

from __future__ import annotations

from ._common import add_command, add_model_args


def register(subparsers) -> None:
    p = add_command(
        subparsers,
        "ui",
        "open the web app: learn, watch, use and share words in a browser",
        description="A local web app (Gradio; pip install 'oneword[ui]') over a run folder: learn a "
        "word from dropped photos with live progress, loss curves and previews, stop and "
        "resume; generate beside the caption baseline; edit a painted region; inspect, "
        "convert and download words; evaluate. Listens on 127.0.0.1 unless --host says "
        "otherwise, which needs --auth.",
    )
    p.add_argument("--out", default="runs", help="run folder: learned words, dropped-in words, previews")
    add_model_args(p)
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on; any but loopback needs --auth or --auth-file"
    )
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--auth", metavar="USER:PASSWORD", help="require this login")
    p.add_argument("--auth-file", metavar="FILE", help="require a login from this file of user:password lines")
    p.add_argument(
        "--photos-root",
        metavar="DIR",
        help="folders typed into the page are read only inside DIR (default: the current folder)",
    )
    p.set_defaults(func=run)


def run(args) -> None:
    from ..ui import serve

    serve(
        args.out,
        host=args.host,
        port=args.port,
        model=args.model,
        model_config=args.model_config,
        device=args.device,
        auth=args.auth,
        auth_file=args.auth_file,
        photos_root=args.photos_root,
        prediction_type=getattr(args, "prediction_type", None),
        block=True,
    )
