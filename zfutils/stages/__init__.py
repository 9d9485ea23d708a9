"""One module per stage notebook, named after it: `notebooks/03_finetune_classifier.ipynb` calls
`zfutils.stages.finetune_classifier`. Stage 01's work is the data package's
(`zfutils.data.build.prepare_dataset`). Stage modules build on the library below them (data,
models, train, embed, cluster, matching, tables); nothing below imports a stage module, and only
the report reads the other stages' modules (tests/test_import_graph.py)."""
