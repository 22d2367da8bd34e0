"""Bring a finished clip into the scene: animated material texture and/or sequencer strip.

Runs from the job poller (a timer), so it uses the data API only (no bpy.ops, no context).
Every datablock gets the job's parameters as custom properties so the clip can be regenerated or
varied later (zss.regenerate / zss.vary_seed read them back).
A tileable clip (job tile_x / tile_y) gets a repeating Image Texture fed by a Mapping node named
TILING_NODE (UV in, Scale exposed) so the texture can be repeated over a surface; a looped clip plays
cyclically like every clip (for a looped one the wrap is seamless).
A depth-controlled clip is projected from the camera it was generated from (projection.py) unless
Scene.zss.mapping is 'UV'. A strip goes to the scene's plates scene (plates.py) unless
Scene.zss.strip_placement is 'SCENE'. Regenerate / Vary Seed pass replace= to update the earlier
material, image or strip in place instead of piling up copies.
"""

import json
import math
import os
from dataclasses import dataclass

import bpy
from mathutils import Matrix, Vector

from . import compat, plates, projection

NAME_LIMIT = 40  # datablock names are at most 63 bytes; keep room for Blender's ".001"
PLANE_HEIGHT = 2.0  # when no camera frames it
TILING_NODE = "ZS² Tiling"  # the Mapping node of a tileable clip: scale it to repeat the texture
UV_NODE = "ZS² UV"  # the Texture Coordinate node feeding TILING_NODE with the UV map
CLIP_NODE = "ZS² Clip"  # the Image Texture node showing the clip


def clip_name(prompt):
    """A readable datablock name from the prompt."""
    text = " ".join(prompt.split()) or "clip"
    if len(text) > NAME_LIMIT:
        text = text[: NAME_LIMIT - 1].rstrip() + "…"
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
    record = {k: v for k, v in job.items() if k not in ("control", "init")}  # staging files, gone after the job
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


def _sequence_image(frames, name, params, image=None):
    """The clip's image sequence: a new image, or `image` pointed at the new frames and reloaded."""
    reuse = image is not None
    if not reuse:
        image = bpy.data.images.load(frames[0], check_existing=False)
    if image.name != name:
        image.name = name
    image.source = "SEQUENCE"
    image.filepath = blend_path(frames[0])
    if reuse:
        image.reload()
    store_params(image, params)
    return image


def _remove_nodes(tree, names):
    for name in names:
        node = tree.nodes.get(name)
        if node is not None:
            tree.nodes.remove(node)


def _tiling(tree, texture, source):
    """source (or the UV map) → Mapping "ZS² Tiling" → the clip's texture, which repeats."""
    texture.extension = "REPEAT"
    if source is None:
        coords = tree.nodes.new("ShaderNodeTexCoord")
        coords.name = coords.label = UV_NODE
        coords.location = (texture.location.x - 450, texture.location.y)
        source = coords.outputs["UV"]
    mapping = tree.nodes.new("ShaderNodeMapping")
    mapping.name = mapping.label = TILING_NODE
    mapping.vector_type = "POINT"
    mapping.location = (texture.location.x - 250, texture.location.y)
    tree.links.new(source, mapping.inputs["Vector"])
    tree.links.new(mapping.outputs["Vector"], texture.inputs["Vector"])
    return mapping


def _wire_coordinates(tree, texture, tile, projector):
    """Feed the texture's Vector: the UV map (nothing linked), camera projection, or either tiled.

    projector is (scene, camera, width, height) to project from that camera, or None for the UV map.
    Nodes of an earlier import (replace) are rebuilt, so a regenerated clip follows the new job.
    """
    _remove_nodes(tree, (TILING_NODE, UV_NODE))
    for link in list(texture.inputs["Vector"].links):
        tree.links.remove(link)
    source = None
    if projector is None:
        projection.remove_projection_node(tree)
        texture.extension = "REPEAT"
    else:
        node = projection.projection_node(
            tree, *projector, location=(texture.location.x - 450, texture.location.y - 250)
        )
        source = node.outputs["Vector"]
        texture.extension = "EXTEND"  # a surface just outside the camera's view gets the border colours
    if tile:
        _tiling(tree, texture, source)
    elif source is not None:
        tree.links.new(source, texture.inputs["Vector"])


