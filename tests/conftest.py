"""Shared fixtures: `fake_cuda` (a stand-in second device, see fake_device.py), `cuda_dev` (the emulated CUDA
device, or the real one, see emulated_cuda.py), and the device parametrization
of the op, layer and optimizer suites.

Every test of the modules in DEVICE_MODULES runs twice, `[cpu]` and `[cuda]`, with zt.set_default_device set
accordingly, so the tensors the tests make (zt.tensor, zt.randn, tests/oracle.py's inputs) live on that
device; results are compared on the host (Tensor.numpy() copies). The `[cuda]` cases skip without CuPy or a
GPU. Tests that use `fake_cuda` (device-mixing checks) or carry the `cpu_only` mark (they check the CPU's host
semantics: numpy() sharing memory, the default device) run on the CPU only.
"""

import pytest
from emulated_cuda import cuda_dev  # noqa: F401  (re-exported: the emulated or real CUDA device of a scenario)
from fake_device import fake_cuda  # noqa: F401  (re-exported as a fixture for every test module)

import zigtensor as zt

DEVICE_MODULES = {
    "test_autograd", "test_clip_grad", "test_conv", "test_creation", "test_functional", "test_gradcheck",
    "test_loss", "test_module", "test_nn_attention", "test_nn_layers", "test_nn_recurrent", "test_ops_elementwise",
    "test_ops_index", "test_ops_linalg", "test_ops_reduce", "test_ops_shape", "test_optim", "test_tensor",
}

_cuda_skip: list = []  # why CUDA cannot run here ("" when it can), computed once


def _why_no_cuda() -> str:
    if not _cuda_skip:
        try:
            from zigtensor import cuda

            cuda.require_cupy()
            _cuda_skip.append("")
        except (ImportError, RuntimeError) as e:
            _cuda_skip.append(str(e).splitlines()[0])
    return _cuda_skip[0]


def pytest_generate_tests(metafunc):
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    cpu_only = metafunc.definition.get_closest_marker("cpu_only") is not None  # host semantics (shared memory)
    if module in DEVICE_MODULES and "fake_cuda" not in metafunc.fixturenames and not cpu_only:
        why = _why_no_cuda()
        # NOTE: a static skip mark, not pytest.skip() in the fixture: hundreds of skipped cases then cost
        # nothing (a skip raised at setup builds a traceback each time and doubled the CPU run's time)
        marks = [pytest.mark.cuda] + ([pytest.mark.skip(reason=why)] if why else [])
        metafunc.parametrize("zt_device", ["cpu", pytest.param("cuda", marks=marks)], indirect=True)


@pytest.fixture(autouse=True)
def zt_device(request):
    """The default device of this test case ('cpu' or 'cuda'); restored to the CPU afterwards."""
    dev = getattr(request, "param", "cpu")
    zt.set_default_device(dev)
    try:
        yield zt.device(dev)
    finally:
        zt.set_default_device(None)
