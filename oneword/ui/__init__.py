"""`oneword ui`: learn, watch, use and share words in a browser (Gradio; `pip install oneword[ui]`).

    from oneword.ui import serve
    server = serve("runs", port=7860, block=False)    # the embedded world model; model="..." for any other
    print(server.url); ...; server.close()

Learning jobs run as `oneword learn` processes beside the web server (oneword.ui.jobs), one at a time, the rest
queued; generation, edits, word files and evaluation use the library in the server process (oneword.ui.service).
Security decisions: oneword.ui.security. docs/ui.md shows the pages.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import OnewordError


@dataclass
class Server:
    url: str
    app: object
    jobs: object
    workspace: object

    def close(self) -> None:
        """Stop the web server; running jobs checkpoint and stop (Resume continues them)."""
        try:
            self.app.close()
        finally:
            self.jobs.close()


def serve(
    root: str | os.PathLike = "runs",
    host: str = "127.0.0.1",
    port: int = 7860,
    model: str | None = None,
    model_config: str | None = None,
    device: str | None = None,
    auth: str | None = None,
    auth_file: str | os.PathLike | None = None,
    photos_root: str | os.PathLike | None = None,
    block: bool = True,
    quiet: bool = False,
    prediction_type: str | None = None,
) -> Server:
    """Start the web app on http://host:port for the run folder `root`; with block=False, return at once."""
    from . import security

    credentials = security.parse_auth(auth, auth_file)
    warning = security.check_listen(host, credentials)
    if warning:
        print(warning, file=sys.stderr)
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    # Gradio keeps uploads and the files it serves in its cache folder: the run folder's own.
    os.environ["GRADIO_TEMP_DIR"] = str(root / ".ui-cache")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio as gr
    except ImportError:
        raise OnewordError("oneword ui needs Gradio: pip install 'oneword[ui]'") from None
    from .app import build_app
    from .jobs import JobManager
    from .service import Workspace

    model_args = []
    for flag, v in (
        ("--model", model),
        ("--model-config", model_config),
        ("--prediction-type", prediction_type),
        ("--device", device),
    ):
        if v is not None:
            model_args += [flag, str(v)]
    ws = Workspace(root, model, model_config, device, photos_root, prediction_type)
    ws.model()  # fail now, in the terminal, if the model cannot load
    jobs = JobManager(root, model_args)
    app = build_app(ws, jobs)
    app.queue(default_concurrency_limit=1)
    theme = gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )  # no web fonts: the page works offline
    from .app import CSS

    try:
        app.launch(
            server_name=host,
            server_port=int(port),
            share=False,
            auth=credentials,
            auth_message="oneword" if credentials else None,
            max_file_size=security.MAX_UPLOAD_BYTES,
            prevent_thread_lock=True,
            quiet=quiet,
            show_error=False,
            ssr_mode=False,
            mcp_server=False,
            enable_monitoring=False,
            pwa=False,
            theme=theme,
            css=CSS,
            footer_links=[],
        )
    except BaseException:
        jobs.close()
        raise
    url = f"http://{'[' + host + ']' if ':' in host else host}:{app.server_port}/"
    server = Server(url=url, app=app, jobs=jobs, workspace=ws)
    if not quiet:
        print(f"oneword ui: {url} (run folder {root}; Ctrl-C stops it, running jobs checkpoint first)")
    if block:
        try:
            app.block_thread()
        except KeyboardInterrupt:
            pass
        finally:
            server.close()
    return server


__all__ = ["serve", "Server"]
