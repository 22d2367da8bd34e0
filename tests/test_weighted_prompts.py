"""Weighted prompts ("(word:1.3)", "[word]") and long prompts through compel, on the tiny SD1 model."""

import math
import sys

import pytest
import torch

from zss_core import weighted_prompts as wp
from zss_core.prompts import encode_keys, encode_schedule
from zss_core.sampler import SamplingOptions, prepare, sample_video

A = 1.1


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a red brick wall", [("a red brick wall", 1.0)]),
        ("a (red) wall", [("a", 1.0), ("red", A), ("wall", 1.0)]),
        ("a ((red)) wall", [("a", 1.0), ("red", A * A), ("wall", 1.0)]),
        ("a [red] wall", [("a", 1.0), ("red", 1 / A), ("wall", 1.0)]),
        ("a [[red]] wall", [("a", 1.0), ("red", 1 / A / A), ("wall", 1.0)]),
        ("a (red:1.3) wall", [("a", 1.0), ("red", 1.3), ("wall", 1.0)]),
        ("a (red: 0.5 ) wall", [("a", 1.0), ("red", 0.5), ("wall", 1.0)]),
        ("(red brick:1.5), wall", [("red brick", 1.5), (", wall", 1.0)]),
        # nested groups multiply
        ("(a (b:2) c:0.5) d", [("a", 0.5), ("b", 1.0), ("c", 0.5), ("d", 1.0)]),
        ("([b])", [("b", 1.0)]),
        ("((a) [b])", [("a", A * A), ("b", 1.0)]),
        # escaped brackets and backslashes are literal text
        (r"a \(red\) wall", [("a (red) wall", 1.0)]),
        (r"\[x\] (y) \\", [("[x]", 1.0), ("y", A), ("\\", 1.0)]),
        (r"(a \(b\):1.2)", [("a (b)", 1.2)]),
        # a ':' that is no weight, unopened closers, unclosed openers (the rest of the prompt)
        ("time: 5pm", [("time: 5pm", 1.0)]),
        ("a) b]", [("a) b]", 1.0)]),
        ("a (b c", [("a", 1.0), ("b c", A)]),
        ("a [b c", [("a", 1.0), ("b c", 1 / A)]),
        ("(a:1.0) b", [("a b", 1.0)]),
        ("", [("", 1.0)]),
    ],
)
def test_parse_weights_reads_the_a1111_syntax(text, expected):
    got = wp.parse_weights(text)
    assert [fragment for fragment, _ in got] == [fragment for fragment, _ in expected]
    assert [weight for _, weight in got] == pytest.approx([weight for _, weight in expected])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a (red:1.3) wall", "a (red)1.3 wall"),
        ("a (red) wall", "a (red)+ wall"),
        ("((red))", "(red)++"),
        ("[red]", "(red)0.909091"),
        (r"a \(b\) (c:2)", r"a \(b\) (c)2"),
        ('say "hi" (now)', r"say \"hi\" (now)+"),
    ],
)
def test_to_compel_writes_compel_syntax(text, expected):
    assert wp.to_compel(text) == expected


@pytest.mark.parametrize(
    "text", ["a (red:1.3) wall", "((red)) [[brick]] wall", "(a (b:2) c:0.5) d", r"a \(b\) (c:1.7)", "(x) (y)"]
)
def test_compel_reads_to_compel_as_the_same_weights(text):
    """compel's own parser, given the converted prompt, finds the fragments and weights parse_weights found."""
    from compel import Compel

    ours = wp.parse_weights(text)
    parsed = [
        (f.text, f.weight) for prompt in Compel.parse_prompt_string(wp.to_compel(text)).prompts for f in prompt.children
    ]
    assert [t for t, _ in parsed] == [t for t, _ in ours]
    assert [w for _, w in parsed] == pytest.approx([w for _, w in ours], rel=1e-5)


