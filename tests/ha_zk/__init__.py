"""ha_zk tests (a package: test_bad_input.py exists in other test directories too)."""
