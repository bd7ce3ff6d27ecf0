"""The operations behind tasks.py, one module per concern. Standard library only, so the
host needs nothing but Python, invoke and Docker."""
