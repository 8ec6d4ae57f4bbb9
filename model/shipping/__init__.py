"""Shipping a better Fashion-MNIST weights file (``python -m model.ship``).

- ``figures``: measuring a file the same way every time, and the rule a candidate must pass;
- ``pictures``: the model card's and the README's pictures, made from the shipped file;
- ``quality``: the judge classifier, class fidelity and FID (``bench.quality`` prints them too);
- ``documents``: the figures in the README and the model card, rewritten between markers.
"""
