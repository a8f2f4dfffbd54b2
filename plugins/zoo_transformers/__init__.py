"""zoo_transformers: Hugging Face transformers' vision models in the zoo (optional extra ``zoo[transformers]``).

Registered through the ``zoo.plugins`` entry point like every other plugin. Its catalog is data: listing
it never imports transformers, so ``zoo list`` stays fast and works without the extra installed.
"""
