"""Bring a finished clip into the scene: animated material texture and/or sequencer strip.

Runs from the job poller (a timer), so it uses the data API only (no bpy.ops, no context).
Every datablock gets the job's parameters as custom properties so the clip can be regenerated or
varied later (zss.regenerate / zss.vary_seed read them back).
A tileable clip (job tile_x / tile_y) gets a repeating Image Texture fed by a Mapping node named
TILING_NODE (UV in, Scale exposed) so the texture can be repeated over a surface; a looped clip plays
cyclically like every clip (for a looped one the wrap is seamless).
"""

import json
import math
import os

import bpy
from mathutils import Matrix, Vector

NAME_LIMIT = 40  # datablock names are at most 63 bytes; keep room for Blender's ".001"
PLANE_HEIGHT = 2.0  # when no camera frames it
TILING_NODE = "ZS² Tiling"  # the Mapping node of a tileable clip: scale it to repeat the texture


def clip_name(prompt):
    """A readable datablock name from the prompt."""
    text = " ".join(prompt.split()) or "clip"
    if len(text) > NAME_LIMIT:
        text = text[:NAME_LIMIT - 1].rstrip() + "…"
    return "ZS² " + text


def blend_path(path):
    """path relative to the saved .blend (//…), absolute when unsaved or on another drive."""
    if not bpy.data.filepath:
        return path
    try:
        return bpy.path.relpath(path)
    except ValueError:  # Windows: another drive has no relative path
        return path


def tile_setting(job):
    """The job's tile_x / tile_y as Scene.zss.tile (NONE, X, Y, XY)."""
    x, y = bool(job.get("tile_x")), bool(job.get("tile_y"))
    return {(False, False): "NONE", (True, False): "X", (False, True): "Y", (True, True): "XY"}[(x, y)]


def job_params(job, job_dir, frame_start):
    """The custom properties stored on every imported datablock."""
    record = {k: v for k, v in job.items() if k != "control"}
    control = job.get("control")
    record["control_scale"] = control["scale"] if control else None
    return {
        "zss_job_id": job["id"],
        "zss_job_dir": blend_path(job_dir),
        "zss_prompt": job["prompt"],
        "zss_negative_prompt": job.get("negative_prompt", ""),
        "zss_seed": job["seed"],
        "zss_lam": job["lam"],
        "zss_mu": job["mu"],
        "zss_model": job["model"],
        "zss_frame_start": frame_start,
        "zss_loop": bool(job.get("loop")),
        "zss_tile": tile_setting(job),
        "zss_prompts": json.dumps(job.get("prompts") or []),  # 0-based clip frames
        "zss_job": json.dumps(record),  # the whole request, for regenerate
    }


def store_params(target, params):
    for key, value in params.items():
        target[key] = value


def _sequence_image(frames, name, params):
    image = bpy.data.images.load(frames[0], check_existing=False)
    image.source = 'SEQUENCE'
    image.name = name
    image.filepath = blend_path(frames[0])
    store_params(image, params)
    return image


def _tiling(tree, texture):
    """Texture Coordinate (UV) → Mapping "ZS² Tiling" → the clip's texture, which repeats."""
    texture.extension = 'REPEAT'
    coords = tree.nodes.new("ShaderNodeTexCoord")
    coords.location = (texture.location.x - 450, texture.location.y)
    mapping = tree.nodes.new("ShaderNodeMapping")
    mapping.name = mapping.label = TILING_NODE
    mapping.vector_type = 'POINT'
    mapping.location = (texture.location.x - 250, texture.location.y)
    tree.links.new(coords.outputs["UV"], mapping.inputs["Vector"])
    tree.links.new(mapping.outputs["Vector"], texture.inputs["Vector"])
    return mapping


def _material(name, image, frame_start, frame_count, use_emission, params, tile=False):
    material = bpy.data.materials.new(name)
    if bpy.app.version < (5, 0, 0):
        material.use_nodes = True
    tree = material.node_tree
    bsdf = next((n for n in tree.nodes if n.type == 'BSDF_PRINCIPLED'), None)
    if bsdf is None:
        bsdf = tree.nodes.new("ShaderNodeBsdfPrincipled")
        output = next((n for n in tree.nodes if n.type == 'OUTPUT_MATERIAL'), None) or \
            tree.nodes.new("ShaderNodeOutputMaterial")
        tree.links.new(bsdf.outputs["BSDF"], output.inputs["Surface"])
    texture = tree.nodes.new("ShaderNodeTexImage")
    texture.name = texture.label = "ZS² Clip"
    texture.location = (bsdf.location.x - 400, bsdf.location.y)
    texture.image = image
    user = texture.image_user
    user.frame_duration = frame_count
    user.frame_start = frame_start
    user.frame_offset = 0
    user.use_cyclic = True
    user.use_auto_refresh = True
    tree.links.new(texture.outputs["Color"], bsdf.inputs["Base Color"])
    if tile:
        _tiling(tree, texture)
    if use_emission:
        socket = bsdf.inputs.get("Emission Color") or bsdf.inputs.get("Emission")  # 4.0+ / older name
        tree.links.new(texture.outputs["Color"], socket)
        bsdf.inputs["Emission Strength"].default_value = 1.0
    store_params(material, params)
    return material


