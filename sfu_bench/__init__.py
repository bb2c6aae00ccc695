"""``sfu bench``: load the SFU with cheap clients on 127.0.0.1 and measure it.

See :mod:`sfu_bench.cli` for the command, :mod:`sfu_bench.scenarios` for
what each scenario does and measures, and :mod:`sfu_bench.load` for the
load clients and the latency method.
"""
