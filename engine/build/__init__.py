"""Building index directories: one build pipeline (read, encode, assemble, write) behind `index`, `reindex`,
`upsert` and `delete`, and ONNX export."""
