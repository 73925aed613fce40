"""maskcls: face-attribute image classification toolkit."""

__version__ = "0.1.0"
