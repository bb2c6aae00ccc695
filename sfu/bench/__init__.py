"""``sfu bench``: load the SFU with cheap clients on 127.0.0.1 and measure it.

See :mod:`sfu.bench.cli` for the command, :mod:`sfu.bench.scenarios` for
what each scenario does and measures, and :mod:`sfu.bench.load` for the
load clients and the latency method.
"""
