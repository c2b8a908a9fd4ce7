"""The Typer app `zt`: global options, error printing and exit codes (0 ok, 1 error, 2 usage)."""

from __future__ import annotations

import os
import sys

import typer

from . import bench, generate, info, plot, quantize, recipes, serve, train

app = typer.Typer(
    name="zt",
    help="zigtensor: train, benchmark, inspect and serve models with a framework you can read end to end.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(bench.app, name="bench")
app.command("train")(train.train)
app.add_typer(recipes.app, name="recipes")
app.command("info")(info.info)
app.command("generate")(generate.generate)
app.command("serve")(serve.serve)
app.command("plot")(plot.plot)
app.command("quantize")(quantize.quantize)

_state = {"debug": False}

# NOTE: OpenBLAS reads how long its idle threads spin once, when NumPy loads it, which the commands do later,
# lazily: the value of zigtensor.backends.blas_threads (SHORT_SPIN; a test keeps the two equal), set here so
# that importing zigtensor (1-2 s) is not needed for --help.
OPENBLAS_SPIN = ("OPENBLAS_THREAD_TIMEOUT", "21")


def _version(value: bool) -> None:
    if value:
        from zigtensor import __version__

        typer.echo(f"zigtensor {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback of an error."),
) -> None:
    _state["debug"] = debug


def main() -> None:
    """Entry point: a library error prints as one line (exit 1) unless --debug asks for the traceback."""
    if "numpy" not in sys.modules:
        os.environ.setdefault(*OPENBLAS_SPIN)
    try:
        code = app(standalone_mode=False)  # NOTE: Click returns a typer.Exit's code here instead of raising
    except (typer.Exit, SystemExit) as e:
        code = getattr(e, "exit_code", getattr(e, "code", 0))
        sys.exit(code or 0)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except Exception as e:  # noqa: BLE001  (the CLI's one place that turns errors into a line)
        # Click's exceptions (usage errors exit 2); duck-typed since Typer may vendor its own Click
        if hasattr(e, "show") and isinstance(getattr(e, "exit_code", None), int):
            e.show()
            sys.exit(e.exit_code)
        if _state["debug"] or "--debug" in sys.argv:
            raise
        typer.echo(f"error: {type(e).__name__}: {e}", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
