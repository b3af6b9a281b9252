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


class KeyedBlend:
    """Reversible and differentiable (the key-security attacks' test subject, not a baseline).

    y = (1 - alpha) x + alpha g(k), with g(k) = sigmoid(sum_j k_j Q_j) a full-resolution pattern from
    the first 16 key dimensions and fixed random fields Q_j; restore inverts it. A wrong key leaves a
    pattern amplified by alpha / (1 - alpha) on the face. g is smooth in k, so with plaintext pairs
    under one key a gradient search recovers a working key (weak against the shared universal key).
    """

    info = MethodInfo(name="keyed-blend", version="0", reversible=True, key_scheme="mema-key-v1", licence="Apache-2.0")
    alpha = 0.75
    keyed = True
    n_fields = 16

    def _pattern(self, kv, h, w):
        import torch

        q = torch.from_numpy(np.random.default_rng(1234).standard_normal((self.n_fields, 3, h, w)).astype(np.float32)).to(kv.device)
        if not self.keyed:
            kv = torch.ones_like(kv)  # key-independent: the same pattern for every key
        return torch.sigmoid(torch.einsum("nj,jchw->nchw", kv[:, : self.n_fields], q) * (2.0 / self.n_fields**0.5))

    def anonymize_tensor(self, x, key_vectors):
        return (1 - self.alpha) * x + self.alpha * self._pattern(key_vectors, *x.shape[2:])

    def restore_tensor(self, y, key_vectors):
        return ((y - self.alpha * self._pattern(key_vectors, *y.shape[2:])) / (1 - self.alpha)).clamp(0, 1)

    def _numpy(self, fn, images, key):
        import torch

        x = torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32) / 255)
        kv = torch.from_numpy(np.tile(key_vector(key), (len(images), 1)))
        with torch.no_grad():
            out = fn(x, kv)
        return (out.clamp(0, 1) * 255).round().numpy().astype(np.uint8).transpose(0, 2, 3, 1)

    def anonymize(self, images, key=None):
        return self._numpy(self.anonymize_tensor, images, key)

    def restore(self, images, key):
        return self._numpy(self.restore_tensor, images, key)


class FixedBlend(KeyedBlend):
    """KeyedBlend whose pattern ignores the key: 'reversible' by anyone, every key restores."""

    info = MethodInfo(name="fixed-blend", version="0", reversible=True, key_scheme="mema-key-v1", licence="Apache-2.0")
    keyed = False


class FragileBlend(KeyedBlend):
    """KeyedBlend with alpha 0.95: restoring amplifies its input 20x, so small perturbations steer it (BIM-weak)."""

    info = MethodInfo(name="fragile-blend", version="0", reversible=True, key_scheme="mema-key-v1", licence="Apache-2.0")
    alpha = 0.95


class Noise:
    """Replaces every face with noise: protects trivially and is not a face (the gate must say so)."""

    info = MethodInfo(name="noise", version="0", licence="none")

    def anonymize(self, images, key=None):
        return np.random.default_rng(0).integers(0, 256, images.shape).astype(np.uint8)


class Crashes:
    """Fails on its second batch when MEMA_TEST_CRASH is set: the harness must name method, stage and samples
    in one line, and resume."""

    info = MethodInfo(name="crashes", version="0", licence="none")
    calls = 0

    def anonymize(self, images, key=None):
        import os

        type(self).calls += 1
        if type(self).calls == 2 and os.environ.get("MEMA_TEST_CRASH"):
            raise RuntimeError("out of cheese")
        return images
