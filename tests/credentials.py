"""Credentials of the throwaway servers' monitoring role; tests grep outputs for them."""

MONITOR_USER = "monitor"
MONITOR_PASSWORD = "Monitor-Pw-7f3a9c"
