"""One folder per paper: its config schema, its model/loss/loop, and nothing another method needs."""
