"""The runtime: everything needed to run a converted model. Never imports torch."""
