"""The server's default limits and batching settings (no imports: ``zoo serve --help`` shows them cheaply)."""

#: largest request body (and image fetched from a URL), in bytes
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
#: largest image, in pixels (width x height), checked before decoding
DEFAULT_MAX_PIXELS = 40_000_000
#: most images in one request
DEFAULT_MAX_IMAGES = 64
#: most images in one forward pass, and longest wait (ms) for a batch to fill
DEFAULT_MAX_BATCH = 16
DEFAULT_MAX_WAIT_MS = 5.0
#: most requests waiting per model before new ones are refused with 503
DEFAULT_MAX_QUEUE = 1024
