"""The CLIP image processor of the published code (the PIL one), for towers with and without a saved config."""

from __future__ import annotations


def clip_image_processor_class():
    """The CLIP image processor the published code used: the PIL one. On transformers 5 that is
    `CLIPImageProcessorPil` (plain `CLIPImageProcessor` is the torchvision backend there, whose
    pixels differ by 1-2/255 on most of a frame); on 4.x the plain `CLIPImageProcessor` is PIL's."""
    import transformers

    return getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor


def clip_image_processor(image_size: int = 224):
    """The CLIP ViT-L/14 preprocessing (resize shorter side 224, bicubic, centre crop, CLIP mean/std), PIL backend."""
    return clip_image_processor_class()(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
                              do_resize=True, do_center_crop=True, do_normalize=True, do_rescale=True,
                              image_mean=[0.48145466, 0.4578275, 0.40821073],
                              image_std=[0.26862954, 0.26130258, 0.27577711])
