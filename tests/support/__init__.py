"""Workers and helpers shared by the test suites (importable by worker processes too)."""
