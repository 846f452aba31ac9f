"""The command line, ``python -m retrain``: ``main`` parses, the other modules run a command."""
