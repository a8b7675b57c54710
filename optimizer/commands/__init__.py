"""The file ends of the ``adplan`` commands: each module reads folders, calls the
stages and writes folders, returning the lines the command prints; ``options``
declares every command-line option once. Within the library only
``optimizer/cli.py`` imports this package (tests and benchmarks may call it).
"""
