"""Plain helpers (no pytest) shared by the slow tests in tests/prod and the scripts in bench/."""
