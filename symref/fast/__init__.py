"""Validated fast twins of the reference: numba CPU-parallel and numba-cuda.

``cpu``       evaluation of an energy model on compact pair lists (``backend="numba"``)
``cpu_loss``  the training-loss gradient on the same kernels
``cuda``      evaluation on an NVIDIA GPU (``backend="cuda"``)
``blas``      a context manager limiting the BLAS threads behind NumPy
``kernels/``  the kernels themselves, each a twin of a NumPy function with the same
              signature and a test comparing them (``atol + |ref|·eps(dtype)``)

May import: numpy, numba, numba-cuda and ``symref.reference``.  Never
``symref.model``: a model hands its arrays to these functions, which do not know
the model classes.
"""
