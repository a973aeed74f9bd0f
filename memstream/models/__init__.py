"""ONNX models: embeddings, valuation, compression, reputation."""
