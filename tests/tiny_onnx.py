"""A tiny ONNX recogniser for tests of the optional ArcFace adapter."""


def tiny_arcface_onnx(path):
    """A tiny, randomly initialised CNN exported to ONNX, standing in for ArcFace: 112x112 RGB -> 512-d.
    It recognises nobody; it only has ArcFace's input and output shapes, and different faces give different embeddings."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(4),
                              torch.nn.Flatten(), torch.nn.Linear(128, 512))
    torch.onnx.export(net.eval(), torch.zeros(1, 3, 112, 112), str(path), input_names=["data"], output_names=["emb"], dynamo=False)
    return path
