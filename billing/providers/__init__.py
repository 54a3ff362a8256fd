from .registry import get_adapter, names, store_names

__all__ = ["get_adapter", "names", "store_names"]
