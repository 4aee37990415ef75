"""Typed configs: schema (dataclasses), ConfigStore registration, validation."""
