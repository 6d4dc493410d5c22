"""The version of mtu, in a module of its own: code inside the package reads it without importing the package."""

__version__ = "0.1.0"
