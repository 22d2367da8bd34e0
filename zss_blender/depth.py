"""Depth maps from the scene camera for a frame range, as depth ControlNets expect them.

Method (fastest reliable one measured headless, see bench/blender.py): Cycles, 1 sample, a view-layer
material override that emits the Camera Data node's "View Z Depth" (planar depth), written as float
OpenEXR and read back with bpy.data.images.load. That is one sample per pixel centre, exact to 1e-5
against scene.ray_cast, ~16 ms per 256² frame on 2 CPU cores, and needs nothing outside Blender
(multilayer EXRs with a Z pass do not load into bpy.data.images in 5.0, and PIL/OpenImageIO are not
importable from every Blender Python).

Normalization uses ONE near/far range for the whole clip (percentile-robust over every foreground pixel
of every frame): per-frame ranges make the control flicker. Values are inverse depth (disparity)
scaled to 0…1 with near = white and background = black, like the MiDaS maps depth ControlNets were
trained on. Maps are written as 16-bit grayscale PNGs by Blender itself (Non-Color float image +
save_render), so no colour management touches the values.

Every scene setting changed for the render is restored in a finally block.
"""

import os

import bpy
import numpy as np

from . import compat

NEAR_PERCENTILE = 1.0  # robust near/far: ignore the nearest and farthest 1 % of foreground pixels
FAR_PERCENTILE = 99.0
SAMPLE_BUDGET = 2_000_000  # foreground depths kept for the percentiles (spread over all frames)
MEMORY_BUDGET = 512 * 2**20  # bytes of depth kept between the two passes; longer clips re-read the EXRs


class DepthError(RuntimeError):
    """Rendering depth failed; the message says what to do."""


class Overrides:
    """Set attributes and put the first-seen values back, in the order they were first set.

    Shared by every temporary render (depth maps here, restyle sources in restyle.py); `after` names the
    render in the error raised when a value cannot be put back.

    Restoring in setting order matters where image_settings has a media_type (compat.HAS_MEDIA_TYPE):
    it decides which file_format values are allowed, so the media type must be restored before the format.
    """

    def __init__(self, after="rendering depth"):
        self._saved = {}
        self._after = after

    def remember(self, obj, *attrs):
        """Record current values before changing any of them (settings that reset each other)."""
        for attr in attrs:
            key = (obj.as_pointer(), attr)
            if key not in self._saved:
                self._saved[key] = (obj, attr, getattr(obj, attr))

    def set(self, obj, attr, value):
        self.remember(obj, attr)
        setattr(obj, attr, value)

    def restore(self):
        """Restore everything; a value that cannot be put back does not stop the others."""
        failed = []
        for obj, attr, value in self._saved.values():
            try:
                setattr(obj, attr, value)
            except (TypeError, ValueError, AttributeError) as e:
                failed.append(f"{attr}: {e}")
        self._saved.clear()
        if failed:
            raise DepthError(
                f"Could not restore some render settings after {self._after} ("
                + "; ".join(failed)
                + ") — check Render and Output properties"
            )


def _depth_material():
    """A material emitting planar camera depth; used as the view layer's material override."""
    mat = compat.new_node_material(".zss_depth")
    nodes = mat.node_tree.nodes
    nodes.clear()
    camera = nodes.new("ShaderNodeCameraData")
    emission = nodes.new("ShaderNodeEmission")
    output = nodes.new("ShaderNodeOutputMaterial")
    emission.inputs["Strength"].default_value = 1.0
    mat.node_tree.links.new(camera.outputs["View Z Depth"], emission.inputs["Color"])
    mat.node_tree.links.new(emission.outputs["Emission"], output.inputs["Surface"])
    return mat


def set_image_format(ov, settings, media_type, file_format, color_mode, color_depth):
    # Changing the format resets the colour depth and mode: remember all of them first.
    ov.remember(
        settings,
        *(("media_type",) if compat.HAS_MEDIA_TYPE else ()),
        "file_format",
        "color_mode",
        "color_depth",
        "exr_codec",
    )
    if compat.HAS_MEDIA_TYPE:
        ov.set(settings, "media_type", media_type)  # must precede file_format
    ov.set(settings, "file_format", file_format)
    ov.set(settings, "color_mode", color_mode)
    ov.set(settings, "color_depth", color_depth)


def _configure_render(ov, scene, view_layer, width, height, material):
    render = scene.render
    ov.set(render, "engine", "CYCLES")
    cycles = scene.cycles
    for attr, value in (
        ("samples", 1),
        ("use_denoising", False),
        ("use_adaptive_sampling", False),
        ("pixel_filter_type", "BOX"),
        ("filter_width", 0.01),
        ("film_exposure", 1.0),
        ("sample_clamp_direct", 0.0),
        ("sample_clamp_indirect", 0.0),
        ("time_limit", 0.0),
    ):
        ov.set(cycles, attr, value)
    for attr, value in (
        ("resolution_x", width),
        ("resolution_y", height),
        ("resolution_percentage", 100),
        ("pixel_aspect_x", 1.0),
        ("pixel_aspect_y", 1.0),
        ("use_border", False),
        ("film_transparent", True),
        ("use_motion_blur", False),
        ("use_compositing", False),
        ("use_sequencer", False),
        ("use_multiview", False),
        ("use_file_extension", True),
        ("use_overwrite", True),
        ("use_placeholder", False),
    ):
        ov.set(render, attr, value)
    ov.set(view_layer, "material_override", material)
    ov.set(view_layer, "samples", 0)  # a per-view-layer sample override would otherwise win
    set_image_format(ov, render.image_settings, "IMAGE", "OPEN_EXR", "RGBA", "32")
    ov.set(render.image_settings, "exr_codec", "NONE")  # temporary files: faster uncompressed


