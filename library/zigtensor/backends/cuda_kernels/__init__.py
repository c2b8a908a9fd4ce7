"""Python launchers over CuPy arrays, one module per kernels/<family>.cu: each allocates outputs, picks the
variant and tile sizes, computes grid and block, and calls `load_kernel(...)(grid, block, args)`."""
