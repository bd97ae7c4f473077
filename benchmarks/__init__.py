"""honeydew's benchmark suite against multiprocessing.Pool, ProcessPoolExecutor, loky, pebble and mpire.

Run ``make bench`` (or ``python -m benchmarks.run``); ``--smoke`` for the tiny version.  See
``docs/performance.md`` for what is measured and the latest published numbers.
"""
