"""Simple Call Flow Manager."""
