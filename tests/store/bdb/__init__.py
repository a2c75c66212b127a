"""Tests of the Berkeley DB store plugin on a real environment on disk."""
