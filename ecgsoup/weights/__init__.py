"""Bundled pretrained weights (package data; see the model card in each folder)."""
