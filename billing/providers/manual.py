"""The manual provider: access granted by staff (promotional, goodwill). It has no store to call;
its state is whatever staff last set, always through apply_snapshot with a reason."""

from .base import ProviderAdapter


class ManualAdapter(ProviderAdapter):
    name = "manual"
