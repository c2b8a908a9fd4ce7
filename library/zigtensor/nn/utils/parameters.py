"""Parameters as one flat vector and back (torch.nn.utils.parameters_to_vector / vector_to_parameters)."""

from __future__ import annotations

from ...tensor import Tensor


def parameters_to_vector(parameters) -> Tensor:
    """The parameters flattened and concatenated in order (a graph op: gradients flow back to each)."""
    from ...ops.shape import cat

    params = list(parameters)
    if not params:
        raise ValueError("parameters_to_vector: no parameters")
    device = params[0].device
    for i, p in enumerate(params):
        if p.device is not device:
            raise RuntimeError(f"parameters_to_vector: parameter {i} is on {p.device}, the first on {device}")
    return cat([p.reshape(-1) for p in params])


def vector_to_parameters(vec: Tensor, parameters) -> None:
    """Copy consecutive slices of the 1-d vec into the parameters' memory (their sizes in order), no graph."""
    from ...autograd.grad_mode import no_grad

    if not isinstance(vec, Tensor) or vec.ndim != 1:
        raise TypeError(f"vector_to_parameters: expected a 1-d Tensor, got "
                        f"{getattr(vec, 'shape', type(vec).__name__)}")
    params = list(parameters)
    total = sum(p.numel() for p in params)
    if vec.shape[0] != total:
        raise ValueError(f"vector_to_parameters: the vector has {vec.shape[0]} entries, the parameters {total}")
    start = 0
    with no_grad():
        for p in params:
            n = p.numel()
            p.copy_(vec[start:start + n].reshape(p.shape))
            start += n
