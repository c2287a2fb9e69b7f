"""``python -m odnbench ...``: the ``odnbench`` command, for environments without the script on PATH
(and for tests: ``odnbench.testing.run_cli`` runs it in-process with click's test runner)."""

from odnbench.cli import main

if __name__ == "__main__":
    main()
