"""The ``egin-tf`` command line (absl flags live only here)."""
