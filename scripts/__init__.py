"""Entry points (`python -m scripts.demo`, ...) and the test servers they and the tests start."""
