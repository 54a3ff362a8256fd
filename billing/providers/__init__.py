from .registry import get_adapter, names, register, store_names, unregister

__all__ = ["get_adapter", "names", "register", "store_names", "unregister"]
