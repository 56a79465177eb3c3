"""A trained model at work: loading it as a predictor, its inference form, ``.pt2`` and ONNX files,
model cards, scoring on benchmarks, and upscaling photos and videos."""
