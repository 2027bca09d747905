"""Build scripts for the two Lambda packages. Never shipped in either."""
