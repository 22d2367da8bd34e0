"""Weighted and long prompts on SDXL (issue 15 §3): compel on both text encoders, the penultimate
hidden states un-normalized and concatenated, the second encoder's pooled embedding — on the tiny SDXL
saved and loaded through the real path."""

import pytest
import torch

from zss_core import weighted_prompts as wp
from zss_core.families import encode_keys_xl
from zss_core.models import load_pipeline
from zss_core.sampler import SamplingOptions, prepare, sample_video

PLAIN = "a red brick wall"
LONG = "a red brick wall " * 10  # 170 characters: over 77 tokens on the tiny one-token-per-character tokenizer


@pytest.fixture(scope="module")
def pipe(tiny_sdxl_dir):
    return load_pipeline(str(tiny_sdxl_dir), device="cpu")


def _options(prompt, **changes):
    return SamplingOptions(prompt=prompt, frames=2, width=64, height=64, steps=2, **changes)


def _span(tokenizer, before: str, word: str) -> slice:
    start = 1 + len(tokenizer(before, add_special_tokens=False).input_ids)
    return slice(start, start + len(tokenizer(word, add_special_tokens=False).input_ids))


def test_compel_is_set_up_for_both_encoders(pipe):
    first, second = wp.compel_for(pipe, "cpu")
    assert first.conditioning_provider.text_encoder is pipe.text_encoder
    assert second.conditioning_provider.text_encoder is pipe.text_encoder_2


def test_plain_prompts_keep_the_pipelines_own_encoding_bit_for_bit(pipe):
    cond = prepare(pipe, _options(PLAIN, negative_prompt="blurry"))
    embeds, negative, pooled, negative_pooled = pipe.encode_prompt(PLAIN, device="cpu", negative_prompt="blurry")
    assert torch.equal(cond.prompt_embeds, embeds) and torch.equal(cond.negative_embeds, negative)
    assert torch.equal(cond.added.text_embeds, pooled) and torch.equal(cond.added.negative_text_embeds, negative_pooled)


@pytest.mark.parametrize("negative", ["blurry", ""])
def test_weight_one_is_the_plain_prompt(pipe, negative):
    """Sequence and pooled embeddings, positive and negative; "" keeps SDXL's zero negative."""
    plain = prepare(pipe, _options(PLAIN, negative_prompt=negative))
    weighted = prepare(
        pipe, _options("a (red:1.0) brick wall", negative_prompt=f"({negative}:1.0)" if negative else "")
    )
    assert weighted.prompt_embeds.shape == plain.prompt_embeds.shape == (1, 77, 64)
    torch.testing.assert_close(weighted.prompt_embeds, plain.prompt_embeds)
    torch.testing.assert_close(weighted.negative_embeds, plain.negative_embeds)
    torch.testing.assert_close(weighted.added.text_embeds, plain.added.text_embeds)
    torch.testing.assert_close(weighted.added.negative_text_embeds, plain.added.negative_text_embeds)
    if not negative:
        assert not weighted.negative_embeds.any() and not weighted.added.negative_text_embeds.any()


def test_an_upweighted_word_scales_its_rows_on_both_encoders(pipe):
    """compel's w ≥ 1 rule on each encoder's half of the width: empty + w · (rows − empty), others untouched;
    the pooled embedding is the prompt's words, unweighted."""
    plain, _, plain_pooled, _ = pipe.encode_prompt(PLAIN, device="cpu", do_classifier_free_guidance=False)
    empty = pipe.encode_prompt("", device="cpu", do_classifier_free_guidance=False)[0]
    ((weighted, negative, pooled, _),) = encode_keys_xl(pipe, ["a (red:1.5) brick wall"], "cpu", False, None)
    assert negative is None and weighted.shape == (1, 77, 64)
    span = _span(pipe.tokenizer, "a", "red")
    torch.testing.assert_close(weighted[:, span], empty[:, span] + 1.5 * (plain[:, span] - empty[:, span]))
    assert (weighted[:, span, :32] - plain[:, span, :32]).abs().max() > 0.1  # the first encoder's half
    assert (weighted[:, span, 32:] - plain[:, span, 32:]).abs().max() > 0.1  # the second's
    others = torch.ones(77, dtype=torch.bool)
    others[span] = False
    torch.testing.assert_close(weighted[:, others], plain[:, others], rtol=0, atol=0)
    torch.testing.assert_close(pooled, plain_pooled)


def test_long_prompts_are_encoded_without_truncation(pipe):
    ((embeds, negative, pooled, negative_pooled),) = encode_keys_xl(pipe, [LONG], "cpu", True, "blurry")
    assert embeds.shape == negative.shape == (1, 154, 64) and pooled.shape == negative_pooled.shape == (1, 32)
    truncated, _, truncated_pooled, _ = pipe.encode_prompt(LONG, device="cpu", do_classifier_free_guidance=False)
    assert truncated.shape == (1, 77, 64)
    torch.testing.assert_close(pooled, truncated_pooled)  # the pooled vector is cut at 77 tokens, as stock
    empty = pipe.encode_prompt("", device="cpu", do_classifier_free_guidance=False)[0]
    assert (embeds[:, 77:] - empty).abs().max() > 0.1  # the second piece is the rest of the prompt
    torch.testing.assert_close(negative[:, 77:], empty)  # the short negative padded with empty-prompt pieces
    # "" as the negative: SDXL's zeros, as long as the prompt
    ((_, zeros, _, zero_pooled),) = encode_keys_xl(pipe, [LONG], "cpu", True, None)
    assert zeros.shape == (1, 154, 64) and not zeros.any() and not zero_pooled.any()


def test_prompt_travel_interpolates_weighted_keys_and_their_pooled_embeddings(pipe):
    keys = [(0, "(moss:1.4) on stone"), (4, LONG)]
    cond = prepare(pipe, SamplingOptions(keys, frames=5, width=64, height=64, negative_prompt="[blurry]"))
    encoded = encode_keys_xl(pipe, [text for _, text in keys], "cpu", True, "[blurry]")
    (first, negative, first_pooled, negative_pooled), (last, _, last_pooled, _) = encoded
    assert cond.prompt_embeds.shape == (5, 154, 64) and cond.added.text_embeds.shape == (5, 32)
    torch.testing.assert_close(cond.prompt_embeds[0], first[0])
    torch.testing.assert_close(cond.prompt_embeds[4], last[0])
    torch.testing.assert_close(cond.prompt_embeds[2], (first[0] + last[0]) / 2)
    torch.testing.assert_close(cond.added.text_embeds[2], (first_pooled[0] + last_pooled[0]) / 2)
    torch.testing.assert_close(cond.negative_embeds, negative)
    torch.testing.assert_close(cond.added.negative_text_embeds, negative_pooled)
    plain_first = encode_keys_xl(pipe, ["moss on stone"], "cpu", True, "[blurry]")[0][0]
    assert (first[:, :77] - plain_first).abs().max() > 1e-2  # the weight is in the key


def test_a_weighted_long_clip_samples_with_guidance_and_chunks(pipe):
    prompt = "(a red brick wall:1.3), " + "mossy stones, " * 8
    common = dict(frames=3, width=64, height=64, steps=2, seed=1, output_type="np", negative_prompt="[blurry]")
    whole = sample_video(pipe, prompt, **common).frames
    parts = sample_video(pipe, prompt, chunk=2, **common).frames
    plain = sample_video(pipe, PLAIN, **common).frames
    assert max(abs(a - b).max() for a, b in zip(whole, parts)) < 1e-4
    assert max(abs(a - b).max() for a, b in zip(whole, plain)) > 1e-3