def _new_material(name):
    """A material with a Principled BSDF and an empty Image Texture node CLIP_NODE."""
    material = compat.new_node_material(name)
    tree = material.node_tree
    bsdf = next((n for n in tree.nodes if n.type == "BSDF_PRINCIPLED"), None)
    if bsdf is None:
        bsdf = tree.nodes.new("ShaderNodeBsdfPrincipled")
        output = next((n for n in tree.nodes if n.type == "OUTPUT_MATERIAL"), None) or tree.nodes.new(
            "ShaderNodeOutputMaterial"
        )
        tree.links.new(bsdf.outputs["BSDF"], output.inputs["Surface"])
    texture = tree.nodes.new("ShaderNodeTexImage")
    texture.name = texture.label = CLIP_NODE
    texture.location = (bsdf.location.x - 400, bsdf.location.y)
    tree.links.new(texture.outputs["Color"], bsdf.inputs["Base Color"])
    return material


def clip_texture(material):
    """The material's clip Image Texture node (CLIP_NODE), or None when it is not a ZS² material."""
    tree = material.node_tree
    node = tree.nodes.get(CLIP_NODE) if tree is not None else None
    return node if node is not None and node.type == "TEX_IMAGE" else None


def _emission(tree, texture, use_emission):
    """Link the clip into the Principled BSDF's emission, or unlink it."""
    bsdf = next((n for n in tree.nodes if n.type == "BSDF_PRINCIPLED"), None)
    if bsdf is None:
        return
    socket = bsdf.inputs.get("Emission Color") or bsdf.inputs.get("Emission")  # 4.0+ / older name
    if use_emission:
        tree.links.new(texture.outputs["Color"], socket)
        bsdf.inputs["Emission Strength"].default_value = 1.0
    else:
        for link in [link for link in socket.links if link.from_node == texture]:
            tree.links.remove(link)


def _configure(material, image, frame_start, frame_count, use_emission, params, tile, projector):
    """Point the clip node at image and set frames, coordinates, emission and the stored parameters."""
    tree = material.node_tree
    texture = clip_texture(material)
    texture.image = image
    user = texture.image_user
    user.frame_duration = frame_count
    user.frame_start = frame_start
    user.frame_offset = 0
    user.use_cyclic = True
    user.use_auto_refresh = True
    _wire_coordinates(tree, texture, tile, projector)
    _emission(tree, texture, use_emission)
    store_params(material, params)


def _plane_mesh(name, aspect):
    width, height = PLANE_HEIGHT * aspect, PLANE_HEIGHT
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(
        [
            (-width / 2, -height / 2, 0),
            (width / 2, -height / 2, 0),
            (width / 2, height / 2, 0),
            (-width / 2, height / 2, 0),
        ],
        [],
        [(0, 1, 2, 3)],
    )
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
    if camera.data.type == "ORTHO":
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


def _setting(scene, name, default):
    """A Scene.zss setting, or default where the scene has none (e.g. the add-on's properties are gone)."""
    settings = getattr(scene, "zss", None)
    return getattr(settings, name, default) if settings is not None else default


def projector_for(scene, job, mapping=None, camera=None):
    """(scene, camera, width, height) to project a depth-controlled clip from, or None for the UV map.

    Only a clip made with depth control was generated from a camera's view; mapping None reads
    Scene.zss.mapping, camera None is the scene's camera (the one depth was rendered from). Without a
    camera the UV map is used.
    """
    if not job.get("control") and job.get("control_scale") is None:
        return None
    if (mapping or _setting(scene, "mapping", "CAMERA")) != "CAMERA":
        return None
    camera = camera or scene.camera
    if camera is None or camera.type != "CAMERA":
        return None
    return scene, camera, job["width"], job["height"]


def _material_users(scene, material):
    return [
        o for o in scene.objects if o.type == "MESH" and any(slot.material == material for slot in o.material_slots)
    ]


def import_material(
    scene,
    collection,
    frames,
    job,
    job_dir,
    frame_start,
    object_names,
    use_emission=False,
    *,
    mapping=None,
    camera=None,
    replace=None,
):
    """Animated texture on the named mesh objects, or on a new plane; returns (material, image, objects).

    mapping ('CAMERA' / 'UV', None = Scene.zss.mapping) and camera (None = scene.camera) decide how a
    depth-controlled clip is mapped (see projection.py). replace names a ZS² material from an earlier
    import (Regenerate, Vary Seed): that material and its image are reused in place — the image points
    at the new frames — so no copies pile up; the objects using it keep it. A replace name that is not
    a ZS² material any more imports a new one.
    """
    params = job_params(job, job_dir, frame_start)
    name = clip_name(job["prompt"])
    material = bpy.data.materials.get(replace) if replace else None
    if material is not None and clip_texture(material) is None:
        material = None
    if material is None:
        material = _new_material(name)
        image = _sequence_image(frames, name, params)
        users = []
    else:
        if material.name != name:
            material.name = name
        image = _sequence_image(frames, name, params, image=clip_texture(material).image)
        users = _material_users(scene, material)
    _configure(
        material,
        image,
        frame_start,
        len(frames),
        use_emission,
        params,
        tile=bool(job.get("tile_x") or job.get("tile_y")),
        projector=projector_for(scene, job, mapping, camera),
    )
    objects = [bpy.data.objects.get(n) for n in object_names]
    objects = [o for o in objects if o is not None and o.type == "MESH" and scene in o.users_scene]
    for obj in objects:
        if obj not in users:
            _assign(obj, material)
    objects = objects + [o for o in users if o not in objects]
    if not objects:
        plane = new_plane(scene, collection, name, job["width"] / job["height"])
        _assign(plane, material)
        objects = [plane]
    return material, image, objects


