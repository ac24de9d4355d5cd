"""Layer-0 experts of the teacher, one module each (see ``base.py`` for the contract)."""
