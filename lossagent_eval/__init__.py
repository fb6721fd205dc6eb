"""Paper-style benchmark evaluation: `test.py -opt options/test/<name>.yml` (see options/test/README.md)."""

from lossagent_eval.tables import AVG, REF_ROW, BenchmarkTable  # noqa: F401
