"""adapters/store layer (see DESIGN.md)."""
