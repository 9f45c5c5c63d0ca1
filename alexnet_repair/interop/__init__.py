"""Interop with the verification world: ONNX export, checkpoint key layouts, VNN-LIB benchmark folders.

- :mod:`.onnx_export`  ONNX export (TorchScript exporter), onnxruntime check, JSON sidecar;
- :mod:`.statedict`    torchvision (``features.*``) <-> earlier toolkit (``0.*`` / ``3.*``) state-dict keys;
- :mod:`.vnnlib`       VNN-LIB writer, a parser of its subset, and a point evaluator (``check_instance``);
- :mod:`.benchmark`    the VNN-COMP folder (onnx/, vnnlib/, instances.csv, README.md) for an edit set;
- :mod:`.commands`     what ``convert_model.py``'s subcommands run.

onnx/onnxruntime are imported on use, so importing this package stays cheap.
"""
