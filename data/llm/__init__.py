"""The shared causal-LM core: loading (hub or offline wheel), attention observation, KV caches."""
