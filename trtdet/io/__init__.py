"""Inputs (images, directories, videos, cameras) and outputs (JSON lines, annotated media)."""
