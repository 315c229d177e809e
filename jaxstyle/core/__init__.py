"""The bottom layer: errors with their one-line messages and exit status, atomic file writes.
Imports nothing of jaxstyle's."""
