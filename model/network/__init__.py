"""The networks: what a PixelCNN computes, and nothing about how it is sampled or trained.

- ``layers``: masked and gated convolution blocks (the causal building blocks);
- ``attention``: causal self-attention over raster order (the "gated-attention" network);
- ``pixelcnn``: ``PixelCNNConfig`` (what a checkpoint stores) and ``PixelCNN``, the wiring;
- ``classifier``: a small CNN that tells an image's class (the codec's quick label guess).
"""

from model.network.pixelcnn import ARCHITECTURES, PixelCNN, PixelCNNConfig

__all__ = ["ARCHITECTURES", "PixelCNN", "PixelCNNConfig"]
