"""Normalization layers: BatchNorm1d, BatchNorm2d, LayerNorm, RMSNorm and GroupNorm."""

from __future__ import annotations

from ..autograd.grad_mode import no_grad
from ..creation import empty, tensor
from ..dtypes import int64
from ..ops.nn import batch_norm, group_norm, layer_norm, rms_norm
from . import init
from ._args import check_float, check_int, check_shape
from .module import Module, Parameter


def _affine_params(module: Module, shape: tuple, affine: bool, bias: bool, device, dtype) -> None:
    """Register `weight` (and `bias` unless bias=False) of `shape` when affine, else both as None; values
    come from _reset_affine (ones and zeros, as PyTorch's norms start)."""
    weight = Parameter(empty(*shape, dtype=dtype, device=device)) if affine else None
    module.register_parameter("weight", weight)
    module.register_parameter("bias", Parameter(empty(*shape, dtype=dtype, device=device)) if affine and bias
                              else None)


def _reset_affine(module: Module) -> None:
    if module.weight is not None:
        init.ones_(module.weight)
    if getattr(module, "bias", None) is not None:
        init.zeros_(module.bias)


class _BatchNorm(Module):
    """BatchNorm1d and BatchNorm2d: the same op, checked for a different input rank."""

    _ranks = (4,)
    _layout = "(N, C, H, W)"

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, device=None, dtype=None, *,
                 bias: bool = True):
        super().__init__()
        layer = type(self).__name__
        self.num_features = check_int(layer, "num_features", num_features)
        self.eps = check_float(layer, "eps", eps, 0.0)
        self.momentum = None if momentum is None else check_float(layer, "momentum", momentum, 0.0, 1.0)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        _affine_params(self, (num_features,), self.affine, bias, device, dtype)
        if self.track_running_stats:
            self.register_buffer("running_mean", empty(num_features, dtype=dtype, device=device))
            self.register_buffer("running_var", empty(num_features, dtype=dtype, device=device))
            self.register_buffer("num_batches_tracked", tensor(0, dtype=int64, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            with no_grad():
                self.running_mean.zero_()
                self.running_var.fill_(1)
                self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        _reset_affine(self)

    def forward(self, x):
        layer = type(self).__name__
        if x.ndim not in self._ranks:
            ranks = " or ".join(f"{r}D" for r in self._ranks)
            raise ValueError(f"{layer}: expected {ranks} input {self._layout}, "
                             f"got input of shape {x.shape}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{layer}: expected input with {self.num_features} channels (dim 1), "
                             f"got input of shape {x.shape}")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            with no_grad():
                self.num_batches_tracked.add_(1)
            if self.momentum is None:  # a cumulative moving average: step t weighs the batch by 1/t
                factor = 1.0 / int(self.num_batches_tracked.item())
        # in eval mode without running statistics, the batch statistics are used (as in PyTorch)
        use_batch_stats = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        return batch_norm(x, self.running_mean if track else None, self.running_var if track else None,
                          self.weight, self.bias, use_batch_stats, factor, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """y = (x - E[x]) / sqrt(Var[x] + eps) * weight + bias, per channel over the batch (and length) of
    (N, C) or (N, C, L) inputs.

    In training, the batch statistics normalize and update running_mean / running_var
    (r = (1 - momentum) r + momentum stat, the variance unbiased); in eval mode the running statistics
    normalize. momentum=None makes them a cumulative average over the num_batches_tracked batches.

    Args:
        num_features (int): C, the channels of the input.
        eps (float): added to the variance. Default: 1e-5.
        momentum (float or None): weight of each new batch in the running statistics. Default: 0.1.
        affine (bool): learn weight (init ones) and bias (init zeros). Default: True.
        track_running_stats (bool): keep running statistics (else batch statistics also in eval).
            Default: True.
        device, dtype: where and as what the parameters and buffers are made.
        bias (bool, keyword only): learn the bias (with affine). Default: True.

    >>> nn.BatchNorm1d(16)(zt.randn(8, 16)).shape
    (8, 16)
    """

    _ranks = (2, 3)
    _layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """y = (x - E[x]) / sqrt(Var[x] + eps) * weight + bias, per channel over (N, H, W) of (N, C, H, W).

    Running statistics, momentum and eval mode as in BatchNorm1d.

    Args:
        num_features (int): C, the channels of the input.
        eps (float): added to the variance. Default: 1e-5.
        momentum (float or None): weight of each new batch in the running statistics; None for a cumulative
            average. Default: 0.1.
        affine (bool): learn weight (init ones) and bias (init zeros). Default: True.
        track_running_stats (bool): keep running statistics (else batch statistics also in eval).
            Default: True.
        device, dtype: where and as what the parameters and buffers are made.
        bias (bool, keyword only): learn the bias (with affine). Default: True.

    >>> nn.BatchNorm2d(16)(zt.randn(8, 16, 5, 5)).shape
    (8, 16, 5, 5)
    """

    _ranks = (4,)
    _layout = "(N, C, H, W)"


class LayerNorm(Module):
    """y = (x - E[x]) / sqrt(Var[x] + eps) * weight + bias over the trailing normalized_shape dims.

    Args:
        normalized_shape (int or tuple): the trailing dims to normalize over.
        eps (float): added to the variance. Default: 1e-5.
        elementwise_affine (bool): learn weight (init ones) and bias (init zeros) of normalized_shape.
            Default: True.
        bias (bool): learn the bias (with elementwise_affine). Default: True.
        device, dtype: where and as what the parameters are made.

    >>> nn.LayerNorm(8)(zt.randn(2, 5, 8)).shape
    (2, 5, 8)
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.normalized_shape = check_shape("LayerNorm", "normalized_shape", normalized_shape)
        self.eps = check_float("LayerNorm", "eps", eps, 0.0)
        self.elementwise_affine = bool(elementwise_affine)
        _affine_params(self, self.normalized_shape, self.elementwise_affine, bias, device, dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset_affine(self)

    def forward(self, x):
        return layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self.bias is not None}")


class RMSNorm(Module):
    """y = x / sqrt(mean(x^2) + eps) * weight over the trailing normalized_shape dims.

    Args:
        normalized_shape (int or tuple): the trailing dims to normalize over.
        eps (float or None): added to the mean square; None means the input dtype's machine epsilon.
            Default: None.
        elementwise_affine (bool): learn weight (init ones) of normalized_shape. Default: True.
        device, dtype: where and as what the parameters are made.

    >>> nn.RMSNorm(8)(zt.randn(2, 5, 8)).shape
    (2, 5, 8)
    """

    def __init__(self, normalized_shape, eps: float | None = None, elementwise_affine: bool = True,
                 device=None, dtype=None):
        super().__init__()
        self.normalized_shape = check_shape("RMSNorm", "normalized_shape", normalized_shape)
        self.eps = None if eps is None else check_float("RMSNorm", "eps", eps, 0.0)
        self.elementwise_affine = bool(elementwise_affine)
        weight = Parameter(empty(*self.normalized_shape, dtype=dtype, device=device)) if elementwise_affine else None
        self.register_parameter("weight", weight)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset_affine(self)

    def forward(self, x):
        return rms_norm(x, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class GroupNorm(Module):
    """y = (x - E[x]) / sqrt(Var[x] + eps) * weight + bias, the statistics over each group of
    num_channels / num_groups channels (and all positions) of each sample of (N, C, *).

    Args:
        num_groups (int): groups to split the channels into; divides num_channels.
        num_channels (int): C, the channels of the input.
        eps (float): added to the variance. Default: 1e-5.
        affine (bool): learn a per-channel weight (init ones) and bias (init zeros). Default: True.
        device, dtype: where and as what the parameters are made.
        bias (bool, keyword only): learn the bias (with affine). Default: True.

    >>> nn.GroupNorm(4, 16)(zt.randn(2, 16, 5, 5)).shape
    (2, 16, 5, 5)
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 device=None, dtype=None, *, bias: bool = True):
        super().__init__()
        self.num_groups = check_int("GroupNorm", "num_groups", num_groups)
        self.num_channels = check_int("GroupNorm", "num_channels", num_channels)
        if num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels ({num_channels}) must be divisible by num_groups "
                             f"({num_groups})")
        self.eps = check_float("GroupNorm", "eps", eps, 0.0)
        self.affine = bool(affine)
        _affine_params(self, (num_channels,), self.affine, bias, device, dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset_affine(self)

    def forward(self, x):
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"GroupNorm: expected input (N, {self.num_channels}, *), "
                             f"got input of shape {x.shape}")
        return group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
                f"bias={self.bias is not None}")


