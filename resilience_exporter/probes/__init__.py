"""One module (or package) per probe kind; each registers itself with `registry` on import."""
