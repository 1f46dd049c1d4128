//! Shared helpers live in tests/tests/common.