free_channel = plates.free_channel  # kept public here: callers used importers.free_channel


@dataclass(frozen=True)
class StripImport:
    """Where a strip import went: the strip, the scene holding it, and what the user should know."""

    strip: object
    scene: object  # the plates scene, or the 3D scene itself for placement 'SCENE'
    notes: tuple = ()


def _new_strip(strips, frames, video, name, channel, start, use_movie):
    if use_movie and video:
        strip = strips.new_movie(name, video, channel, start, fit_method="FIT")
        strip.filepath = blend_path(video)
        return strip
    strip = strips.new_image(name, frames[0], channel, start, fit_method="FIT")
    for path in frames[1:]:
        strip.elements.append(os.path.basename(path))
    directory = blend_path(os.path.dirname(frames[0]))
    strip.directory = directory if directory.endswith(("/", "\\")) else directory + "/"
    return strip


def restyle_params(source, strip_name=""):
    """The custom properties of a restyled clip: its source (SCENE / STRIP) and the strip it restyled."""
    return {"zss_restyle_source": source, "zss_restyle_strip": strip_name}


def place_strip(
    scene, frames, video, job, job_dir, frame_start, use_movie=False, *, placement=None, replace=None, above=None
):
    """Image strip of all frames (or movie strip from the MP4); returns a StripImport.

    placement 'PLATES' (None = Scene.zss.strip_placement) puts it into scene's plates scene (see
    plates.py) under a Scene strip of scene, so F12 in scene still renders 3D; 'SCENE' into scene's own
    sequencer. A plates scene given as scene stands for its 3D scene. The strip goes on the lowest free channel at frame_start — or, with replace naming a strip
    of that sequencer (Regenerate, Vary Seed), takes that strip's channel and start in its place.
    above names a strip of scene's own sequencer that the clip restyled: the clip goes into that
    sequencer on the lowest free channel above it, at frame_start (the source's start), whatever the
    placement.
    """
    source = compat.top_level_strips(scene.sequence_editor).get(above) if above and scene.sequence_editor else None
    if source is not None:
        placement = "SCENE"  # next to its source, in the scene that holds it
    else:
        scene = plates.owner_scene(scene)  # given the plates scene itself: its 3D scene
        placement = placement or _setting(scene, "strip_placement", "PLATES")
    target = plates.plates_scene(scene) if placement == "PLATES" else scene
    editor = target.sequence_editor or target.sequence_editor_create()
    strips = compat.top_level_strips(editor)
    old = strips.get(replace) if replace else None
    if old is not None:
        channel, start = old.channel, round(old.frame_start)  # a float in 5.0
        was_active = editor.active_strip == old
        strips.remove(old)
    else:
        scene_strip = plates.find_scene_strip(target, scene) if placement == "PLATES" else None
        start, was_active = frame_start, False
        lowest = source.channel + 1 if source is not None else 1
        channel = free_channel([s for s in strips if s != scene_strip], start, job["frames"], lowest=lowest)
    notes = ()
    if placement == "PLATES":
        plates.scene_strip_above(target, scene, channel)
        notes = (plates.placement_note(scene, target),)
    strip = _new_strip(strips, frames, video, clip_name(job["prompt"]), channel, start, use_movie)
    store_params(strip, job_params(job, job_dir, frame_start))
    strip["zss_scene"] = scene.name  # the 3D scene the clip was made for (a plate lives in another scene)
    if was_active:
        editor.active_strip = strip
    return StripImport(strip, target, notes)


def import_strip(
    scene, frames, video, job, job_dir, frame_start, use_movie=False, *, placement=None, replace=None, above=None
):
    """place_strip's strip (see there for placement, replace and above)."""
    return place_strip(
        scene, frames, video, job, job_dir, frame_start, use_movie, placement=placement, replace=replace, above=above
    ).strip
