"""A pytest plugin that runs the `[cuda]` cases of the device suites on the emulated CUDA backend (no GPU).

    PYTHONPATH=tests python3 -m pytest -p emulated_cuda_plugin tests/test_ops_shape.py

The suites of conftest.DEVICE_MODULES run every test on 'cpu' and 'cuda'; without a GPU the cuda cases carry a
skip mark. This plugin keeps only the cuda cases, drops their skip mark, and runs each with tests/emulated_cuda.py
installed (the real backend, kernels under the emulator, CuPy played by NumPy). Slow (the emulator runs blocks
one after another, and each new kernel define set is compiled with g++ once): run one suite at a time.
"""

from __future__ import annotations

import pytest


def _is_cuda_case(item) -> bool:
    callspec = getattr(item, "callspec", None)
    return callspec is not None and callspec.params.get("zt_device") == "cuda"


def pytest_collection_modifyitems(config, items):
    keep = [item for item in items if _is_cuda_case(item)]
    config.hook.pytest_deselected(items=[item for item in items if not _is_cuda_case(item)])
    for item in keep:
        item.own_markers = [m for m in item.own_markers if m.name != "skip"]
    items[:] = keep


@pytest.fixture(autouse=True)
def _emulated_cuda_backend(request, monkeypatch):
    """Installed before conftest's zt_device fixture makes 'cuda' the default device (plugin fixtures come
    first), undone after the test."""
    import emulated_cuda

    if _is_cuda_case(request.node):
        emulated_cuda.install(monkeypatch)
        emulated_cuda.forget_cuda_devices()
    yield
    emulated_cuda.forget_cuda_devices()
