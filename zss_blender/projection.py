"""Camera projection: texture coordinates that put a depth-conditioned clip back where it was seen.

A depth-controlled clip was generated from the camera's view (its depth maps were rendered from
scene.camera at the job's width × height), so frame pixel (u, v) belongs to whatever surface the camera
saw at (u, v). A UV map knows nothing about that; projecting from the camera does.

How: a node group "ZS² Camera Projection" computes, per shading point, what the camera's projection
matrix at the job's resolution makes of it: the Texture Coordinate node's Object output with the camera
as object gives the point in camera space, three dot products with rows of (projection × camera scale)
give clip coordinates, and u, v = 0.5 + 0.5 · x / w, 0.5 + 0.5 · y / w. This is exact per pixel
(perspective-correct on large faces, whatever modifiers deform the mesh), works for perspective and
orthographic cameras with shift and any sensor fit, and ignores the render's aspect (the Window output
would follow the active camera at the render's aspect instead).

Animation: the camera's transform is read at render time, so a moving camera keeps projecting frame i
from where it stood at frame i (as the depth maps were made). Lens, sensor, shift and ortho scale are
baked in when the clip is imported (evaluated at the scene's current frame): animating them afterwards
does not move the projection. Surfaces hidden from the camera (back faces, occluded parts) receive the
picture too — they were never seen, so nothing better is known about them.
"""

import bpy
from mathutils import Matrix

GROUP_NAME = "ZS² Camera Projection"  # the node group (one per material that uses it)
NODE_NAME = "ZS² Projection"  # its group node in the material
CAMERA_KEY = "zss_projection_camera"  # custom property on the group: the camera's name when built


def projection_matrix(scene, camera, width, height):
    """Camera space → clip space for a width × height render from camera (scale of the camera object
    folded in, because the Object texture coordinate is in the object's scaled space)."""
    depsgraph = scene.view_layers[0].depsgraph  # None until the scene was evaluated once
    if depsgraph is None:
        depsgraph = bpy.context.evaluated_depsgraph_get()
    matrix = camera.calc_matrix_camera(depsgraph, x=width, y=height, scale_x=1.0, scale_y=1.0)
    scale = camera.matrix_world.to_scale()
    return matrix @ Matrix.Diagonal((scale.x, scale.y, scale.z, 1.0))


def _row(group, coord, row, location):
    """Dot product of the camera-space point with one matrix row, plus the row's constant."""
    dot = group.nodes.new("ShaderNodeVectorMath")
    dot.operation = "DOT_PRODUCT"
    dot.location = location
    dot.inputs[1].default_value = row[:3]
    group.links.new(coord, dot.inputs[0])
    add = group.nodes.new("ShaderNodeMath")
    add.operation = "ADD"
    add.location = (location[0] + 180, location[1])
    add.inputs[1].default_value = row[3]
    group.links.new(dot.outputs["Value"], add.inputs[0])
    return add.outputs[0]


def _ndc_to_unit(group, numerator, w, location):
    """0.5 + 0.5 · numerator / w: clip coordinate → 0…1 texture coordinate."""
    divide = group.nodes.new("ShaderNodeMath")
    divide.operation = "DIVIDE"
    divide.location = location
    group.links.new(numerator, divide.inputs[0])
    group.links.new(w, divide.inputs[1])
    unit = group.nodes.new("ShaderNodeMath")
    unit.operation = "MULTIPLY_ADD"
    unit.location = (location[0] + 180, location[1])
    unit.inputs[1].default_value = 0.5
    unit.inputs[2].default_value = 0.5
    group.links.new(divide.outputs[0], unit.inputs[0])
    return unit.outputs[0]


def build_group(group, camera, matrix):
    """(Re)fill group with the projection of camera through matrix; output socket "Vector"."""
    group.nodes.clear()
    if "Vector" not in [item.name for item in group.interface.items_tree]:
        group.interface.new_socket("Vector", in_out="OUTPUT", socket_type="NodeSocketVector")
    coords = group.nodes.new("ShaderNodeTexCoord")
    coords.object = camera
    coords.location = (-600, 0)
    point = coords.outputs["Object"]
    x = _row(group, point, matrix[0], (-380, 150))
    y = _row(group, point, matrix[1], (-380, 0))
    w = _row(group, point, matrix[3], (-380, -150))
    u = _ndc_to_unit(group, x, w, (20, 100))
    v = _ndc_to_unit(group, y, w, (20, -50))
    combine = group.nodes.new("ShaderNodeCombineXYZ")
    combine.location = (400, 0)
    group.links.new(u, combine.inputs["X"])
    group.links.new(v, combine.inputs["Y"])
    output = group.nodes.new("NodeGroupOutput")
    output.location = (600, 0)
    group.links.new(combine.outputs["Vector"], output.inputs["Vector"])
    group[CAMERA_KEY] = camera.name


def projection_node(tree, scene, camera, width, height, location=(0, 0)):
    """The material's projection group node, created or (when it exists) rebuilt for camera and size.

    Returns the node; its output "Vector" is the texture coordinate for the clip's Image Texture.
    """
    node = tree.nodes.get(NODE_NAME)
    if node is None or node.type != "GROUP":
        node = tree.nodes.new("ShaderNodeGroup")
        node.name = node.label = NODE_NAME
    if node.node_tree is None:
        node.node_tree = bpy.data.node_groups.new(GROUP_NAME, "ShaderNodeTree")
    node.location = location
    build_group(node.node_tree, camera, projection_matrix(scene, camera, width, height))
    return node


def remove_projection_node(tree):
    """Drop the projection node and its group (when nothing else uses the group)."""
    node = tree.nodes.get(NODE_NAME)
    if node is None:
        return
    group = node.node_tree
    tree.nodes.remove(node)
    if group is not None and group.users == 0:
        bpy.data.node_groups.remove(group)
