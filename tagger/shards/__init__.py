"""CSV + audio folder -> TFRecord shards: the record schema, the CSV rows,
the folds, the sharding run (local pool or Apache Beam) and the manifest
that describes what was written (data_info)."""
