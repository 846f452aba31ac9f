"""Stand-ins for what runs a function app on Azure: Azurite, and what the Functions host does.

Used by ``make demo``, the benchmarks and the tests, since Core Tools cannot run here.
"""
