import pytest

# The fuzzer's checks live in a library module, not a test module: pytest
# rewrites its asserts too, so that a failure reports the compared values.
pytest.register_assert_rewrite("tests.e2e.fuzzing")
