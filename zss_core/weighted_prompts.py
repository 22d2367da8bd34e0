"""Weighted prompts (``(word:1.3)``, ``(word)``, ``[word]``) and prompts longer than 77 tokens, with compel.

Artists paste prompts in the AUTOMATIC1111 syntax; compel (a maintained library for exactly this)
has its own (``(word)1.3``, ``(word)+``, ``(word)-``). ``parse_weights`` reads the A1111 syntax into
(text, weight) fragments, ``to_compel`` writes them in compel's syntax, and ``encode`` turns prompts
into embeddings with compel's weighting:

* a fragment weighted w ≥ 1 has its tokens' rows of the text encoder's output moved away from the
  empty prompt's rows: ``empty + w · (rows − empty)`` (the other rows are untouched);
* a fragment weighted w < 1 is faded out: the embedding is blended towards the same prompt with that
  fragment masked out (w = 0: gone);
* a prompt over the tokenizer's 77 tokens is encoded in 77-token pieces (each with its own start and
  end token) laid one after the other, instead of being cut off.

``encode`` hands compel the fragments themselves (compel's ``get_embeddings_for_weighted_prompt_fragments``,
what its own parser calls): re-parsing ``to_compel``'s text would let compel read a literal ``C++`` or
``Disney+`` as weights and would re-space punctuation inside weighted groups.

All prompts of a call (the keys of a prompt schedule and the negative prompt) are padded to one length
(compel's ``pad_conditioning_tensors_to_same_length``, with empty-prompt pieces), so guidance can stack
them and prompt travel can interpolate them. The sampler only comes here when a prompt has bracket
syntax or is too long (``needs_compel``): plain prompts keep the pipeline's own ``encode_prompt``,
bit for bit.

Families: SD 1.x/2.x take the text encoder's last hidden state (``compel_for``). SDXL takes its two
encoders, the penultimate hidden states un-normalized
(``ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED``), concatenated on the last axis,
as compel's ``CompelForSDXL`` does, and the stock pooled embedding of the second (see ``compel_for``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ROUND = 1.1  # (word): × 1.1 per pair of round brackets
SQUARE = 1 / 1.1  # [word]: ÷ 1.1 per pair of square brackets
SYNTAX = "()[]\\"  # a prompt holding none of these has no weights

Fragment = tuple[str, float]

# One piece of A1111 syntax per match: escapes, brackets, a ":weight)" closing, plain text, a lone ':'.
_PIECES = re.compile(
    r"""
    \\[()\[\]\\]                             # an escaped bracket or backslash: literal
    | \(                                     # opens ×1.1, or ×weight when closed by ":weight)"
    | \[                                     # opens ÷1.1
    | :\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*\)    # closes the innermost '(' with an explicit weight
    | \)
    | \]
    | [^\\()\[\]:]+                          # plain text
    | [:\\]                                  # a ':' that is no weight, a lone backslash: literal
    """,
    re.VERBOSE,
)


def has_weight_syntax(text: str) -> bool:
    """Whether ``text`` uses brackets or escapes (what ``parse_weights`` reads); plain text does not."""
    return any(char in text for char in SYNTAX)


def parse_weights(text: str) -> list[Fragment]:
    """``text`` in the A1111 syntax → (text, weight) fragments, adjacent equal weights merged.

    ``(a)`` ×1.1, ``((a))`` ×1.21, ``[a]`` ÷1.1, ``(a:1.3)`` ×1.3 (nested groups multiply);
    ``\\(``, ``\\)``, ``\\[``, ``\\]``, ``\\\\`` are the characters themselves. An unclosed bracket
    weights the rest of the prompt, an unopened closing one is literal text (as A1111 does).
    Whitespace-only fragments are dropped; a prompt without weights is one fragment of weight 1.
    """
    pieces: list[list] = []  # [text, weight], weights multiplied in as groups close
    round_open: list[int] = []  # where each open group's fragments start
    square_open: list[int] = []

    def multiply(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            piece[1] *= factor

    for match in _PIECES.finditer(text):
        piece, weight = match.group(0), match.group(1)
        if piece.startswith("\\") and len(piece) == 2:
            pieces.append([piece[1], 1.0])
        elif piece == "(":
            round_open.append(len(pieces))
        elif piece == "[":
            square_open.append(len(pieces))
        elif weight is not None and round_open:
            multiply(round_open.pop(), float(weight))
        elif piece == ")" and round_open:
            multiply(round_open.pop(), ROUND)
        elif piece == "]" and square_open:
            multiply(square_open.pop(), SQUARE)
        else:
            pieces.append([piece, 1.0])
    for start in round_open:
        multiply(start, ROUND)
    for start in square_open:
        multiply(start, SQUARE)

    merged: list[Fragment] = []
    for piece_text, weight in pieces:
        if not piece_text.strip():
            continue
        if merged and math.isclose(merged[-1][1], weight, rel_tol=1e-9):
            merged[-1] = (merged[-1][0] + piece_text, merged[-1][1])
        else:
            merged.append((piece_text, weight))
    return [(fragment.strip(), weight) for fragment, weight in merged] or [("", 1.0)]


_COMPEL_ESCAPES = str.maketrans({"(": "\\(", ")": "\\)", '"': '\\"'})


def _compel_weight(weight: float) -> str:
    """compel's weight suffix: ``+`` per factor 1.1 (exactly A1111's round brackets), else the number."""
    for plus in range(1, 6):
        if math.isclose(weight, ROUND**plus, rel_tol=1e-9):
            return "+" * plus
    return f"{weight:.6g}"


def to_compel(text: str) -> str:
    """``text`` in the A1111 syntax → the same prompt in compel's syntax: ``(a:1.3)`` → ``(a)1.3``,
    ``(a)`` → ``(a)+``, ``[a]`` → ``(a)0.909091``, ``\\(`` → ``\\(`` (compel's escape)."""
    parts = []
    for fragment, weight in parse_weights(text):
        escaped = fragment.translate(_COMPEL_ESCAPES)
        parts.append(escaped if weight == 1.0 else f"({escaped}){_compel_weight(weight)}")
    return " ".join(parts)


def too_long(tokenizer, text: str) -> bool:
    """Whether ``text`` has more tokens (with the start and end tokens) than the tokenizer's window."""
    return len(tokenizer(text, verbose=False).input_ids) > tokenizer.model_max_length


def needs_compel(tokenizer, texts: Sequence[str]) -> bool:
    """Whether any of ``texts`` has weight syntax or is too long for the plain ``encode_prompt``."""
    return any(has_weight_syntax(text) or too_long(tokenizer, text) for text in texts)


@dataclass
class WeightedEncoding:
    """What ``encode`` makes: one (1, tokens, width) embedding per prompt, and the negative prompt's
    (None without guidance), all with the same number of tokens (a multiple of 77). SDXL also gets
    the second text encoder's pooled embedding (1, P) per prompt and for the negative prompt."""

    prompts: list[Any]  # torch tensors (this module imports torch only where it encodes)
    negative: Any
    pooled: list[Any] | None = None  # SDXL only
    negative_pooled: Any = None  # SDXL under guidance only


def _require_compel():
    try:
        import compel
    except ImportError:
        from .runner import JobError

        raise JobError(
            "bad_request",
            "Weighted prompts ('(word:1.3)', '[word]') and prompts over 77 tokens need the compel package, "
            "which this generator environment does not have.",
            "Install it into the generator environment (`pip install compel`, the 'prompts' extra), or remove "
            "the brackets and shorten the prompt.",
            "prompt",
        ) from None
    return compel


def is_sdxl(pipe) -> bool:
    """Whether ``pipe`` conditions on two text encoders and a pooled embedding (SDXL)."""
    return getattr(pipe, "text_encoder_2", None) is not None


def compel_for(pipe, device) -> list:
    """The compel encoders that match ``pipe.encode_prompt`` for this pipeline's family, one per text
    encoder, without truncating long prompts.

    SD 1.x/2.x: one, the text encoder's last hidden state. SDXL: one per text encoder (the first is
    left out when a pipeline has none, as ``encode_prompt`` does), each the penultimate hidden state
    un-normalized, as compel's ``CompelForSDXL``. compel's older form taking both tokenizers in one
    ``Compel`` prints a deprecation notice on stdout and cannot pad long prompts (its multi-encoder
    provider has no empty-prompt embedding), so one ``Compel`` per encoder it is.

    The pooled embedding is not compel's (``requires_pooled``): compel pools the prompt after its
    textual-inversion pass re-tokenizes the text cut at 77 tokens, which changes the last token of a
    long prompt (the pooled vector moved by 0.09 on the tiny SDXL); ``encode`` takes the stock
    pipeline's pooled embedding of the prompt's words instead, so weight 1.0 ≡ the plain prompt.
    """
    compel = _require_compel()
    manager = compel.DiffusersTextualInversionManager(pipe)
    if not is_sdxl(pipe):
        return [
            compel.Compel(
                tokenizer=pipe.tokenizer,
                text_encoder=pipe.text_encoder,
                textual_inversion_manager=manager,
                truncate_long_prompts=False,
                device=str(device),
            )
        ]
    encoders = [(pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)]
    return [
        compel.Compel(
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            textual_inversion_manager=manager,
            returned_embeddings_type=compel.ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED,
            truncate_long_prompts=False,
            device=str(device),
        )
        for tokenizer, text_encoder in encoders
        if text_encoder is not None
    ]


def _pad_to(embeddings: list, empty, tokens: int) -> list:
    """Each embedding lengthened to ``tokens`` with empty-prompt pieces (compel's own padding)."""
    import torch

    padded = []
    for embedding in embeddings:
        while embedding.shape[1] < tokens:
            embedding = torch.cat([embedding, empty.to(embedding)], dim=1)
        padded.append(embedding)
    return padded


def encode(pipe, prompts: Sequence[str], negative_prompt: str | None, do_cfg: bool, device) -> WeightedEncoding:
    """Embeddings of ``prompts`` (and of ``negative_prompt`` under guidance), weighted and unclipped,
    padded to one length, in the text encoder's dtype (SDXL: the second encoder's, as ``encode_prompt``).

    SDXL: the two encoders' embeddings are concatenated on the last axis; the pooled embedding is the
    stock ``encode_prompt``'s for the prompt's words without the weight syntax (cut at 77 tokens, not
    weighted, as compel's is not either). An empty negative prompt is SDXL's zero embedding when the
    model asks for it (``force_zeros_for_empty_prompt``), as the stock pipeline and the plain path.
    """
    import torch

    compels = compel_for(pipe, device)
    sdxl = is_sdxl(pipe)
    zero_negative = sdxl and not negative_prompt and bool(getattr(pipe.config, "force_zeros_for_empty_prompt", False))
    texts = list(prompts)
    if do_cfg and not zero_negative:
        texts.append(negative_prompt or "")
    fragments = [parse_weights(text) for text in texts]

    def embed(compel, parts: list[Fragment]) -> torch.Tensor:
        return compel.conditioning_provider.get_embeddings_for_weighted_prompt_fragments(
            text_batch=[[fragment for fragment, _ in parts]],
            fragment_weights_batch=[[weight for _, weight in parts]],
            device=str(device),
        )

    with torch.no_grad():
        per_encoder = [[embed(compel, parts) for parts in fragments] for compel in compels]
        tokens = max(embedding.shape[1] for embeddings in per_encoder for embedding in embeddings)
        per_encoder = [
            _pad_to(embeddings, compel.conditioning_provider.empty_z, tokens)
            for compel, embeddings in zip(compels, per_encoder)
        ]
        dtype = (pipe.text_encoder_2 if sdxl else pipe.text_encoder).dtype
        embeddings = [torch.cat([e[i].to(dtype) for e in per_encoder], dim=-1).to(device) for i in range(len(texts))]
        pooled = None
        if sdxl:  # the stock pipeline's pooled embedding of the prompt's words (see compel_for)
            words = [" ".join(fragment for fragment, _ in parts) for parts in fragments]
            pooled = [pipe.encode_prompt(text, device=device, do_classifier_free_guidance=False)[2] for text in words]
    negative = negative_pooled = None
    if do_cfg and zero_negative:
        negative = torch.zeros_like(embeddings[0])
        negative_pooled = torch.zeros_like(pooled[0]) if pooled is not None else None
    elif do_cfg:
        negative, embeddings = embeddings[-1], embeddings[:-1]
        if pooled is not None:
            negative_pooled, pooled = pooled[-1], pooled[:-1]
    return WeightedEncoding(prompts=embeddings, negative=negative, pooled=pooled, negative_pooled=negative_pooled)
