"""Do our plots show in the Prefect UI? Start a server, run a tiny flow, screenshot it in Chromium.

    python benchmarks/screenshot_ui.py              # needs `chromium` (apt-get install chromium)
    python benchmarks/screenshot_ui.py --out /tmp/ui --ab artifacts/digits/latest
    python benchmarks/screenshot_ui.py --pipeline      # the pipeline's plots on its run's page

Steps: ``prefect server start`` on 127.0.0.1 (free port, temporary ``PREFECT_HOME``); a tiny flow
publishes a table artifact and a matplotlib PNG through :func:`flows.ui.publish_png` (a markdown
artifact with the PNG embedded as a ``data:image/png`` URI) and, for comparison, the same PNG as
an *image* artifact (``create_image_artifact`` with the data URI as its URL). With ``--ab ARTIFACT``
the quick ``curriculum-ab`` flow on the digits runs as well; with ``--pipeline``, instead of the tiny
flow, a ``curriculum-pipeline`` run on the bundled digits (EfficientNet-Lite0 at 64 px, k in 2..8),
whose run page shows the report's plots (``digits-plot-*``). Headless Chromium then opens the run's
artifacts tab and each artifact's page in both UIs (the Vue UI at ``/``, the default of Prefect
3.8; the React UI at ``/v2``, the default from 3.9), saves a PNG screenshot of each and dumps the
DOM to check that an ``<img>`` with the embedded PNG is there. Look at the screenshots (``--out``).

Prints a table and, as the last line, a JSON object (``goal_met``: the embedded plot is an
``<img>`` in every artifact page checked).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import emit, table

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: Artifact pages that must show an embedded PNG (those the run made).
PLOT_PAGES = (
    "ui-check-plot",
    "digits-ab-plot",
    "digits-plot-k-sweep",
    "digits-plot-difficulty",
    "digits-plot-schedule",
    "digits-plot-samples",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(api_url: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the Prefect server at {api_url} did not become healthy in {timeout} s")


def _chromium() -> str:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit(
        "error: no Chromium found; install it (Debian: apt-get install -y chromium) and rerun"
    )


def _browser(chromium: str, url: str, screenshot: Path | None, profile: Path) -> str:
    """Screenshot ``url`` (when ``screenshot``) or return its DOM after the page settled."""
    command = [
        chromium,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1440,2200",
        "--virtual-time-budget=25000",
    ]
    command += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    completed = subprocess.run(
        [*command, url], capture_output=True, text=True, timeout=180, check=False
    )
    return completed.stdout


def _demo_png() -> bytes:
    import io

    import numpy as np
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 3.5), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    steps = np.arange(0, 201, 10)
    for name, rate, colour in (("easy", 0.035, "tab:green"), ("uniform", 0.03, "tab:blue")):
        mean = 1 - 0.9 * np.exp(-rate * steps)
        axes.plot(steps, mean, color=colour, label=name)
        axes.fill_between(steps, mean - 0.03, mean + 0.03, color=colour, alpha=0.2, linewidth=0)
    axes.set_xlabel("training step")
    axes.set_ylabel("held-out accuracy")
    axes.legend(loc="lower right")
    axes.set_title("UI check: a matplotlib PNG embedded in a markdown artifact", fontsize=9)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _run_pipeline(work: Path) -> str:
    """A small ``curriculum-pipeline`` run on the digits; returns its flow run id."""
    from flows.cli import demo_params
    from flows.params import ClusterParams, EmbedParams
    from flows.pipeline import curriculum_pipeline

    params = demo_params(str(work / "artifacts"), str(work / "runs"), sweep_runner="threads")
    params["embedding"] = EmbedParams(image_size=64, chunk_rows=256, shard_rows=256)
    params["clustering"] = ClusterParams(cluster_range=(2, 8))
    state = curriculum_pipeline(**params, return_state=True)
    state.result()  # raises if the run failed
    return str(state.state_details.flow_run_id)


def _run_flows(
    ab_artifact: str | None, work: Path, pipeline: bool = False
) -> tuple[str, dict[str, str]]:
    """Run the tiny flow (or the pipeline; and the quick A/B); return the run's id and artifact
    ids by key."""
    run_id = _run_pipeline(work) if pipeline else _run_ui_check()
    if ab_artifact:
        from flows.ab import curriculum_ab

        curriculum_ab(ab_artifact, "digits", steps=200, output=str(work / "ab"))
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
    return run_id, {str(a.key): str(a.id) for a in artifacts if a.key}


def _run_ui_check() -> str:
    """The tiny flow: a table, the PNG via publish_png and as an image artifact."""
    import base64

    from prefect import flow
    from prefect.artifacts import create_image_artifact, create_table_artifact

    from flows.ui import publish_png, ui_artifacts

    png = _demo_png()

    @flow(name="ui-plot-check")
    def ui_plot_check() -> None:
        with ui_artifacts() as ui:
            ui.create(
                create_table_artifact,
                [{"arm": "easy", "final": 0.95}, {"arm": "uniform", "final": 0.94}],
                key="ui-check-table",
                description="a table artifact next to the plot",
            )
            ui.create(
                publish_png,
                png,
                key="ui-check-plot",
                title="Accuracy vs steps",
                text="**verdict line** rendered below the image",
                description="flows.ui.publish_png: markdown with the PNG as a data URI",
            )
            ui.create(
                create_image_artifact,
                "data:image/png;base64," + base64.b64encode(png).decode(),
                key="ui-check-image-artifact",
                description="create_image_artifact with a data URI (for comparison)",
            )

    state = ui_plot_check(return_state=True)
    return str(state.state_details.flow_run_id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/ui-screenshots"))
    parser.add_argument("--ab", metavar="ARTIFACT", help="also run the quick digits A/B flow")
    parser.add_argument(
        "--pipeline", action="store_true", help="run the pipeline on the digits, not the tiny flow"
    )
    parser.add_argument("--keep-server", action="store_true", help="leave the server running")
    args = parser.parse_args(argv)
    chromium = _chromium()
    out = args.out.expanduser().absolute()
    out.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="cl-ui-check-"))
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "MPLBACKEND": "Agg",
    }
    os.environ.update({k: env[k] for k in ("PREFECT_HOME", "PREFECT_API_URL", "MPLBACKEND")})
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=(home / "server.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    started = time.perf_counter()
    rows: list[dict[str, object]] = []
    try:
        _wait_healthy(api_url)
        server_seconds = time.perf_counter() - started
        run_id, artifact_ids = _run_flows(args.ab, home, pipeline=args.pipeline)
        base = f"http://127.0.0.1:{port}"
        pages = {"run": f"/runs/flow-run/{run_id}?tab=Artifacts"}
        for key in (*PLOT_PAGES, "ui-check-image-artifact"):
            if key in artifact_ids:
                pages[key] = f"/artifacts/artifact/{artifact_ids[key]}"
        for ui, prefix in (("v1", ""), ("v2", "/v2")):
            for page, path in pages.items():
                url = base + prefix + path
                shot = out / f"{ui}-{page}.png"
                profile = home / f"chrome-{ui}-{page}"
                _browser(chromium, url, shot, profile)
                dom = _browser(chromium, url, None, profile)
                if "data:image/png;base64," not in dom:  # a slow first load: look once more
                    dom = _browser(chromium, url, None, profile)
                rows.append(
                    {
                        "ui": ui,
                        "page": page,
                        "img_with_data_png": "<img" in dom and "data:image/png;base64," in dom,
                        # the run's page lists its plot artifacts (cards on the Artifacts tab)
                        "plots_listed": sum(key in dom for key in PLOT_PAGES if key in artifact_ids)
                        if page == "run"
                        else None,
                        "screenshot": str(shot) if shot.is_file() else None,
                        "url": url,
                    }
                )
    finally:
        if not args.keep_server:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
    header = ("ui", "page", "<img> data:image/png", "plots listed", "screenshot")
    keys = ("ui", "page", "img_with_data_png", "plots_listed", "screenshot")
    print(table([header, *([row[key] for key in keys] for row in rows)]))
    plot_pages = [r for r in rows if r["page"] in PLOT_PAGES]
    goal_met = bool(plot_pages) and all(r["img_with_data_png"] for r in plot_pages)
    emit(
        {
            "name": "screenshot_ui",
            "ratio": 1.0 if goal_met else 0.0,
            "goal": 1.0,
            "goal_met": goal_met,
            "server_start_s": round(server_seconds, 1),
            "pages": rows,
            "prefect_home": str(home),
        }
    )
    return 0 if goal_met else 1


if __name__ == "__main__":
    sys.exit(main())
