"""Small pure-Python reference implementations (oracles).

Tests run the same bodies against these and the native core; benchmarks print them as the
slow baseline. Written for obviousness, never used on a data path.
"""
