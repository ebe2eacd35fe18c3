"""ports layer (see DESIGN.md)."""
