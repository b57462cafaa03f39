"""The generated kernels and when they run.

    choice      when a layer runs a kernel instead of its torch paths (CPU kernels and CUDA gemv)
    cpu/        the generated CPU kernels: compiled on first use, run as torch.library ops
    cuda/       the generated CUDA kernels through CuPy / NVRTC, as torch.library ops
    reference   the kernels' arithmetic in plain torch (any device; the CPU path of the CUDA ops) and the
                exact gradient formulas both backends' ops use (linear_ops)
    opkey       algebras as strings inside custom ops
    compiler    the system C++ compiler

Importing this package imports nothing heavy: `cpu` and `cuda` load on first use.
"""
