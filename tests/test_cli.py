"""The zt command: version, help, exit codes, and the bench suite running end to end (not timed)."""

import subprocess
import sys

import zigtensor as zt


def zt_cli(*args):
    return subprocess.run([sys.executable, "-m", "zigtensor_cli", *args], capture_output=True, text=True)


def test_version():
    r = zt_cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"zigtensor {zt.__version__}"


def test_help_lists_commands():
    r = zt_cli("--help")
    assert r.returncode == 0 and "bench" in r.stdout
    r = zt_cli("bench", "core", "--help")
    assert r.returncode == 0 and "--quick" in r.stdout


def test_usage_errors_exit_2():
    r = zt_cli("no-such-command")
    assert r.returncode == 2 and "No such command" in r.stderr


def test_bench_suite_functions_run():
    from zigtensor.bench import core

    for result in (core.autograd_overhead(repeats=2), core.matmul(n=64, repeats=2), core.mlp_step(batch=8, repeats=2)):
        assert result.zt_s > 0 and result.ref_s is not None and result.ratio > 0