def test_syntax_and_length_decide_the_path(tiny_pipe):
    tokenizer = tiny_pipe.tokenizer
    assert not wp.needs_compel(tokenizer, ["a red brick wall", ""])
    assert wp.needs_compel(tokenizer, ["a red brick wall", "(blurry)"])
    assert wp.needs_compel(tokenizer, [r"a \(literal\) bracket"])
    window = tokenizer.model_max_length - 2  # start and end tokens
    fits = "x" * window  # the tiny tokenizer has one token per character
    assert not wp.too_long(tokenizer, fits) and wp.too_long(tokenizer, fits + "x")


def _options(prompt, **changes):
    return SamplingOptions(prompt=prompt, frames=2, width=64, height=64, steps=2, **changes)


def test_plain_prompts_keep_the_pipelines_own_encoding_bit_for_bit(tiny_pipe):
    cond = prepare(tiny_pipe, _options("a red brick wall", negative_prompt="blurry"))
    positive, negative = tiny_pipe.encode_prompt("a red brick wall", "cpu", 1, True, "blurry")
    assert torch.equal(cond.prompt_embeds, positive) and torch.equal(cond.negative_embeds, negative)


def test_weight_one_is_the_plain_prompt(tiny_pipe):
    plain = prepare(tiny_pipe, _options("a red brick wall", negative_prompt="blurry"))
    weighted = prepare(tiny_pipe, _options("a (red:1.0) brick wall", negative_prompt="(blurry:1.0)"))
    assert weighted.prompt_embeds.shape == plain.prompt_embeds.shape == (1, 77, 32)
    torch.testing.assert_close(weighted.prompt_embeds, plain.prompt_embeds)
    torch.testing.assert_close(weighted.negative_embeds, plain.negative_embeds)


def _token_span(tokenizer, before: str, word: str) -> slice:
    """Where ``word``'s tokens sit in ``before + " " + word + …`` (after the start token)."""
    start = 1 + len(tokenizer(before, add_special_tokens=False).input_ids)
    return slice(start, start + len(tokenizer(word, add_special_tokens=False).input_ids))


def test_an_upweighted_word_scales_its_rows_away_from_the_empty_prompt(tiny_pipe):
    """compel's method for w ≥ 1: the word's rows become empty + w · (rows − empty); no other row moves."""
    (plain,), _ = encode_keys(tiny_pipe, ["a red brick wall"], "cpu", do_cfg=False)
    (weighted,), _ = encode_keys(tiny_pipe, ["a (red:1.5) brick wall"], "cpu", do_cfg=False)
    empty, _ = tiny_pipe.encode_prompt("", "cpu", 1, False)
    span = _token_span(tiny_pipe.tokenizer, "a", "red")
    expected = empty[:, span] + 1.5 * (plain[:, span] - empty[:, span])
    torch.testing.assert_close(weighted[:, span], expected)
    assert (weighted[:, span] - plain[:, span]).abs().max() > 0.1
    others = torch.ones(77, dtype=torch.bool)
    others[span] = False
    torch.testing.assert_close(weighted[:, others], plain[:, others], rtol=0, atol=0)


def test_a_downweighted_word_fades_towards_the_prompt_without_it(tiny_pipe):
    """compel's method for w < 1: the word's rows scaled towards the empty prompt's (empty + w · (rows −
    empty)), in a blend of the prompt with the prompt whose word is masked out of the text encoder's
    attention, weighted 1 : tan((1 − w)·π/2) — at w = 0.5 exactly half way."""
    (plain,), _ = encode_keys(tiny_pipe, ["a red brick wall"], "cpu", do_cfg=False)
    empty, _ = tiny_pipe.encode_prompt("", "cpu", 1, False)
    ids = tiny_pipe.tokenizer("a red brick wall", padding="max_length", max_length=77, return_tensors="pt").input_ids
    span = _token_span(tiny_pipe.tokenizer, "a", "red")
    mask = torch.ones_like(ids)
    mask[0, span] = 0
    with torch.no_grad():
        without = tiny_pipe.text_encoder(ids, attention_mask=mask)[0]

    def scaled(rows, weight):
        out = rows.clone()
        out[:, span] = empty[:, span] + weight * (rows[:, span] - empty[:, span])
        return out

    for prompt, weight in (("a (red:0.5) brick wall", 0.5), ("a [red] brick wall", 1 / A)):
        (got,), _ = encode_keys(tiny_pipe, [prompt], "cpu", do_cfg=False)
        lerp = math.tan((1 - weight) * math.pi / 2)
        expected = (scaled(plain, weight) + lerp * scaled(without, weight)) / (1 + lerp)
        torch.testing.assert_close(got, expected)
        assert (got - plain).abs().max() > 1e-2


