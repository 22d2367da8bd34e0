"""Step caching (DeepCache-style): reuse a UNet's deep features between denoising steps.

Adjacent denoising steps change the deep (low-resolution) features of a UNet little. Every
``interval``-th step runs the whole UNet and keeps the feature entering its last ``branch`` up-path
layers (a layer: one resnet and its attention; DeepCache's "skip branch"); the steps between run only
``conv_in``, the down-path layers that make those layers' skip connections, those last layers and the
output head, on the kept feature. The default, ``DEFAULT_BRANCH`` = 1, recomputes only ``conv_in``, the
UNet's last layer and its output head (DeepCache's shallowest branch): on the built-in model interval 3
took 0.40–0.52× the time of no caching (three runs) with coherence and colour adherence within 5 % (bench/overhead.py),
where recomputing the whole final up block (``branch`` = its layer count) took 0.56–0.77×, because on a
model that small the full-resolution blocks are most of the work.

Unlike the ``deepcache`` package this neither patches ``forward`` nor forgets which frames a batch
holds: ``StepCachedUNet`` calls the diffusers ``UNet2DConditionModel``'s own pieces in the order of its
``forward`` (whole blocks where it can, their layers in the blocks' own order where the cut falls inside
one), and the kept features are keyed by the caller's batch (its chunk of frames and its layout), so a
clip sampled in chunks gets exactly the features it would get unchunked. ControlNet residuals are added
where the stock forward adds them: down residuals to the skip connections (on cached steps only the
shallow ones exist and are used), the mid residual to the mid output. SDXL-style ``added_cond_kwargs``
go to the UNet's own embedding helpers.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch

DEFAULT_BRANCH = 1  # up-path layers recomputed on cached steps


class StepCachedUNet:
    """A UNet2DConditionModel run in full every ``interval`` steps and shallow in between."""

    def __init__(self, unet, interval: int, branch: int | None = None):
        if interval < 1:
            raise ValueError(f"cache_interval must be ≥ 1, got {interval}")
        config = unet.config
        unsupported = [
            name
            for name, present in (
                ("class embeddings", config.class_embed_type is not None),
                ("image-hint embeddings", config.addition_embed_type == "image_hint"),
                ("GLIGEN", getattr(unet, "position_net", None) is not None),
                ("FreeU", any(getattr(block, "s1", None) for block in unet.up_blocks)),
            )
            if present
        ]
        if unsupported:
            raise ValueError(f"Step caching does not support this UNet's {', '.join(unsupported)}")
        layers = [len(block.resnets) for block in unet.up_blocks]
        branch = DEFAULT_BRANCH if branch is None else branch
        if not 1 <= branch < sum(layers):
            raise ValueError(f"cache branch must be between 1 and {sum(layers) - 1} layers, got {branch}")
        self.unet, self.interval, self.branch = unet, interval, branch
        # Where the cut falls: up block ``cut_block``, before its layer ``cut_layer``.
        remaining = sum(layers) - branch
        self.cut_block = 0
        while remaining >= layers[self.cut_block]:
            remaining -= layers[self.cut_block]
            self.cut_block += 1
        self.cut_layer = remaining
        self.features: dict[Hashable, torch.Tensor] = {}

    def is_full_step(self, step_index: int) -> bool:
        return step_index % self.interval == 0

    def __call__(
        self,
        sample: torch.Tensor,
        timestep,
        encoder_hidden_states: torch.Tensor,
        *,
        key: Hashable,
        step_index: int,
        down_block_additional_residuals: Sequence[torch.Tensor] | None = None,
        mid_block_additional_residual: torch.Tensor | None = None,
        added_cond_kwargs: dict | None = None,
        timestep_cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The UNet's noise prediction for ``sample``; ``key`` names the batch (its frames and layout).

        A full step (``step_index % interval == 0``, or no feature kept for ``key`` yet) runs the whole
        UNet and keeps its deep feature under ``key``; any other step reuses it.
        """
        hook = getattr(self.unet, "_hf_hook", None)
        if hook is not None:  # accelerate's model offload brings the UNet to its device before a forward
            hook.pre_forward(self.unet)
        cached = None if self.is_full_step(step_index) else self.features.get(key)
        temb, encoder_hidden_states = self._embed(
            sample, timestep, encoder_hidden_states, added_cond_kwargs, timestep_cond
        )
        context = dict(temb=temb, encoder_hidden_states=encoder_hidden_states)
        hidden, skips = self._down(sample, context, None if cached is None else self.branch)
        if down_block_additional_residuals is not None:  # ControlNet: one residual per skip connection
            skips = [skip + residual for skip, residual in zip(skips, down_block_additional_residuals)]
        if cached is None:
            hidden = self._mid(hidden, context)
            if mid_block_additional_residual is not None:
                hidden = hidden + mid_block_additional_residual
            hidden, skips = self._up(hidden, skips, context, sample.shape[-2:], deep=True)
            self.features[key] = hidden
        else:
            hidden = cached
        hidden, _ = self._up(hidden, skips, context, sample.shape[-2:], deep=False)
        return self._out(hidden)

    # The pieces of UNet2DConditionModel.forward (diffusers ≥ 0.30), in its order.

    def _embed(self, sample, timestep, encoder_hidden_states, added_cond_kwargs, timestep_cond=None):
        unet = self.unet
        temb = unet.time_embedding(unet.get_time_embed(sample=sample, timestep=timestep), timestep_cond)
        aug = unet.get_aug_embed(
            emb=temb, encoder_hidden_states=encoder_hidden_states, added_cond_kwargs=added_cond_kwargs
        )
        temb = temb + aug if aug is not None else temb
        if unet.time_embed_act is not None:
            temb = unet.time_embed_act(temb)
        encoder_hidden_states = unet.process_encoder_hidden_states(
            encoder_hidden_states=encoder_hidden_states, added_cond_kwargs=added_cond_kwargs
        )
        return temb, encoder_hidden_states

    def _down(self, sample, context, needed: int | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The down path; with ``needed``, only as far as it takes to make that many skip connections."""
        if self.unet.config.center_input_sample:
            sample = 2 * sample - 1.0
        hidden = self.unet.conv_in(sample)
        skips = [hidden]
        for block in self.unet.down_blocks:
            if needed is not None and len(skips) >= needed:
                return hidden, skips[:needed]
            if needed is not None and len(skips) + len(block.resnets) >= needed:  # the cut is inside
                for index in range(needed - len(skips)):
                    hidden = _layer(block, index, hidden, context)
                    skips.append(hidden)
                return hidden, skips
            if getattr(block, "has_cross_attention", False):
                hidden, made = block(hidden_states=hidden, **context)
            else:
                hidden, made = block(hidden_states=hidden, temb=context["temb"])
            skips.extend(made)
        return hidden, skips if needed is None else skips[:needed]

    def _mid(self, hidden, context) -> torch.Tensor:
        mid = self.unet.mid_block
        if mid is None:
            return hidden
        if getattr(mid, "has_cross_attention", False):
            return mid(hidden, context["temb"], encoder_hidden_states=context["encoder_hidden_states"])
        return mid(hidden, context["temb"])

    def _up(self, hidden, skips, context, size, deep: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The up path before the cut (``deep``) or after it, each layer taking its skip off the end."""
        blocks = self.unet.up_blocks
        # The stock forward passes the skip's size to an upsampler when the input is not a multiple of it.
        forward_size = any(dim % 2**self.unet.num_upsamplers for dim in size)
        indices = range(self.cut_block + 1) if deep else range(self.cut_block, len(blocks))
        for index in indices:
            block = blocks[index]
            count = len(block.resnets)
            first, last = 0, count
            if index == self.cut_block:
                first, last = (0, self.cut_layer) if deep else (self.cut_layer, count)
            if first == last:
                continue
            used = last - first
            res, skips = tuple(skips[-used:]), skips[:-used]
            if first == 0 and last == count:  # a whole block: its own forward
                upsample_size = skips[-1].shape[2:] if forward_size and index < len(blocks) - 1 else None
                if getattr(block, "has_cross_attention", False):
                    hidden = block(
                        hidden_states=hidden, res_hidden_states_tuple=res, upsample_size=upsample_size, **context
                    )
                else:
                    hidden = block(
                        hidden_states=hidden,
                        temb=context["temb"],
                        res_hidden_states_tuple=res,
                        upsample_size=upsample_size,
                    )
                continue
            for layer in range(first, last):  # part of a block: its layers, as its forward runs them
                hidden, res = torch.cat([hidden, res[-1]], dim=1), res[:-1]
                hidden = _layer(block, layer, hidden, context)
            if last == count and block.upsamplers is not None:
                upsample_size = skips[-1].shape[2:] if forward_size and index < len(blocks) - 1 else None
                for upsampler in block.upsamplers:
                    hidden = upsampler(hidden, upsample_size)
        return hidden, skips

    def _out(self, hidden) -> torch.Tensor:
        unet = self.unet
        if unet.conv_norm_out is not None:
            hidden = unet.conv_act(unet.conv_norm_out(hidden))
        return unet.conv_out(hidden)


def _layer(block, index: int, hidden: torch.Tensor, context: dict) -> torch.Tensor:
    """Layer ``index`` of a down or up block: its resnet, then its attention if it has one."""
    hidden = block.resnets[index](hidden, context["temb"])
    attentions = getattr(block, "attentions", None)
    if attentions:
        hidden = attentions[index](hidden, encoder_hidden_states=context["encoder_hidden_states"], return_dict=False)[0]
    return hidden
