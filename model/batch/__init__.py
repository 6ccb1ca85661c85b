"""Apache Beam batch inpainting (``batch_inpaint.py``): model handler and pipeline transforms."""