def _plane_mesh(name, aspect):
    width, height = PLANE_HEIGHT * aspect, PLANE_HEIGHT
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata([(-width / 2, -height / 2, 0), (width / 2, -height / 2, 0),
                      (width / 2, height / 2, 0), (-width / 2, height / 2, 0)], [], [(0, 1, 2, 3)])
    uv = mesh.uv_layers.new(name="UVMap")
    for loop, co in zip(uv.data, ((0, 0), (1, 0), (1, 1), (0, 1))):
        loop.uv = co
    mesh.update()
    return mesh


def _camera_facing_matrix(scene, camera, aspect):
    """Where a PLANE_HEIGHT-high plane fills the camera's view, facing it."""
    location, rotation, _scale = camera.matrix_world.decompose()
    corners = camera.data.view_frame(scene=scene)  # camera space, on the plane z = -depth0
    xs, ys = [c.x for c in corners], [c.y for c in corners]
    frame_w, frame_h = max(xs) - min(xs), max(ys) - min(ys)
    center_x, center_y = sum(xs) / 4, sum(ys) / 4
    depth0 = -corners[0].z
    width, height = PLANE_HEIGHT * aspect, PLANE_HEIGHT
    if camera.data.type == 'ORTHO':
        distance = min(max(10.0, camera.data.clip_start * 2), camera.data.clip_end / 2)
        scale = min(frame_w / width, frame_h / height)
        offset = Vector((center_x, center_y, -distance))
    else:
        distance = max(width * depth0 / frame_w, height * depth0 / frame_h)
        scale = 1.0
        offset = Vector((center_x * distance / depth0, center_y * distance / depth0, -distance))
    return Matrix.LocRotScale(location + rotation @ offset, rotation, Vector((scale, scale, scale)))


def new_plane(scene, collection, name, aspect):
    """A plane with the clip's aspect, facing the camera (or standing at the 3D cursor facing -Y)."""
    obj = bpy.data.objects.new(name, _plane_mesh(name, aspect))
    collection.objects.link(obj)
    if scene.camera is not None:
        obj.matrix_world = _camera_facing_matrix(scene, scene.camera, aspect)
    else:
        obj.location = scene.cursor.location
        obj.rotation_euler = (math.pi / 2, 0.0, 0.0)
    return obj


def _assign(obj, material):
    """Replace the active slot's material (other slots are kept); add a slot if there is none."""
    if not obj.data.uv_layers:
        obj.data.uv_layers.new(name="UVMap")
    if obj.material_slots:
        obj.material_slots[obj.active_material_index].material = material
    else:
        obj.data.materials.append(material)


def import_material(scene, collection, frames, job, job_dir, frame_start, object_names, use_emission=False):
    """Animated texture on the named mesh objects, or on a new plane; returns (material, image, objects)."""
    params = job_params(job, job_dir, frame_start)
    name = clip_name(job["prompt"])
    image = _sequence_image(frames, name, params)
    material = _material(name, image, frame_start, len(frames), use_emission, params,
                         tile=bool(job.get("tile_x") or job.get("tile_y")))
    objects = [bpy.data.objects.get(n) for n in object_names]
    objects = [o for o in objects if o is not None and o.type == 'MESH' and scene in o.users_scene]
    if not objects:
        objects = [new_plane(scene, collection, name, job["width"] / job["height"])]
    for obj in objects:
        _assign(obj, material)
    return material, image, objects


def _top_level_strips(editor):
    return editor.strips if hasattr(editor, "strips") else editor.sequences  # 5.0 / 4.2–4.5


def free_channel(strips, frame_start, length, max_channel=128):
    """The lowest channel with nothing overlapping [frame_start, frame_start + length)."""
    frame_end = frame_start + length
    busy = {s.channel for s in strips
            if s.frame_final_start < frame_end and s.frame_final_end > frame_start}
    for channel in range(1, max_channel + 1):
        if channel not in busy:
            return channel
    raise RuntimeError(f"All {max_channel} sequencer channels are busy at frames {frame_start}–{frame_end - 1} "
                       "— free a channel or move strips, then import the clip from its folder")


def import_strip(scene, frames, video, job, job_dir, frame_start, use_movie=False):
    """Image strip of all frames (or movie strip from the MP4) on a free channel at the start frame."""
    editor = scene.sequence_editor or scene.sequence_editor_create()
    strips = _top_level_strips(editor)
    start = frame_start
    channel = free_channel(strips, start, job["frames"])
    name = clip_name(job["prompt"])
    if use_movie and video:
        strip = strips.new_movie(name, video, channel, start, fit_method='FIT')
        strip.filepath = blend_path(video)
    else:
        strip = strips.new_image(name, frames[0], channel, start, fit_method='FIT')
        for path in frames[1:]:
            strip.elements.append(os.path.basename(path))
        directory = blend_path(os.path.dirname(frames[0]))
        strip.directory = directory if directory.endswith(("/", "\\")) else directory + "/"
    store_params(strip, job_params(job, job_dir, frame_start))
    return strip
