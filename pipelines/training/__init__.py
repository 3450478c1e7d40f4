"""Training outside the pure kernels of tamrf_xr.training: the dataset builder, the loop
(checkpoints, resume, logs) and the torchrun worker."""
