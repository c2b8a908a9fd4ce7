"""Differentiable ops by family. Each op is one Function (forward on arrays, backward with Tensor ops) or a
composition of others; the public functions here take Tensors and Python scalars and do dtype promotion."""
