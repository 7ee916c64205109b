"""Benchmarks and probes, run as scripts (``python benchmarks/NAME.py``); a package so that tests can
import the probes they check (``from benchmarks.shapeworld_probes import ...``)."""
