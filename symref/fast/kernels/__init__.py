"""Fast kernels; each has a NumPy twin it is tested against.

``_jit``          the one place kernels are compiled (a parallel and a serial build of each)
``activations``   tanh for numba kernels; relu, relu6, softplus, sigmoid, gelu, silu by code
``dense``         bias + activation + residual of a dense layer, forward and backward
``dual``          the same in dual (tangent-carrying) mode, for the loss gradient
``neighbors``     O(N) cell-list neighbour search and compact pair lists
``se_e2_a``       the se_e2_a pipeline on pair lists (environment rows, embedding, T, D)
``tabulated``     compressed models: environment rows, table look-up and T in one kernel
``vcnn``          VectorCloudNet: cloud sums and Gram matrix over ragged clouds, a dense
                  layer's backward with its parameter sums
``cuda_se_e2_a``  numba-cuda kernels of one se_e2_a + energy evaluation

May import: numpy, numba, numba-cuda and ``symref.reference`` (for the NumPy twins).
"""

from symref.fast.kernels._jit import install_cache_locator

install_cache_locator()  # before any kernel module is decorated (see _jit)
