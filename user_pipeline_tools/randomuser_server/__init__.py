"""A Random User Generator (randomuser.me API 1.4) compatible HTTP server.

Used by the offline demo, tests and benchmarks. See ``launcher.RandomUserServer``
to run one as a subprocess, ``generator.generate_page`` for the users it serves.
"""
