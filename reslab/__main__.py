"""``python -m reslab ...`` (and ``torchrun -m reslab train ...``) runs the command-line interface."""

from reslab.cli.main import main

if __name__ == "__main__":
    main()
