"""The values of the choice settings, in one module that imports nothing: the library checks its
arguments against them and the CLI's enums (so ``--help`` lists them) are made from them."""

TTA_MODES = ("none", "flip")
AUGMENTATIONS = ("none", "flip", "light", "seed", "strong")  # data.transforms.augment applies these
BACKENDS = ("torch", "onnxruntime", "int8", "auto")  # int8: model-int8.onnx (never chosen by auto)
VOTE_METHODS = ("soft", "hard")
PRUNERS = ("median", "hyperband", "none")
TABLE_FORMATS = ("table", "csv", "md", "xlsx")
DETECTOR_NAMES = ("mtcnn", "fixed")  # faces.detectors.DETECTORS registers these
EXPLAIN_SPLITS = ("valid", "test")  # the photos maskcls explain draws maps of
