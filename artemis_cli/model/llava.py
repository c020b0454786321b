"""The Artemis causal LM: transformers' Llama + projector + frozen CLIP tower + multi-level RoI module.

Module tree and state-dict names are those of the published checkpoints:
``model.embed_tokens``, ``model.layers.*``, ``model.norm``, ``lm_head``, ``model.mm_projector.{0,2}``,
``model.spi_model.{mlvl_fuse,roi_align}.*`` and the tower under ``model.image_tower.vision_tower``.

Batch inputs (see `ArtemisForCausalLM.forward`):
- `input_ids` [B, L] with -200 at each ``<image>``/``<video>`` and -500 at each ``<bbox>``;
- `media`: per sample, a list with one tensor per -200: a video feature [T, C] (e.g. [356, 1024])
  or an image [3, S, S] (goes through the tower, layer -2 patches);
- `roi_frames`: per sample [F, 3, S, S] (key frame first, then the tracked frames) or None, or one
  [B, F, 3, S, S] tensor; `roi_boxes` alike, [F, 4] boxes in [0, 1];
- `roi_seeds`: optional per-sample seeds for the random RoI picks (batch-independent results).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import nn
from transformers import LlamaForCausalLM, LlamaModel

from artemis_cli.errors import InputError
from artemis_cli.model.config import ArtemisConfig, MMSettings, tower_config
from artemis_cli.model.kmeans import select_rois
from artemis_cli.model.projector import build_projector
from artemis_cli.model.roi import MultiLevelRoIModule
from artemis_cli.model.splice import SplicedInputs, splice
from artemis_cli.model.tower import ImageTower

NUM_KEY_FRAMES = 1  # the reference's `offset` 0: one key-frame RoI precedes the tracked ones
# peft `target_modules` for stage 3: the Llama projections only (never the CLIP tower's q/k/v_proj,
# the projector or the RoI module), as the published run got by adding LoRA before the tower loaded.
LORA_TARGET_MODULES = r"model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
Media = Sequence[Sequence[torch.Tensor]]
PerSample = Union[torch.Tensor, Sequence[Optional[torch.Tensor]], None]


class ArtemisModel(LlamaModel):
    """`LlamaModel` plus `image_tower`, `mm_projector` and `spi_model` (the RoI module)."""

    config_class = ArtemisConfig

    def __init__(self, config, vision_config=None):
        super().__init__(config)
        mm = MMSettings.of(config)
        if mm.mm_image_tower is not None:
            vision_config = vision_config if vision_config is not None else tower_config(mm.mm_image_tower)
            self.image_tower = ImageTower(vision_config, mm.mm_vision_select_layer,
                                          mm.mm_vision_select_feature, mm.num_level_spi_features)
            self.mm_projector = build_projector(mm.mm_projector_type, mm.mm_hidden_size, config.hidden_size)
        if mm.mm_spi_model:
            self.spi_model = MultiLevelRoIModule(mm.mm_hidden_size, config.hidden_size, mm.num_levels, mm.roi_num_fuse,
                                                 mm.roi_output_size, mm.roi_query_size)


def reset_multimodal_parameters(model: "ArtemisForCausalLM", names: Sequence[str] = ("mm_projector", "spi_model")) -> None:
    """Initialise projector and RoI module as the published classes do in their constructors.

    Projector: PyTorch's `nn.Linear` defaults. RoI module (`MultiLevelRoIModule.reset_parameters`):
    PyTorch defaults for the 1x1 input convs, linear layers and LayerNorms; mmcv `ConvModule`'s
    Kaiming-normal (fan_out, ReLU) fuse convolutions with GroupNorm 1/0; N(0, 0.01) per-level 3x3
    convs with zero bias (the extractor's `norm_init_weights`)."""
    for name in names:
        module = getattr(model.model, name, None)
        if module is None:
            continue
        if isinstance(module, MultiLevelRoIModule):
            module.reset_parameters()
            continue
        for child in module.modules():
            if hasattr(child, "reset_parameters"):
                child.reset_parameters()


def _per_sample(value: PerSample, batch: int, what: str) -> list[Optional[torch.Tensor]]:
    if value is None:
        return [None] * batch
    if isinstance(value, torch.Tensor):
        value = list(value.unbind(0))
    value = list(value)
    if len(value) != batch:
        raise InputError(f"{what}: {len(value)} entries for a batch of {batch}")
    return value


class ArtemisForCausalLM(LlamaForCausalLM):
    """The Artemis model. `forward` splices media/RoIs when given; `generate` returns only new tokens.

    `vision_config` (a `CLIPVisionConfig`) overrides resolving ``config.mm_image_tower`` by name,
    for towers given by a path relative to a checkpoint.
    """

    config_class = ArtemisConfig

    def __init__(self, config, vision_config=None):
        super(LlamaForCausalLM, self).__init__(config)
        self.model = ArtemisModel(config, vision_config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()
        reset_multimodal_parameters(self)

    @property
    def mm(self) -> MMSettings:
        return MMSettings.of(self.config)

    def get_image_tower(self) -> Optional[ImageTower]:
        return getattr(self.model, "image_tower", None)

    def get_roi_module(self) -> Optional[MultiLevelRoIModule]:
        return getattr(self.model, "spi_model", None)

    # ---- encoders -------------------------------------------------------------------------------
    def encode_media(self, media: Media) -> list[list[torch.Tensor]]:
        """Per-sample media -> per-sample projected features ([T, H] per video, [P, H] per image).

        All videos and all images of the batch go through the projector in one call."""
        projector = getattr(self.model, "mm_projector", None)
        flat = [(b, item) for b, items in enumerate(media) for item in items]
        if not flat:
            return [[] for _ in media]
        if projector is None:
            raise InputError("the model has no image tower/projector (config mm_image_tower is null) but got media")
        images = [item for _, item in flat if item.dim() == 3]
        rows = []
        image_features = None
        if images:
            image_features = self.get_image_tower().patch_features(torch.stack(images))  # [N, P, C]
        image_index = 0
        weight = next(projector.parameters())
        for sample, item in flat:
            if item.dim() == 2:
                row = item  # a video feature [T, C]
            elif item.dim() == 3:
                row = image_features[image_index]
                image_index += 1
            else:
                raise InputError(f"sample {sample}: media must be [T, C] features or [3, H, W] images, got {tuple(item.shape)}")
            # Cast each piece before the cat: stored fp16 features beside fp32 tower output (or under
            # CPU bf16 autocast) would otherwise make torch.cat mix dtypes.
            rows.append(row.to(device=weight.device, dtype=weight.dtype))
        projected = projector(torch.cat(rows))  # [sum T, H]
        pieces = projected.split([row.shape[0] for row in rows])
        out: list[list[torch.Tensor]] = [[] for _ in media]
        for (sample, _), piece in zip(flat, pieces):
            out[sample].append(piece)
        return out

    def encode_rois(self, roi_frames: PerSample, roi_boxes: PerSample, batch: int,
                    roi_seeds: Optional[Sequence[Optional[int]]] = None) -> list[Optional[torch.Tensor]]:
        """Per-sample frames [F, 3, S, S] + boxes [F, 4] -> the RoI tokens the prompt gets: [1 + K, H].

        Every frame of every sample goes through the tower and the RoI module in one batch; then the
        tracked tokens (all but the first) are reduced to K by the configured selection mode."""
        frames = _per_sample(roi_frames, batch, "roi_frames")
        boxes = _per_sample(roi_boxes, batch, "roi_boxes")
        present = [b for b in range(batch) if frames[b] is not None]
        out: list[Optional[torch.Tensor]] = [None] * batch
        if not present:
            return out
        roi_module, tower = self.get_roi_module(), self.get_image_tower()
        if roi_module is None or tower is None:
            raise InputError("the model has no RoI module (config mm_spi_model is false) but got roi_frames")
        for b in present:
            if boxes[b] is None or boxes[b].shape != (frames[b].shape[0], 4):
                got = None if boxes[b] is None else tuple(boxes[b].shape)
                raise InputError(f"sample {b}: roi_boxes must be [{frames[b].shape[0]}, 4] (one box per frame), got {got}")
        levels = tower.multilevel_features(torch.cat([frames[b] for b in present]))  # L x [sum F, P, C]
        all_boxes = torch.cat([boxes[b] for b in present]).to(levels[0].device)  # [sum F, 4]
        tokens = roi_module(levels, all_boxes, tower.config.image_size)  # [sum F, H]
        per_sample = dict(zip(present, tokens.split([frames[b].shape[0] for b in present])))
        mm = self.mm
        groups: dict[int, list[int]] = {}
        for b in present:
            groups.setdefault(per_sample[b].shape[0], []).append(b)
        for count, members in groups.items():
            stacked = torch.stack([per_sample[b] for b in members])  # [G, F, H]
            tracked = stacked[:, NUM_KEY_FRAMES:]
            generators = None
            if roi_seeds is not None:
                generators = [None if roi_seeds[b] is None else torch.Generator().manual_seed(int(roi_seeds[b]))
                              for b in members]
            keep = select_rois(tracked, mm.select_mode, mm.kmeans_n_clusters, max_iter=mm.kmeans_max_iter,
                               num_init=mm.kmeans_num_init, seed=mm.kmeans_seed, generators=generators)  # [G, K]
            chosen = tracked.gather(1, keep[..., None].expand(-1, -1, tracked.shape[-1]))  # [G, K, H]
            for row, b in enumerate(members):
                out[b] = torch.cat([stacked[row, :NUM_KEY_FRAMES], chosen[row]])
        return out

    def prepare_multimodal_inputs(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                                  labels: Optional[torch.Tensor] = None, media: Optional[Media] = None,
                                  roi_frames: PerSample = None, roi_boxes: PerSample = None,
                                  roi_seeds: Optional[Sequence[Optional[int]]] = None, *,
                                  padding_side: Optional[str] = None) -> SplicedInputs:
        """Encode media and RoIs, embed the text, splice, truncate to `tokenizer_model_max_length`, pad."""
        batch = input_ids.shape[0]
        media = media if media is not None else [[] for _ in range(batch)]
        if len(media) != batch:
            raise InputError(f"media: {len(media)} entries for a batch of {batch}")
        features = self.encode_media(media)
        rois = self.encode_rois(roi_frames, roi_boxes, batch, roi_seeds)
        text_embeds = self.get_input_embeddings()(input_ids.clamp(min=0))  # [B, L, H]
        mm = self.mm
        spliced = splice(input_ids, text_embeds, attention_mask, labels, features, rois,
                         padding_side=padding_side or mm.tokenizer_padding_side,
                         max_length=mm.tokenizer_model_max_length)
        if self.training:
            spliced.inputs_embeds = spliced.inputs_embeds + self._unused_anchor(features, rois)
        return spliced

    def _unused_anchor(self, features, rois) -> torch.Tensor:
        """0 x (parameters of trainable modules this batch did not use), so DDP/ZeRO see a gradient
        for every trainable parameter (the reference spliced a dummy image for the same reason)."""
        anchor = torch.zeros((), device=self.lm_head.weight.device, dtype=self.lm_head.weight.dtype)
        unused = []
        if not any(len(items) for items in features) and hasattr(self.model, "mm_projector"):
            unused.append(self.model.mm_projector)
        if all(r is None for r in rois) and hasattr(self.model, "spi_model"):
            unused.append(self.model.spi_model)
        for module in unused:
            for param in module.parameters():
                if param.requires_grad:
                    anchor = anchor + 0.0 * param.flatten()[0].to(anchor.dtype)
        return anchor

    # ---- transformers entry points --------------------------------------------------------------
    def forward(self, input_ids: Optional[torch.LongTensor] = None, attention_mask: Optional[torch.Tensor] = None,
                position_ids: Optional[torch.LongTensor] = None, inputs_embeds: Optional[torch.FloatTensor] = None,
                labels: Optional[torch.LongTensor] = None, media: Optional[Media] = None,
                roi_frames: PerSample = None, roi_boxes: PerSample = None,
                roi_seeds: Optional[Sequence[Optional[int]]] = None, **kwargs):
        """Causal-LM forward. With `media`/`roi_frames`, `input_ids` may hold -200/-500 placeholders:
        they are spliced into `inputs_embeds` (labels masked there, sequences right-padded by default)
        and the loss is computed on the spliced `labels`. Other kwargs (cache, use_cache, ...) pass through."""
        if inputs_embeds is None and input_ids is not None and (media is not None or roi_frames is not None):
            spliced = self.prepare_multimodal_inputs(input_ids, attention_mask, labels, media, roi_frames,
                                                     roi_boxes, roi_seeds)
            input_ids, inputs_embeds = None, spliced.inputs_embeds
            attention_mask, position_ids, labels = spliced.attention_mask, spliced.position_ids, spliced.labels
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                               inputs_embeds=inputs_embeds, labels=labels, **kwargs)

    @torch.no_grad()
    def generate(self, input_ids: Optional[torch.Tensor] = None, attention_mask: Optional[torch.Tensor] = None,
                 media: Optional[Media] = None, roi_frames: PerSample = None, roi_boxes: PerSample = None,
                 roi_seeds: Optional[Sequence[Optional[int]]] = None, **generate_kwargs) -> torch.Tensor:
        """Generate for a batch: splice first (left padding), then `generate(inputs_embeds=...)`.

        `input_ids` [B, L] may be padded on either side (attention_mask marks real tokens). Returns
        only the new tokens [B, new]. Placeholder ids never reach transformers' `generate`."""
        if "inputs_embeds" in generate_kwargs or input_ids is None:
            return super().generate(input_ids=input_ids, attention_mask=attention_mask, **generate_kwargs)
        spliced = self.prepare_multimodal_inputs(input_ids, attention_mask, None, media, roi_frames, roi_boxes,
                                                 roi_seeds, padding_side="left")
        if generate_kwargs.get("pad_token_id") is None and self.generation_config.pad_token_id is None:
            generate_kwargs["pad_token_id"] = self.config.pad_token_id if self.config.pad_token_id is not None \
                else self.generation_config.eos_token_id
        return super().generate(inputs_embeds=spliced.inputs_embeds, attention_mask=spliced.attention_mask,
                                **generate_kwargs)