class _InstanceNorm(Module):
    """Each channel of each sample normalized over its positions (GroupNorm with one channel a group), with a
    per-channel weight and bias when affine, as PyTorch's InstanceNorm (running statistics not kept)."""

    spatial = 1

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = False,
                 track_running_stats: bool = False, device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        if track_running_stats:
            raise NotImplementedError(f"{name}: track_running_stats=True is not supported (use BatchNorm for "
                                      "running statistics)")
        self.num_features = check_int(name, "num_features", num_features)
        self.eps = check_float(name, "eps", eps, 0.0)
        self.momentum, self.affine, self.track_running_stats = momentum, bool(affine), False
        _affine_params(self, (num_features,), self.affine, True, device, dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset_affine(self)

    def forward(self, x):
        from ..ops.nn import group_norm

        name = type(self).__name__
        if x.ndim not in (self.spatial + 1, self.spatial + 2):
            raise ValueError(f"{name}: expected a ({self.spatial + 1} or {self.spatial + 2})-d input, got shape "
                             f"{x.shape}")
        batched = x.ndim == self.spatial + 2
        c = x.shape[1] if batched else x.shape[0]
        if self.affine and c != self.num_features:
            raise ValueError(f"{name}: expected {self.num_features} channels, got {c} (shape {x.shape})")
        y = group_norm(x if batched else x.unsqueeze(0), c, self.weight, self.bias, self.eps)
        return y if batched else y.squeeze(0)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.affine}, track_running_stats={self.track_running_stats}")


class InstanceNorm1d(_InstanceNorm):
    """Instance normalization of (N, C, L) or (C, L)."""

    spatial = 1


class InstanceNorm2d(_InstanceNorm):
    """Instance normalization of (N, C, H, W) or (C, H, W)."""

    spatial = 2
