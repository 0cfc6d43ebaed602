"""Reliability suite: bad input and faults across the commands, each ending in a clear message, a skip-and-report or
a clean resume, and nothing lost."""
