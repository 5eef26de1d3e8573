"""Throwaway infrastructure for tests, the demo and the bench (never used by a real sync)."""
