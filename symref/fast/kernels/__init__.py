"""Fast kernels; each has a NumPy twin it is tested against."""