def test_long_prompts_are_encoded_without_truncation(tiny_pipe):
    long = "a red brick wall " * 10  # 140 tokens on the tiny tokenizer
    short = "a red brick wall"
    (embeds,), negative = encode_keys(tiny_pipe, [long], "cpu", do_cfg=True, negative_prompt="blurry")
    assert embeds.shape == negative.shape == (1, 154, 32)  # two 77-token pieces; the negative padded to match
    truncated, _ = tiny_pipe.encode_prompt(long, "cpu", 1, False)
    assert truncated.shape == (1, 77, 32)  # what the plain path would have kept
    # the second piece carries the rest of the prompt: it is not the empty-prompt padding
    empty, _ = tiny_pipe.encode_prompt("", "cpu", 1, False)
    assert (embeds[:, 77:] - empty).abs().max() > 0.1
    # a short prompt beside it is padded with empty-prompt pieces
    (long_key, short_key), _ = encode_keys(tiny_pipe, [long, short], "cpu", do_cfg=False)
    assert long_key.shape == short_key.shape == (1, 154, 32)
    torch.testing.assert_close(short_key[:, 77:], empty)


def test_prompt_travel_interpolates_weighted_and_long_keys(tiny_pipe):
    long = "a red brick wall " * 10
    keys = [(0, "(moss:1.4) on stone"), (4, long)]
    per_frame, negative = encode_schedule(tiny_pipe, keys, 5, "cpu", "linear", True, "[blurry]")
    (first, last), neg = encode_keys(tiny_pipe, [text for _, text in keys], "cpu", True, "[blurry]")
    assert per_frame.shape == (5, 154, 32) and negative.shape == (1, 154, 32)
    torch.testing.assert_close(per_frame[0], first[0])
    torch.testing.assert_close(per_frame[4], last[0])
    torch.testing.assert_close(per_frame[2], (first[0] + last[0]) / 2)
    torch.testing.assert_close(negative, neg)


def test_a_weighted_long_clip_samples_with_guidance_and_chunks(tiny_pipe):
    """Guidance stacks the padded negative with the long prompt; chunking stays exact."""
    prompt = "(a red brick wall:1.3), " + "mossy stones, " * 8
    common = dict(frames=3, width=64, height=64, steps=2, seed=1, output_type="np", negative_prompt="[blurry]")
    whole = sample_video(tiny_pipe, prompt, **common).frames
    parts = sample_video(tiny_pipe, prompt, chunk=2, **common).frames
    plain = sample_video(tiny_pipe, "a red brick wall", **common).frames
    assert max(abs(a - b).max() for a, b in zip(whole, parts)) < 1e-4
    assert max(abs(a - b).max() for a, b in zip(whole, plain)) > 1e-3


def test_without_compel_a_weighted_prompt_is_refused_naming_the_prompt(tiny_pipe, monkeypatch):
    from zss_core.runner import JobError

    monkeypatch.setitem(sys.modules, "compel", None)  # this generator environment lacks the package
    with pytest.raises(JobError) as info:
        prepare(tiny_pipe, _options("a (red:1.3) wall"))
    assert info.value.field == "prompt" and "compel" in info.value.message
    prepare(tiny_pipe, _options("a red wall"))  # plain prompts do not need it
