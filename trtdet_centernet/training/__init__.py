"""Training the shipped CenterNet: procedural shape scenes, ctdet targets and losses, the loop.

Modules: ``backgrounds`` (real photos from installed packages), ``synthetic`` (the scene
generator), ``targets`` / ``losses`` (upstream ctdet encoding and losses), ``dataset``
(torch dataset and COCO writer), ``train`` (the CLI), ``generate`` (write a COCO set),
``ship`` (checkpoint -> the fp16-weight ONNX in ``trtdet_centernet/assets``).
See docs/training.md.
"""
