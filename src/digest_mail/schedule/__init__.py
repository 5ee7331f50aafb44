"""Scheduled sends: slots, run-due, approval and the daemon."""
