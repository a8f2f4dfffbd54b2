"""Dataset readers shared by tasks, image loading, and the built-in synthetic datasets."""
