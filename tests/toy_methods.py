"""Small methods used to exercise the harness's protocol checks and restore path (not baselines)."""

import numpy as np

from mema.keys import key_vector
from mema.methods import MethodInfo


class KeyedShuffle:
    """Reversible: permutes pixels with a key-seeded permutation. Exact restore with the right key."""

    info = MethodInfo(name="keyed-shuffle", version="0", reversible=True, key_scheme="mema-key-v1", licence="Apache-2.0")

    def _perm(self, key, n):
        seed = int(abs(key_vector(key, 4)).sum() * 1e6)
        return np.random.default_rng(seed).permutation(n)

    def anonymize(self, images, key=None):
        n, h, w, c = images.shape
        p = self._perm(key, h * w)
        return images.reshape(n, h * w, c)[:, p].reshape(images.shape)

    def restore(self, images, key):
        n, h, w, c = images.shape
        inv = np.argsort(self._perm(key, h * w))
        return images.reshape(n, h * w, c)[:, inv].reshape(images.shape)


class WrongShape:
    info = MethodInfo(name="wrong-shape", version="0", licence="none")

    def anonymize(self, images, key=None):
        return images[:, ::2]


class FewerImages:
    info = MethodInfo(name="fewer", version="0", licence="none")

    def anonymize(self, images, key=None):
        return images[:-1]


class NaNFloats:
    info = MethodInfo(name="nan-floats", version="0", licence="none")

    def anonymize(self, images, key=None):
        out = images.astype(np.float32)
        out[-1, 0, 0, 0] = np.nan
        return out


class NoProtocol:
    def anonymize(self, images):
        return images
