"""The growing KV cache: same logits as transformers' DynamicCache, including after outgrowing its buffer."""

import torch
from transformers import DynamicCache

from assistant.kv_cache import GrowingLayer, growing_cache, merge_caches


def _greedy(model, ids: list[int], cache, steps: int) -> list[torch.Tensor]:
    logits, out = [], model(input_ids=torch.tensor([ids]), past_key_values=cache, use_cache=True).logits[:, -1]
    for _ in range(steps):
        logits.append(out)
        nxt = out.argmax(-1, keepdim=True)
        out = model(input_ids=nxt, past_key_values=cache, use_cache=True).logits[:, -1]
    return logits


@torch.inference_mode()
def test_growing_cache_matches_dynamic_cache_and_grows(tiny_model):
    ids = list(range(5, 17))
    reference = _greedy(tiny_model, ids, DynamicCache(config=tiny_model.config), 10)
    cache = growing_cache(tiny_model.config, capacity=len(ids) + 2)  # too small: must grow mid-decode
    ours = _greedy(tiny_model, ids, cache, 10)
    for a, b in zip(reference, ours, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    layer = cache.layers[0]
    assert isinstance(layer, GrowingLayer) and layer.capacity >= layer.length == len(ids) + 10
    assert cache.get_seq_length() == len(ids) + 10


@torch.inference_mode()
def test_merge_left_pads_rows_and_keeps_their_keys(tiny_model):
    caches = []
    for n in (3, 7):
        cache = DynamicCache(config=tiny_model.config)
        tiny_model(input_ids=torch.arange(1, n + 1)[None], past_key_values=cache, use_cache=True)
        caches.append(cache)
    merged = merge_caches(caches, tiny_model.config, extra=5)
    keys = merged.layers[1].keys
    assert keys.shape[0] == 2 and keys.shape[2] == 7 and merged.layers[1].capacity == 12
    assert torch.equal(keys[0, :, 4:], caches[0].layers[1].keys[0])  # short row: right-aligned
    assert torch.count_nonzero(keys[0, :, :4]) == 0  # zero slots the attention mask hides
    assert torch.equal(keys[1], caches[1].layers[1].keys[0])
