"""Scale benchmarks: the pipeline against a naive baseline and the database floor, in one run.

    python -m bench.run --scale 100000 [--repeat 3] [--skip-naive]

See bench/README.md for what is measured and the latest figures.
"""