def _read_exr(path, width, height):
    """Planar depth of one rendered frame, +inf where no geometry was hit; rows bottom-up as Blender
    stores them."""
    img = bpy.data.images.load(path, check_existing=False)
    img.colorspace_settings.name = "Non-Color"  # raw values, no colour conversion
    if tuple(img.size) != (width, height):
        size = tuple(img.size)
        bpy.data.images.remove(img)
        raise DepthError(
            f"Depth render {path} is {size[0]}×{size[1]}, expected {width}×{height} — "
            "check that no add-on or driver changes the render resolution"
        )
    rgba = np.empty(width * height * 4, dtype=np.float32)
    img.pixels.foreach_get(rgba)
    bpy.data.images.remove(img)
    rgba = rgba.reshape(height, width, 4)
    depth = np.ascontiguousarray(rgba[..., 0])
    depth[~((rgba[..., 3] > 0.5) & np.isfinite(depth) & (depth > 0.0))] = np.inf
    return depth


def clip_range(samples):
    """One (near, far) for the clip from foreground depths of all frames; None if nothing is visible."""
    if samples.size == 0:
        return None
    near, far = np.percentile(samples, [NEAR_PERCENTILE, FAR_PERCENTILE])
    near, far = float(near), float(far)
    if far <= near * (1.0 + 1e-4):  # one flat wall: give it a mid-grey instead of dividing by zero
        near, far = near * 0.99, far * 1.01
    return near, far


def normalize(depth, near, far):
    """Disparity scaled to 0…1 between far (0) and near (1); background (+inf) 0."""
    lo, hi = 1.0 / far, 1.0 / near
    return np.clip((1.0 / depth - lo) / (hi - lo), 0.0, 1.0)


def render_stills(ov, scene, view_layer, frames, paths):
    """Render scene frame ``frames[i]`` to ``paths[i]`` (the output path set through ``ov``); returns
    (frame, path) of the first image the render did not write, or None. Depth maps and Restyle's
    scene render both render this way."""
    for frame, path in zip(frames, paths):
        scene.frame_set(frame)
        ov.set(scene.render, "filepath", path)
        bpy.ops.render.render(write_still=True, scene=scene.name, layer=view_layer.name)
        if not os.path.isfile(path):
            return frame, path
    return None


def render_depth_maps(scene, view_layer, frame_start, count, width, height, out_dir):
    """Render, normalize and write depth_0001.png … for count frames; returns (paths, (near, far)).

    The user's render settings and current frame are restored afterwards, also on error.
    """
    if scene.camera is None:
        raise DepthError("The scene has no active camera — add one (or set Scene ▸ Camera) to use Depth Control")
    os.makedirs(out_dir, exist_ok=True)
    frame_before, subframe_before = scene.frame_current, scene.frame_subframe
    ov = Overrides()
    material = _depth_material()
    png_image = None
    try:
        _configure_render(ov, scene, view_layer, width, height, material)
        raws = [os.path.join(out_dir, f"raw_{i + 1:04d}.exr") for i in range(count)]
        missing = render_stills(ov, scene, view_layer, range(frame_start, frame_start + count), raws)
        if missing is not None:
            raise DepthError(
                f"Cycles wrote no depth image for frame {missing[0]} ({missing[1]}) — "
                "check the console for render errors and that the folder is writable"
            )

        stride = max(1, (count * width * height) // SAMPLE_BUDGET)
        keep = count * width * height * 4 <= MEMORY_BUDGET
        samples, kept = [], []
        for raw in raws:
            depth = _read_exr(raw, width, height)
            samples.append(depth[np.isfinite(depth)][::stride])
            if keep:
                kept.append(depth)
        near_far = clip_range(np.concatenate(samples))
        if near_far is None:
            raise DepthError(
                "The camera sees no geometry in any frame of the clip — aim the camera at the "
                "scene or turn off Depth Control"
            )

        set_image_format(ov, scene.render.image_settings, "IMAGE", "PNG", "BW", "16")
        png_image = bpy.data.images.new(".zss_depth_png", width, height, alpha=False, float_buffer=True)
        png_image.colorspace_settings.name = "Non-Color"  # written as-is, no view transform
        rgba = np.ones((height, width, 4), dtype=np.float32)
        paths = []
        for i, raw in enumerate(raws):
            depth = kept[i] if keep else _read_exr(raw, width, height)
            rgba[..., :3] = normalize(depth, *near_far)[..., None]
            png_image.pixels.foreach_set(rgba.ravel())
            path = os.path.join(out_dir, f"depth_{i + 1:04d}.png")
            png_image.save_render(path, scene=scene)
            os.remove(raw)
            paths.append(path)
        return paths, near_far
    finally:
        ov.restore()
        scene.frame_set(frame_before, subframe=subframe_before)
        if png_image is not None:
            bpy.data.images.remove(png_image)
        bpy.data.materials.remove(material)
