"""Highway driving physics (no rendering): road loop, bicycle model, IDM traffic, sim."""
