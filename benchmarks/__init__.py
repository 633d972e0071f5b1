"""Benchmarks of ``stnkit`` against PyTorch and kornia, side by side in one process.

Run ``python -m benchmarks`` (``--smoke`` for a seconds-long check, ``--json PATH`` to keep the
numbers, ``--only affine,tps`` for some sections). Sections:

1. ``affine``: affine ST (grid + bilinear sample) vs ``F.affine_grid`` + ``F.grid_sample``;
2. ``tps``: TPS 4x4 vs kornia's ``get_tps_transform`` + ``warp_image_tps``;
3. ``projective``: projective vs kornia's ``warp_perspective``;
4. ``training``: an ST-CNN training step vs the plain CNN's on RTS batches, and ``distortions``:
   the distortion generators' images per second.
"""
