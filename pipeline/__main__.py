"""``python -m pipeline`` is the same as the ``pipeline`` console script."""

from pipeline.cli import main

if __name__ == "__main__":
    main()
