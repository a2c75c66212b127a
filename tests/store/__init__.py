"""Store contract tests (memory and Berkeley DB) and Berkeley DB store tests."""
