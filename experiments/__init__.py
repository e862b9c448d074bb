"""Experiments on top of egin_tf: the paper's tables and figures, and the studies of
experiments/RESULTS.md.

Each module is a script; run it from the repository root as a module, e.g.
``python -m experiments.paper_tables --table simulator`` (``--help`` lists its
flags). Modules import each other as ``from experiments import paper_tables`` and
share paths, number formats, tables and data preparation through
`experiments.common`. The package is not installed with egin-tf (see setup.py):
it runs from a checkout.
"""
