"""Data: procedural worlds and task pairs."""
