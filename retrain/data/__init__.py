"""Fashion-MNIST-format IDX data: generated offline at any size, or the real files."""
